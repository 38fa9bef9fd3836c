"""Pages while a source fails, as a person meets them: MLflow down, hung or answering 500; the Kubernetes API
answering 500/503 or hanging; Prometheus down or hung; the console database locked by another connection.

Every page answers within 10 s (``AppTest.run(timeout=10)`` raises past it, and the time is asserted too) with
an error that names the failing source, and never an exception or a traceback. Each page runs on a freshly
built container (the cached one is cleared), so it pays the source's timeout itself rather than finding it
already known to be down; where a page is checked with a shortened timeout, the number of connections the hung
server accepted shows it paid one timeout, not one per call.
"""

from __future__ import annotations

import time

import pytest

from tests.conftest import free_port
from tests.faults import serve_faults
from tests.ui.conftest import APP, ROOT, serve_on_kserve, texts

BUDGET = 10.0
MLFLOW = "MLflow registry"
CANCER = "cancer-screening"
REGISTRY_PAGES = [("overview.py", {}), ("models.py", {}), ("deployments.py", {"endpoint": CANCER}),
                  ("approvals.py", {}), ("explain.py", {})]
OTHER_PAGES = [("monitoring.py", {"endpoint": CANCER}), ("incidents.py", {"endpoint": CANCER}),
               ("drift.py", {"endpoint": CANCER}), ("audit.py", {})]


@pytest.fixture(scope="module")
def fault_urls():
    yield from serve_faults()


