"""Retrain as a person meets it on the Deployments page: the button opens the dry run (parent version, window,
retrainer, evidence, what is sent) in the confirmation dialog; confirming with a reason retrains with the local
retrainer and the page says which run started, in which state; a viewer sees the button disabled, with why."""

from __future__ import annotations

import pytest

from tests.ui.conftest import texts
from tests.ui.test_guarded_actions import ack, frame
from tests.ui.test_pages import no_exception

CANCER = "cancer-screening"


@pytest.fixture
def demo(app, private_demo):
    app.container = private_demo
    return app


def test_retrain_shows_the_dry_run_then_starts_the_run(demo):
    at = demo("deployments.py", endpoint=CANCER, identity="alice")
    no_exception(at)
    assert not at.button(key="action-retrain").disabled
    at.number_input(key="retrain-days").set_value(3)
    at.button(key="action-retrain").click().run()
    no_exception(at)
    plan = frame(at, "planned").set_index("what")["planned"].to_dict()
    assert plan["endpoint"] == CANCER and plan["parent version (serves as stable)"] == "v2"
    assert plan["model"] == "breast-cancer-classifier" and plan["retrainer"] == "local"
    shown = texts(at)
    assert "no labelled requests in the window" in shown, "the seeded demo has no traffic: said first"
    assert "alias challenger" in shown and "What the retrainer (local) will be sent" in [e.label for e in at.expander]
    assert demo.container().audit.entries(limit=1, action="retrain") == [], "a dry run starts nothing"
    at.text_area(key="reason").input("labels say v2 is slipping")
    ack(at)
    at.button(key="confirm").click().run()
    no_exception(at)
    (entry,) = demo.container().audit.entries(limit=5, action="retrain")
    assert (entry.actor, entry.result, entry.after["state"]) == ("alice", "ok", "succeeded")
    run_id, new = entry.after["run_id"], entry.after["new_version"]
    assert any(f"run {run_id} succeeded; v{new} is the challenger" in s.value for s in at.success)
    assert f"Last retraining: run `{run_id}` of v2, **succeeded** → v{new} (challenger), started by alice" in \
        texts(at)


def test_a_viewer_sees_retrain_disabled_with_the_reason(demo):
    at = demo("deployments.py", endpoint=CANCER, identity="carol")
    no_exception(at)
    button = at.button(key="action-retrain")
    assert button.disabled and "carol (viewer) may not retrain" in button.help and "operator" in button.help


def test_where_the_policy_requires_approval_retrain_files_a_request_another_person_approves(demo, tmp_path,
                                                                                           monkeypatch):
    from services.settings import REPO_ROOT

    text = (REPO_ROOT / "deploy" / "policy.yaml").read_text()
    assert "  require_approval: [promote]\n" in text
    policy = tmp_path / "policy.yaml"
    policy.write_text(text.replace("  require_approval: [promote]\n", "  require_approval: [promote, retrain]\n"))
    monkeypatch.setenv("MLOPS_POLICY_FILE", str(policy))
    at = demo("deployments.py", endpoint=CANCER, identity="alice")
    at.button(key="action-retrain").click().run()
    assert "The policy requires another person's approval" in texts(at)
    assert at.button(key="confirm").label == "File request"
    at.text_area(key="reason").input("drift on mean texture")
    ack(at)
    at.button(key="confirm").click().run()
    no_exception(at)
    c = demo.container()
    (req,) = c.approvals.list(status="pending", endpoint=CANCER)
    assert req.action == "retrain" and c.audit.entries(limit=1, action="retrain", result="ok") == []
    assert f"[open request #{req.id}](/approvals?request={req.id})" in texts(at)
    at = demo("approvals.py", identity="bob", request=str(req.id))
    no_exception(at)
    shown = texts(at)  # what would be retrained, not an endpoint state version that a retraining never changes
    assert "state version None" not in shown and "it is void if the stable version changes" in shown
    table = next(d.value for d in at.dataframe if "field" in d.value.columns and "retrainer" in set(d.value["field"]))
    rows = dict(zip(table["field"], table["value"], strict=True))
    assert f"(what {CANCER} serves as stable)" in rows["retrain"] and rows["retrainer"] == "local"
    assert " → " in rows["labelled window"] and rows["champion"].startswith("v")
    at.button(key=f"action-approve-{req.id}").click().run()
    no_exception(at)
    at.text_area(key="reason").input("the evidence holds")
    at.button(key="confirm").click().run()
    no_exception(at)
    run = c.audit.entries(limit=1, action="retrain", result="ok")[0]
    assert (run.actor, run.details["approved_by"], run.after["state"]) == ("alice", "bob", "succeeded")
    assert any(f"request #{req.id} approved: retraining run {run.after['run_id']} succeeded" in s.value
               for s in at.success)
    assert c.approvals.get(req.id).status == "approved"
