"""Every page renders on the seeded demo without an exception, with its key content."""

from __future__ import annotations

from tests.conftest import free_port
from tests.ui.conftest import texts

CLS = "breast-cancer-classifier"


def no_exception(at):
    assert not at.exception, [e.value for e in at.exception]
    unexpected = [e.value for e in at.error if "Unexpected error" in str(e.value)]
    assert not unexpected, unexpected


def clean(at):
    """No exception and no error message at all."""
    no_exception(at)
    assert not at.error, [e.value for e in at.error]


def test_overview(app):
    at = app()
    clean(at)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Registered models"] == "2" and metrics["Endpoints"] == "2"
    df = at.dataframe[0].value
    assert set(df["Model"]) == {CLS, "diabetes-regressor"}
    assert set(df["Champion"]) == {"v2"}


def test_models_list_and_search(app):
    at = app("models.py")
    clean(at)
    assert set(at.dataframe[0].value["Model"]) == {CLS, "diabetes-regressor"}
    assert at.get_by_key("models-table-download").label == "Download CSV"
    at = app("models.py", q="DIAB")
    assert list(at.dataframe[0].value["Model"]) == ["diabetes-regressor"]
    at = app("models.py", q="%")
    clean(at)
    assert "No registered model matches" in texts(at)


def test_model_page(app):
    at = app("models.py", model=CLS)
    clean(at)
    assert at.title[0].value == CLS
    versions = at.dataframe[0].value
    assert list(versions["Version"]) == [5, 4, 3, 2, 1]
    assert versions.loc[versions["Version"] == 2, "Aliases"].item() == "@champion"
    assert {"accuracy", "roc_auc"} <= set(versions.columns)
    assert {m.label: m.value for m in at.metric}["Champion"] == "v2"


def test_version_page(app):
    at = app("models.py", model=CLS, version="4")
    clean(at)
    assert at.title[0].value == f"{CLS} · v4"
    assert [t.label for t in at.tabs] == ["Overview", "Parameters", "Metrics", "Signature", "Dependencies",
                                          "Lineage"]
    shown = texts(at)
    assert "Source commit" in shown and "Artifact location" in shown
    frames = [d.value for d in at.dataframe]
    assert any("n_estimators" in set(f.get("parameter", [])) for f in frames)
    assert any("worst to mean radius ratio" in set(f.get("name", [])) for f in frames), "signature inputs"
    assert any("dataset" in f.columns for f in frames), "lineage"


def test_compare_page(app):
    at = app("models.py", model=CLS, compare="2,4")
    clean(at)
    assert at.title[0].value == f"Compare {CLS}"
    param_diff = lambda: next(d.value for d in at.dataframe if "key" in d.value.columns)  # noqa: E731 - Metrics tab is first
    params = param_diff()
    assert "n_estimators" in set(params["key"]) and "differs" not in params.columns
    assert (params["v2"] != params["v4"]).all(), "differences only"
    at.toggle(key="diff-only").set_value(False).run()
    assert len(param_diff()) > len(params)
    assert at.query_params["diff"] in ("all", ["all"])


def test_unknown_model_and_bad_links(app):
    at = app("models.py", model="no such model ü'%")
    no_exception(at)
    assert "does not exist" in texts(at)
    at = app("models.py", model=CLS, version="99")
    no_exception(at)
    assert "does not exist" in texts(at)
    at = app("models.py", model=CLS, compare="2,x")
    no_exception(at)
    assert "compare takes version numbers" in texts(at)


def test_deployments_page(app):
    at = app("deployments.py", endpoint="cancer-screening", identity="alice")
    clean(at)
    table = at.dataframe[0].value
    assert set(table["Endpoint"]) == {"cancer-screening", "diabetes-risk"}
    row = table[table["Endpoint"] == "cancer-screening"].iloc[0]
    assert (row["Stable"], row["Canary"], row["Registry"]) == ("v2", "v4 @ 20%", "agrees")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Canary"] == "v4" and metrics["Champion (registry)"] == "v2"
    keys = {b.key for b in at.button}
    assert {"action-request", "action-canary", "action-promote", "action-abort", "action-rollback"} <= keys


def test_unknown_endpoint(app):
    at = app("deployments.py", endpoint="nope")
    no_exception(at)
    assert "no endpoint named 'nope'" in texts(at)


def test_viewer_sees_actions_disabled_with_the_reason(app, demo_env):
    at = app("deployments.py", identity="carol", endpoint="cancer-screening")
    no_exception(at)
    actions = [b for b in at.button if (b.key or "").startswith("action-")]
    assert "action-retrain" in {b.key for b in actions} and len(actions) >= 6 and all(b.disabled for b in actions)
    assert all("carol (viewer) may not" in b.help for b in actions), [b.help for b in actions]
    assert "carol may only look here" in texts(at)
    assert {m.label: m.value for m in at.metric}["Canary"] == "v4"


