"""Faults of the outside sources, injected with real sockets: MLflow down (nothing listens), hung (accepts,
never answers) and answering 500; the Kubernetes API answering 500/503 or hanging (the in-repo double);
Prometheus down and hung; the ingest down behind the gateway.

Each read answers within the page budget (10 s) with Unavailable naming its source; an action attempted
meanwhile is refused or compensated, audited as ``failed``, and leaves the endpoint as it was.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest

from services.errors import ConsoleError, Unavailable
from services.registry.mlflow_registry import MlflowRegistry
from tests.conftest import ENDPOINT, MODEL, ROOT, fresh_registry, make_container
from tests.faults import FAULTS, elapsed, serve_faults

BUDGET = 10.0  # seconds a page may take
SOURCE = "MLflow registry"


@pytest.fixture(scope="module")
def fault_urls():
    yield from serve_faults()


@pytest.fixture
def short_mlflow_timeout(monkeypatch):
    """1 s per MLflow request instead of the adapter's 5 s default, where the default is not what a test checks
    (test_mlflow_defaults_bound_a_hung_server_in_a_fresh_process checks it)."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "1")


def _state(c, name=ENDPOINT):
    ep = c.serving.get_endpoint(name)
    return ep.stable_version, ep.canary_version, ep.canary_weight, ep.resource_version


def _last_audit(c):
    return c.audit.entries(limit=1)[0]


# -- MLflow -------------------------------------------------------------------------------------------------
REGISTRY_CALLS = {
    "list_models": lambda r: r.list_models(),
    "get_model": lambda r: r.get_model(MODEL),
    "model_with_versions": lambda r: r.model_with_versions(MODEL),
    "aliases": lambda r: r.aliases(MODEL),
    "get_version": lambda r: r.get_version(MODEL, "1"),
    "get_version_detail": lambda r: r.get_version_detail(MODEL, "1"),
    "get_run": lambda r: r.get_run("0" * 32),
    "metric_history": lambda r: r.metric_history("0" * 32, "val_loss"),
    "recent_versions": lambda r: r.recent_versions(),
    "storage_uri": lambda r: r.storage_uri(MODEL, "1"),
    "artifact_available": lambda r: r.artifact_available(MODEL, "1"),
    "reference_data": lambda r: r.reference_data(MODEL, "1"),
    "resolve_storage_uri": lambda r: r.resolve_storage_uri("file:///x"),
    "set_alias": lambda r: r.set_alias(MODEL, "champion", "2"),
    "delete_alias": lambda r: r.delete_alias(MODEL, "challenger"),
}


@pytest.mark.parametrize("fault", FAULTS)
def test_every_registry_call_fails_fast_naming_mlflow(fault_urls, fault, short_mlflow_timeout):
    reg = MlflowRegistry(fault_urls[fault])
    took, outs = {}, {}
    for name, call in REGISTRY_CALLS.items():
        took[name], out = elapsed(call, reg)
        outs[name] = out
        assert isinstance(out, Unavailable), (name, out)
        assert out.source == SOURCE, (name, out.source)
    expected = {"down": "cannot reach the MLflow server", "hung": "did not answer within 1 s",
                "500": "the MLflow server answered HTTP 500"}[fault]
    assert expected in outs["list_models"].message, outs["list_models"].message
    if fault == "hung":  # one timeout, then every other call is refused at once: not one timeout per call
        assert 0.9 <= took["list_models"] < 3, took
        assert max(v for k, v in took.items() if k != "list_models") < 0.5, took
        assert all("not asked again" in o.message for k, o in outs.items() if k != "list_models"), outs
    assert sum(took.values()) < BUDGET, took