@pytest.fixture
def page(demo_env, monkeypatch):
    """``page(file, identity=None, **query) -> (AppTest, seconds)`` on a cold container, within the budget."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    for k, v in demo_env.items():
        monkeypatch.setenv(k, v)
    for k in ("MLOPS_SERVING_BACKEND", "MLOPS_POLICY_FILE", "MLOPS_DEV_IDENTITIES", "MLOPS_METRICS_SOURCE"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("MLOPS_ALLOW_DEV_AUTH", "1")  # development identities on an http:// registry

    def run(file: str, identity: str | None = None, **query):
        st.cache_resource.clear()  # a new container: nothing known about the source yet
        st.cache_data.clear()
        at = AppTest.from_file(APP, default_timeout=BUDGET)
        for k, v in query.items():
            at.query_params[k] = v
        if identity:
            at.session_state["dev-identity"] = identity
        at.switch_page(str(ROOT / "pages" / file))
        t = time.monotonic()
        at.run(timeout=BUDGET)  # raises past the budget
        took = time.monotonic() - t
        assert took < BUDGET, (file, took)
        no_traceback(at)
        return at, took

    if not _warm:  # the first run of a process imports for seconds: not a page's time
        run("overview.py")
        _warm.append(True)
    return run


_warm: list[bool] = []


def no_traceback(at) -> None:
    assert not at.exception, [e.value for e in at.exception]
    shown = texts(at)
    assert "Traceback" not in shown and "Unexpected error" not in shown, shown[:2000]


def errors(at) -> str:
    return "\n".join(str(e.value) for e in at.error)


# -- MLflow ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fault", ["down", "500"])
def test_mlflow_down_or_failing_every_page_answers_naming_it(page, fault_urls, fault, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", fault_urls[fault])
    wording = {"down": "cannot reach the MLflow server", "500": "the MLflow server answered HTTP 500"}[fault]
    for file, query in REGISTRY_PAGES:
        at, _ = page(file, **query)
        if file != "approvals.py":  # nothing pending in the demo: the page needs no registry read
            assert MLFLOW in errors(at) and wording in errors(at), (file, errors(at))
    for file, query in OTHER_PAGES:  # pages that do not need the registry still work
        at, _ = page(file, **query)
        assert MLFLOW not in errors(at), (file, errors(at))


def test_mlflow_hung_every_registry_page_pays_one_timeout(page, fault_urls, monkeypatch):
    from tests.faults import BlackHole

    hole = BlackHole()
    try:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", hole.url)
        at, took = page("overview.py")  # the adapter's default: 5 s per request
        assert 4.5 <= took < BUDGET and hole.accepted == 1, (took, hole.accepted)
        assert "the MLflow server did not answer within 5 s" in errors(at)
        assert "not asked again" in errors(at), errors(at)  # the page's later reads were refused at once
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "1")
        for file, query in REGISTRY_PAGES[1:] + OTHER_PAGES[:1]:
            seen = hole.accepted
            at, took = page(file, **query)
            assert hole.accepted - seen <= 1, (file, hole.accepted - seen)  # one timeout, not one per call
            if file not in ("approvals.py", "monitoring.py"):
                assert MLFLOW in errors(at), (file, errors(at))
    finally:
        hole.close()


def test_approvals_with_a_pending_request_while_mlflow_fails(page, private_demo, fault_urls, monkeypatch):
    c = private_demo()
    alice = c.directory.get("alice")
    out = c.actions.execute(c.actions.plan(alice, "request_promotion", "diabetes-risk", version="3"), alice, "ui")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", fault_urls["500"])
    at, _ = page("approvals.py", identity="bob")
    shown = texts(at)
    assert f"#{out.request_id}" in shown or str(out.request_id) in shown
    assert MLFLOW in shown, shown[:3000]  # why it cannot tell whether the request still applies


def test_an_action_while_mlflow_is_down_is_refused_on_the_page(page, private_demo, fault_urls, monkeypatch):
    c = private_demo()
    before = c.serving.get_endpoint(CANCER)
    audited = c.audit.count()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", fault_urls["down"])
    at, _ = page("deployments.py", identity="alice", endpoint=CANCER)
    assert MLFLOW in errors(at)  # the versions cannot be listed; the actions are still there
    assert {"action-request", "action-abort", "action-rollback"} <= {b.key for b in at.button}
    at.button(key="action-request").click()  # promote the running canary
    t = time.monotonic()
    at.run(timeout=BUDGET)
    assert time.monotonic() - t < BUDGET
    no_traceback(at)
    assert "confirm" not in {b.key for b in at.button}  # no dry run, nothing to confirm
    after = c.serving.get_endpoint(CANCER)
    assert after.resource_version == before.resource_version
    assert c.audit.count() == audited + 1
    last = c.audit.entries(limit=1)[0]
    assert (last.action, last.result, last.target) == ("request_promotion", "failed", CANCER)
    assert MLFLOW in last.error and MLFLOW in errors(at)
    assert c.audit.verify().ok


# -- Kubernetes API ---------------------------------------------------------------------------------------------
@pytest.fixture
def kserve(page, demo_env, k8s_double, tmp_path, monkeypatch):
    serve_on_kserve(demo_env, k8s_double, tmp_path, monkeypatch)
    return page


@pytest.mark.parametrize("fault", ["500", "503", "hang"])
def test_kubernetes_failing_pages_answer_naming_it(kserve, k8s_double, fault):
    if fault == "hang":
        k8s_double.hang_next(times=1000)
    else:
        k8s_double.fail_next(int(fault), times=1000)
    pages = [("deployments.py", {"endpoint": "ml/screening"})] + ([("overview.py", {})] if fault != "hang" else [])
    for file, query in pages:  # hung: the default timeouts (5 s a read) cannot be shortened by a setting
        before = k8s_double._hangs[0].remaining if fault == "hang" else None
        at, took = kserve(file, **query)
        shown = errors(at)
        assert "KServe" in shown, (file, shown)
        if fault == "hang":  # the default read timeout (5 s), once per page
            assert "did not answer in time" in shown or "not asked again" in shown, shown
            assert before - k8s_double._hangs[0].remaining == 1, file
        else:
            assert f"HTTP {fault}" in shown, shown


# -- Prometheus ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fault", ["down", "hung"])
def test_prometheus_failing_pages_answer_naming_it(page, fault_urls, fault, monkeypatch):
    monkeypatch.setenv("MLOPS_METRICS_SOURCE", "prometheus")
    monkeypatch.setenv("MLOPS_PROMETHEUS_URL", fault_urls[fault])
    for i, (file, query) in enumerate([("monitoring.py", {"endpoint": CANCER}), ("incidents.py", {"endpoint": CANCER}),
                                       ("overview.py", {}), ("drift.py", {"endpoint": CANCER})]):
        if fault == "hung" and i == 1:  # the first page with the default (5 s), the others quicker
            monkeypatch.setenv("MLOPS_PROMETHEUS_TIMEOUT_SECONDS", "1")
        at, took = page(file, **query)
        if file in ("monitoring.py", "incidents.py", "overview.py"):
            assert "Prometheus" in texts(at), (file, errors(at))
        if file in ("monitoring.py", "incidents.py"):
            assert "prometheus" in errors(at), (file, errors(at))


# -- the console database --------------------------------------------------------------------------------------
def test_a_locked_database_still_shows_pages_and_refuses_an_action_naming_it(page, private_demo):
    import sqlite3

    c = private_demo()
    path = c.settings.database_url.split("///", 1)[1]
    before = c.serving.get_endpoint("diabetes-risk")
    audited = c.audit.count()
    other = sqlite3.connect(path, isolation_level=None, timeout=1)
    other.execute("BEGIN EXCLUSIVE")
    other.execute("UPDATE endpoints SET updated_at = updated_at")
    try:
        for file, query in [("overview.py", {}), ("audit.py", {})]:
            at, _ = page(file, **query)  # readers are not blocked
            assert not at.error, (file, errors(at))
        at, _ = page("deployments.py", identity="alice", endpoint="diabetes-risk")
        at.selectbox(key="canary-version").set_value("3")
        at.button(key="action-canary").click().run(timeout=BUDGET)
        at.text_area(key="reason").input("try v3")
        for box in at.checkbox:
            if box.key == "ack-warnings":
                box.check().run(timeout=BUDGET)
        at.button(key="confirm").click()
        t = time.monotonic()
        at.run(timeout=BUDGET)
        took = time.monotonic() - t
        no_traceback(at)
        assert took < BUDGET and "console database is locked by another connection" in errors(at), (took,
                                                                                                   errors(at))
    finally:
        other.execute("ROLLBACK")
        other.close()
    after = c.serving.get_endpoint("diabetes-risk")
    assert (after.canary_version, after.resource_version) == (before.canary_version, before.resource_version)
    assert c.audit.count() == audited and c.audit.verify().ok


def test_a_database_that_cannot_be_opened_is_named(page, monkeypatch, tmp_path):
    monkeypatch.setenv("MLOPS_DATABASE_URL", f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/gone")
    monkeypatch.setenv("MLOPS_ALLOW_DEV_AUTH", "1")
    for file in ("overview.py", "audit.py"):
        at, _ = page(file)
        assert "console database" in texts(at), (file, errors(at))


def test_a_bad_housekeeping_setting_is_named_on_the_page(page, monkeypatch):
    monkeypatch.setenv("MLOPS_GC_SECONDS", "every minute")
    at, _ = page("overview.py")
    assert "MLOPS_GC_SECONDS" in errors(at) and "settings" in errors(at), errors(at)