def test_a_new_session_starts_as_the_least_privileged_identity(app):
    at = app("deployments.py", endpoint="cancer-screening")
    no_exception(at)
    assert at.selectbox(key="dev-identity").value == "carol"
    assert "Acting as **carol** (viewer)" in texts(at)
    assert all(b.disabled for b in at.button if (b.key or "").startswith("action-"))


def test_approvals_and_audit_pages(app):
    at = app("approvals.py")
    clean(at)
    assert at.title[0].value == "Approvals"
    at = app("audit.py")
    clean(at)
    assert "Hash chain verified" in texts(at)


def test_registry_down_is_named_and_the_rest_works(app, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{free_port()}")
    at = app()
    no_exception(at)
    assert "MLflow registry" in texts(at)
    at = app("models.py")
    no_exception(at)
    assert "MLflow registry" in texts(at) and "Unavailable" in texts(at)
    at = app("audit.py")
    no_exception(at)
    assert "Hash chain verified" in texts(at)


def test_bad_setting_is_a_message_not_a_traceback(app, monkeypatch):
    monkeypatch.setenv("MLOPS_SERVING_BACKEND", "docker")
    for page in (None, "models.py", "deployments.py"):
        at = app(page)
        no_exception(at)
        assert "MLOPS_SERVING_BACKEND must be one of" in texts(at)


def test_approvals_show_pending_with_evidence_and_history(app, demo_env):
    from services.composition import build
    from services.settings import Settings

    c = build(Settings.from_env(demo_env))
    alice = c.directory.get("alice")
    out = c.actions.execute(c.actions.plan(alice, "request_promotion", "diabetes-risk", version="3"), alice,
                            "ui test")
    c.actions.reject(c.directory.get("bob"), out.request_id, "not now")
    pending = c.actions.execute(c.actions.plan(alice, "request_promotion", "diabetes-risk", version="3"), alice,
                                "ui test 2")
    c.engine.dispose()
    at = app("approvals.py", identity="bob")
    clean(at)
    keys = {b.key for b in at.button}
    assert {f"action-approve-{pending.request_id}", f"action-reject-{pending.request_id}"} <= keys
    assert any("ui test 2" in str(m.value) for m in at.markdown)
    assert "Still applies to the endpoint as it is now" in texts(at)
    at = app("approvals.py", status="rejected")
    clean(at)
    df = at.dataframe[0].value
    assert out.request_id in set(df["id"]) and set(df["status"]) == {"rejected"}
    c2 = build(Settings.from_env(demo_env))
    c2.actions.reject(c2.directory.get("bob"), pending.request_id, "cleanup")
    c2.engine.dispose()


def test_every_action_button_opens_a_dry_run_without_changing_anything(app):
    for key in ("action-request", "action-canary", "action-promote", "action-abort"):
        at = app("deployments.py", endpoint="cancer-screening", identity="alice")
        if key == "action-canary":
            at.number_input(key="canary-weight").set_value(40)
        at.button(key=key).click().run()
        no_exception(at)
        assert not at.error, (key, [e.value for e in at.error])
        shown = texts(at)
        assert "cancer-screening" in shown and ("File request" in [b.label for b in at.button]
                                                or "Confirm" in [b.label for b in at.button]), key
        assert at.text_area(key="reason") is not None
    at = app("deployments.py", endpoint="cancer-screening", identity="alice")
    assert {m.label: m.value for m in at.metric}["Canary"] == "v4"


def test_confirming_in_the_dialog_applies_and_the_page_says_so(app):
    at = app("deployments.py", endpoint="diabetes-risk", identity="alice")
    at.selectbox(key="canary-version").set_value("3")
    at.number_input(key="canary-weight").set_value(10)
    at.button(key="action-canary").click().run()
    at.button(key="confirm").click().run()
    no_exception(at)
    assert "a reason is required" in texts(at), "no reason: refused inside the dialog"
    at.text_area(key="reason").input("ui canary")
    at.button(key="confirm").click().run()
    no_exception(at)
    assert "Start canary on diabetes-risk: done" in texts(at)
    assert {m.label: m.value for m in at.metric}["Canary"] == "v3"
    at.button(key="action-abort").click().run()
    at.text_area(key="reason").input("ui cleanup")
    at.button(key="confirm").click().run()
    assert "Abort canary on diabetes-risk: done" in texts(at)
    assert {m.label: m.value for m in at.metric}["Canary"] == "none"