def test_mlflow_defaults_bound_a_hung_server_in_a_fresh_process(fault_urls):
    """Without MLFLOW_HTTP_REQUEST_* in the environment (the tests set them), the adapter's own defaults must
    bound a hung server: MLflow alone would wait 120 s per request and retry 7 times."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_HTTP_REQUEST")}
    code = ("import os, time\n"
            "from services.registry.mlflow_registry import MlflowRegistry\n"
            "from services.errors import Unavailable\n"
            f"reg = MlflowRegistry({fault_urls['hung']!r})\n"
            "reg.client  # imports MLflow (seconds) outside the measure, as the app does at start\n"
            "t = time.monotonic()\n"
            "try:\n"
            "    reg.list_models()\n"
            "except Unavailable as exc:\n"
            "    print('UNAVAILABLE', exc.source, '|', exc.message)\n"
            "print('TOOK', round(time.monotonic() - t, 1), os.environ['MLFLOW_HTTP_REQUEST_TIMEOUT'],"
            " os.environ['MLFLOW_HTTP_REQUEST_MAX_RETRIES'])\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60)
    out = proc.stdout
    assert "UNAVAILABLE MLflow registry | the MLflow server did not answer within 5 s" in out, out + proc.stderr
    took = float(out.split("TOOK ")[1].split()[0])
    assert took < 7, out
    assert out.strip().endswith("5 0"), out


@pytest.fixture
def local(registry_template, tmp_path, clock):
    """A container on SQLite whose endpoint serves MODEL v1 (champion) with canary v2 at 20 %."""
    uri = fresh_registry(registry_template, tmp_path / "reg")
    c = make_container(uri, f"sqlite:///{tmp_path / 'c.db'}", tmp_path, clock=clock)
    c.serving.ensure_endpoint(ENDPOINT, MODEL, "1", canary_version="2", canary_weight=20)
    c.serving.ensure_endpoint("plain", MODEL, "1")
    yield c, uri
    c.engine.dispose()


@pytest.mark.parametrize("fault", FAULTS)
def test_an_action_while_mlflow_fails_is_refused_audited_and_changes_nothing(local, fault_urls, fault,
                                                                              short_mlflow_timeout):
    c, _ = local
    c.overrides["registry"] = MlflowRegistry(fault_urls[fault])  # before anything built the actions
    alice = c.directory.get("alice")
    before = _state(c, "plain")
    took, out = elapsed(c.actions.plan, alice, "start_canary", "plain", version="2", weight=10)
    assert isinstance(out, Unavailable) and out.source == SOURCE, out
    assert took < BUDGET
    assert _state(c, "plain") == before
    last = _last_audit(c)
    assert (last.action, last.result, last.target) == ("start_canary", "failed", "plain")
    assert SOURCE in last.error
    assert c.audit.verify().ok


@pytest.mark.parametrize("fault", FAULTS)
def test_approving_while_mlflow_fails_is_refused_and_the_request_stays_pending(local, fault_urls, fault,
                                                                               short_mlflow_timeout):
    c, uri = local
    alice, bob = c.directory.get("alice"), c.directory.get("bob")
    req = c.actions.execute(c.actions.plan(alice, "request_promotion", ENDPOINT, version="2"), alice, "go")
    before = _state(c)
    reg = c.registry  # MLflow goes away after the request was filed
    reg._client, reg.tracking_uri, reg.registry_uri = None, fault_urls[fault], fault_urls[fault]
    took, out = elapsed(c.actions.approve, bob, req.request_id, "ok")
    assert isinstance(out, ConsoleError) and out.source == SOURCE, out
    assert took < BUDGET
    assert _state(c) == before
    last = _last_audit(c)
    assert (last.action, last.result) == ("approve", "failed") and SOURCE in last.error
    assert MlflowRegistry(uri).aliases(MODEL)["champion"] == "1"
    assert c.approvals.get(req.request_id).status == "pending"  # nothing happened: it can be approved later
    assert c.audit.verify().ok


@pytest.mark.parametrize("fault", FAULTS)
def test_mlflow_failing_after_the_endpoint_moved_restores_the_endpoint(local, fault_urls, fault,
                                                                       short_mlflow_timeout):
    """MLflow answers the plan, then goes away (a real socket: refused, hung or 500) the moment the endpoint
    write lands: the alias move fails, the endpoint is restored, the attempt is audited as failed."""
    from sqlalchemy import event

    c, uri = local
    alice, bob = c.directory.get("alice"), c.directory.get("bob")
    reg = c.registry
    req = c.actions.execute(c.actions.plan(alice, "request_promotion", ENDPOINT, version="2"), alice, "go")
    before = _state(c)[:3]

    def mlflow_goes_away(conn, cursor, statement, *args):
        if statement.startswith("UPDATE endpoints"):
            reg._client, reg.tracking_uri, reg.registry_uri = None, fault_urls[fault], fault_urls[fault]

    event.listen(c.engine, "after_cursor_execute", mlflow_goes_away)
    try:
        took, out = elapsed(c.actions.approve, bob, req.request_id, "ok")
    finally:
        event.remove(c.engine, "after_cursor_execute", mlflow_goes_away)
    assert isinstance(out, Unavailable) and out.source == SOURCE, out
    assert "endpoint was restored" in out.message
    assert took < BUDGET
    assert _state(c)[:3] == before
    assert MlflowRegistry(uri).aliases(MODEL)["champion"] == "1"
    last = _last_audit(c)
    assert (last.action, last.result) == ("approve", "failed") and "restored" in last.error
    assert c.approvals.get(req.request_id).status == "failed"
    notes = [r.note for r in c.serving.get_endpoint(ENDPOINT).revisions]
    assert notes[:2] == ["compensation: registry update failed"] * 2
    assert c.audit.verify().ok


# -- Kubernetes API -------------------------------------------------------------------------------------------
NS, NAME = "ml", "screening"
EP = f"{NS}/{NAME}"
ANN = "mlops-console.io/"
K8S_FAULTS = ("500", "503", "hang")


def _short_timeouts(c) -> None:
    """1 s per Kubernetes call instead of the defaults (3+5 s reads, 3+8 s writes), where the defaults are not
    what a test checks (test_kubernetes_reads_fail_fast_naming_kserve checks them)."""
    c.serving._kube.request_timeout = c.serving._kube.write_timeout = (1, 1)


def _inject(double, fault: str, **where):
    if fault == "hang":
        return double.hang_next(times=100, **where)
    double.fail_next(int(fault), times=100, **where)
    return None


@pytest.fixture
def kc(registry_template, tmp_path, k8s_double, clock):
    """A container whose serving is KServe through the API double (default timeouts), MODEL v1 stable."""
    from services.serving.kserve import KServeBackend

    uri = fresh_registry(registry_template, tmp_path / "reg")
    reg = MlflowRegistry(uri)
    storage = reg.storage_uri(MODEL, "1")
    k8s_double.put_object({
        "apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
        "metadata": {"name": NAME, "namespace": NS, "annotations": {
            ANN + "registered-model": MODEL, ANN + "model-version": "1",
            ANN + "run-id": reg.get_version(MODEL, "1").run_id, ANN + "storage-uri": storage}},
        "spec": {"predictor": {"model": {"modelFormat": {"name": "sklearn"}, "storageUri": storage},
                               "minReplicas": 1}}})
    k8s_double.simulate_controller(NS, NAME)
    api = k8s_double.api_client()
    c = make_container(uri, f"sqlite:///{tmp_path / 'c.db'}", tmp_path, clock=clock,
                       serving=KServeBackend((NS,), api_client=api))
    yield c
    api.close()
    c.engine.dispose()


@pytest.mark.parametrize("fault", K8S_FAULTS)
def test_kubernetes_reads_fail_fast_naming_kserve(kc, k8s_double, fault):
    """(The default timeouts bound a page: tests/ui/test_faults_pages.py.)"""
    c = kc
    _short_timeouts(c)
    _inject(k8s_double, fault)
    took_list, out = elapsed(c.serving.list_endpoints)
    assert isinstance(out, Unavailable) and out.source == "KServe", out
    took_get, again = elapsed(c.serving.get_endpoint, EP)
    assert isinstance(again, Unavailable) and again.source == "KServe", again
    if fault == "hang":  # one read timeout, no urllib3 retries (4 timeouts), then refused at once
        assert "did not answer in time" in out.message
        assert 0.9 <= took_list < 3 and took_get < 0.5, (took_list, took_get)
        assert "not asked again" in again.message
        assert k8s_double._hangs[0].remaining == 99  # one request reached the server, not four, not two
    else:
        assert f"HTTP {fault}" in out.message and took_list + took_get < 1
        assert [r.status for r in k8s_double.requests] == [int(fault)] * 2  # nothing retried


def test_kubernetes_reads_work_again_once_the_breaker_rests(kc, k8s_double):
    c = kc
    _short_timeouts(c)
    release = _inject(k8s_double, "hang")
    now = [1000.0]
    c.serving._kube.breaker.clock = lambda: now[0]
    assert isinstance(elapsed(c.serving.list_endpoints)[1], Unavailable)
    release.set()
    k8s_double._hangs.clear()
    assert isinstance(elapsed(c.serving.list_endpoints)[1], Unavailable)  # resting: not asked
    now[0] += 16
    assert [ep.name for ep in c.serving.list_endpoints()] == [EP]


@pytest.mark.parametrize("fault", K8S_FAULTS)
@pytest.mark.parametrize("stage", ["dry run", "patch"])
def test_kubernetes_failing_during_an_action_leaves_the_isvc_unchanged_and_is_audited(kc, k8s_double, fault, stage):
    """Kubernetes fails during the dry run (refused before anything is written) or on the patch itself (nothing
    half-applied, never retried; a hung patch is said to maybe have applied and the re-read tells)."""
    c = kc
    _short_timeouts(c)
    alice = c.directory.get("alice")
    stored = k8s_double.get_object(NS, NAME)
    if stage == "dry run":
        _inject(k8s_double, fault)
        took, out = elapsed(c.actions.plan, alice, "start_canary", EP, version="2", weight=10)
    else:
        plan = c.actions.plan(alice, "start_canary", EP, version="2", weight=10)
        _inject(k8s_double, fault, method="PATCH")
        took, out = elapsed(c.actions.execute, plan, alice, "try v2")
    assert isinstance(out, Unavailable) and out.source == "KServe", out
    assert took < BUDGET, took
    assert k8s_double.get_object(NS, NAME) == stored  # nothing (half-)applied
    sent = [] if stage == "dry run" or fault == "hang" else [int(fault)]
    assert [r.status for r in k8s_double.patches()] == sent  # never retried
    if stage == "patch" and fault == "hang":  # sent, unanswered: said so, and the re-read tells what happened
        assert "may have applied" in out.message and "nothing changed" in out.message, out.message
    last = _last_audit(c)
    assert (last.action, last.result, last.target) == ("start_canary", "failed", EP) and "KServe" in last.error
    assert c.audit.verify().ok
    if stage == "patch":  # (after a failed dry run the reads rest for the breaker's cooldown)
        ep = c.serving.get_endpoint(EP)
        assert (ep.stable_version, ep.canary_version) == ("1", None)


def test_a_read_before_the_patch_that_hangs_is_a_plain_failure_not_an_unknown(kc, k8s_double):
    """The backend's read just before its write times out: nothing was sent, so the action fails plainly (no
    'UNKNOWN whether applied', nothing left for repair) although the API server is still resting."""
    c = kc
    _short_timeouts(c)
    alice = c.directory.get("alice")
    stored = k8s_double.get_object(NS, NAME)
    plan = c.actions.plan(alice, "start_canary", EP, version="2", weight=10)
    _inject(k8s_double, "hang", method="GET")
    took, out = elapsed(c.actions.execute, plan, alice, "try v2")
    assert isinstance(out, Unavailable) and out.source == "KServe", out
    assert took < BUDGET and "UNKNOWN" not in out.message and not getattr(out, "needs_repair", False), out.message
    assert k8s_double.get_object(NS, NAME) == stored and not k8s_double.patches()
    last = _last_audit(c)
    assert (last.action, last.result) == ("start_canary", "failed")
    assert c.actions.needs_repair() == []


# -- Prometheus ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fault", FAULTS)
def test_prometheus_faults_are_named_and_bounded(fault_urls, fault, tmp_path):
    from datetime import timedelta

    from services.composition import build
    from services.settings import Settings

    env = {"MLOPS_DATA_DIR": str(tmp_path), "MLOPS_METRICS_SOURCE": "prometheus",
           "MLOPS_PROMETHEUS_URL": fault_urls[fault]}
    assert Settings.from_env(env, secrets_path=tmp_path / "none.toml").prometheus_timeout_seconds == 5
    # 1 s here; the default (5 s) bounds a page in tests/ui/test_faults_pages.py
    s = Settings.from_env({**env, "MLOPS_PROMETHEUS_TIMEOUT_SECONDS": "1"}, secrets_path=tmp_path / "none.toml")
    metrics = build(s).metrics
    now = metrics.clock()
    took = []
    for _ in range(3):  # a page asks several times
        t, out = elapsed(metrics.summary, ENDPOINT, now - timedelta(hours=1), now)
        took.append(t)
        assert isinstance(out, Unavailable) and out.source == "prometheus" and "Prometheus" in out.message, out
    if fault == "hung":
        assert 0.9 <= took[0] < 3 and max(took[1:]) < 0.5, took
    assert sum(took) < BUDGET, took


@pytest.mark.parametrize("fault", FAULTS)
def test_alertmanager_faults_are_named_and_bounded(fault_urls, fault):
    from services.alerts.alertmanager import AlertmanagerAlerts

    am = AlertmanagerAlerts(fault_urls[fault], timeout_s=1)
    took, outs = [], []
    for _ in range(3):
        t, out = elapsed(am.alerts, endpoint=ENDPOINT)
        took.append(t)
        outs.append(out)
        assert isinstance(out, Unavailable) and out.source == "Alertmanager", out
    if fault == "hung":
        assert 0.9 <= took[0] < 3 and max(took[1:]) < 0.5, took
        assert "no answer within 1 s" in outs[0].message and "not asked again" in outs[1].message, outs
    assert sum(took) < BUDGET, took


# -- the ingest behind the gateway ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def gateway_container(registry_template, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gateway-faults")
    uri = fresh_registry(registry_template, tmp / "reg")
    c = make_container(uri, f"sqlite:///{tmp / 'console.db'}", tmp)
    c.serving.ensure_endpoint(ENDPOINT, MODEL, "1")
    yield c, uri
    c.engine.dispose()


def test_the_gateway_keeps_serving_while_the_ingest_is_down_and_says_so(gateway_container, caplog):
    from services.gateway import GatewayConfig
    from services.gateway.app import build_app
    from tests.conftest import free_port, wait_for
    from tests.faults import Answers
    from tests.integration.test_gateway import ROW, running

    c, uri = gateway_container
    port = free_port()
    app = build_app(c.registry, c.serving, GatewayConfig(tracking_uri=uri, ingest_url=f"http://127.0.0.1:{port}/",
                                                         log_timeout=1.0))
    caplog.set_level(logging.WARNING, logger="services.gateway")
    with running(app) as client:
        for _ in range(10):
            status, headers, body = client.v1([ROW])
            assert status == 200 and len(body["predictions"]) == 1
        health = wait_for("the health answer to say the ingest fails",
                          lambda: (h := client.get("/v2/health/ready"))[2]["payload_log"]["failing"] >= 5 and h,
                          timeout=15)
        assert health[0] == 200 and health[2]["ready"] is True
        log = health[2]["payload_log"]
        assert log["delivering"] is False and log["url"] == f"http://127.0.0.1:{port}/"
        assert "Connect" in log["last_error"] or "refused" in log["last_error"].lower(), log
        assert client.metric("mlops_gateway_logger_failed_total") >= 5
        said = [r.getMessage() for r in caplog.records if "does not take payload events" in r.getMessage()]
        assert len(said) == 1, said  # said once, not once per event
        # the ingest comes back on the same address: the gateway says so, and delivers again
        receiver = Answers(202, port=port)
        try:
            client.v1([ROW], headers={"x-request-id": "after-the-outage"})
            wait_for("events delivered again",
                     lambda: [h for h in receiver.headers if h.get("ce-id") == "after-the-outage"], timeout=15)
            assert client.get("/v2/health/ready")[2]["payload_log"]["delivering"] is True
            assert any("takes payload events again" in r.getMessage() for r in caplog.records)
        finally:
            receiver.close()
