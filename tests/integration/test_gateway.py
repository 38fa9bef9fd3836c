"""The gateway for real: uvicorn on a free port serving real MLflow models from the test registry, over HTTP.

The console database is SQLite here (the serving port is what the gateway reads; its PostgreSQL adapter is
covered by the serving tests). Every wait is a bounded poll.
"""

from __future__ import annotations

import http.client
import http.server
import json
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from datetime import datetime
from urllib.parse import unquote

import pytest

from services.gateway import GatewayConfig
from services.refs import VersionRef
from services.serving import Change
from tests.conftest import ENDPOINT, MODEL, ROOT, free_port, fresh_registry, make_container
from tests.processes import stop_process

ROW = {"mean radius": 0.7, "mean texture": -0.2}


@pytest.fixture
def database_url(tmp_path):  # SQLite only for this module
    return f"sqlite:///{tmp_path / 'console.db'}"


class Client:
    def __init__(self, port: int):
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

    def request(self, method: str, path: str, body=None, headers=None, raw: bytes | None = None):
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        try:
            self.conn.request(method, path, body=data, headers={"content-type": "application/json",
                                                                 **(headers or {})})
            resp = self.conn.getresponse()
        except (http.client.HTTPException, OSError):
            self.conn.close()
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            raise
        text = resp.read()
        ctype = resp.getheader("content-type", "")
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, (
            json.loads(text) if ctype.startswith("application/json") else text.decode())

    def post(self, path, body=None, **kw):
        return self.request("POST", path, body, **kw)

    def get(self, path):
        return self.request("GET", path)

    def v1(self, instances, endpoint=ENDPOINT, **kw):
        return self.post(f"/v1/models/{endpoint}:predict", {"instances": instances}, **kw)

    def metric(self, name: str, **labels) -> float:
        from prometheus_client.parser import text_string_to_metric_families

        _, _, text = self.get("/metrics")
        total = 0.0
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                    total += s.value
        return total


@contextmanager
def running(app):
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    client = Client(port)
    deadline = time.monotonic() + 30
    while True:
        try:
            if client.get("/v2/health/ready")[0] == 200:
                break
        except OSError:
            pass
        assert time.monotonic() < deadline, "the gateway did not get ready within 30 s"
        time.sleep(0.05)
    try:
        yield client
    finally:
        server.should_exit = True
        thread.join(15)


class Receiver:
    """A local ingest that records every CloudEvent (headers and body) it is sent."""

    def __init__(self):
        self.events: list[tuple[dict, bytes]] = []
        events = self.events

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as a real ingest
            def do_POST(self):  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                events.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(202)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def by_id(self, rid: str) -> list[tuple[dict, bytes]]:
        return [e for e in list(self.events) if e[0].get("ce-id") == rid]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class BlackHole:
    """An ingest that accepts connections and never answers."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/"
        self.held: list[socket.socket] = []
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.closed:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)

    def close(self):
        self.closed = True
        self.sock.close()
        for c in self.held:
            c.close()


@pytest.fixture(scope="module")
def served(registry_template, tmp_path_factory):
    """MODEL v1 stable + v2 canary at 20 % on ``screening``; ``broken`` serves a version without files."""
    tmp = tmp_path_factory.mktemp("gateway")
    uri = fresh_registry(registry_template, tmp / "reg")
    c = make_container(uri, f"sqlite:///{tmp / 'console.db'}", tmp)
    c.serving.ensure_endpoint(ENDPOINT, MODEL, "1", canary_version="2", canary_weight=20)
    c.serving.ensure_endpoint("broken", MODEL, "4")
    yield c, uri, tmp
    c.engine.dispose()


@pytest.fixture(scope="module")
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.fixture(scope="module")
def gw(served, receiver):
    from services.gateway.app import build_app

    c, uri, _ = served
    app = build_app(c.registry, c.serving, GatewayConfig(tracking_uri=uri, ingest_url=receiver.url))
    with running(app) as client:
        client.app = app
        yield client


@pytest.fixture(scope="module")
def local_models(served):
    import mlflow.pyfunc

    c, _, _ = served
    return {v: mlflow.pyfunc.load_model(c.registry.storage_uri(MODEL, v)) for v in ("1", "2")}


def _expected(local_models, version, rows):
    import pandas as pd

    return local_models[version].predict(pd.DataFrame(rows, columns=list(ROW))).tolist()


# ------------------------------------------------------------------ protocols

def test_v1_list_and_object_instances_answer_with_the_version_that_answered(gw, local_models):
    rows = [[0.7, -0.2], [-1.5, 0.3], [2.0, 1.0]]
    status, headers, body = gw.v1([rows[0], {"mean texture": 0.3, "mean radius": -1.5}, rows[2]])
    assert status == 200, body
    assert headers["x-model-role"] in ("stable", "canary")
    assert headers["x-model-version"] == {"stable": "1", "canary": "2"}[headers["x-model-role"]]
    assert body == {"predictions": _expected(local_models, headers["x-model-version"], rows)}
    assert len(headers["x-request-id"]) == 36  # a new uuid4
    _, headers, _ = gw.v1([rows[0]], headers={"x-request-id": "my-own-id"})
    assert headers["x-request-id"] == "my-own-id"


def test_v2_per_feature_inputs_and_a_tensor(gw, local_models):
    rows = [[0.7, -0.2], [-1.5, 0.3]]
    per_feature = {"inputs": [
        {"name": "mean texture", "shape": [2], "datatype": "FP64", "data": [-0.2, 0.3]},
        {"name": "mean radius", "shape": [2], "datatype": "FP32", "data": [0.7, -1.5]}]}
    status, headers, body = gw.post(f"/v2/models/{ENDPOINT}/infer", per_feature, headers={"x-request-id": "r-v2"})
    assert status == 200, body
    version = headers["x-model-version"]
    assert body == {"model_name": ENDPOINT, "model_version": version, "id": "r-v2", "outputs": [
        {"name": "predict", "shape": [2], "datatype": "INT64", "data": _expected(local_models, version, rows)}]}
    tensor = {"id": "client-id", "inputs": [{"name": "input-0", "shape": [2, 2], "datatype": "FP64",
                                             "data": [[0.7, -0.2], [-1.5, 0.3]]}]}
    status, headers, body = gw.post(f"/v2/models/{ENDPOINT}/infer", tensor)
    assert status == 200, body
    assert body["id"] == "client-id" and body["model_version"] == headers["x-model-version"]
    assert body["outputs"][0]["data"] == _expected(local_models, headers["x-model-version"], rows)


@pytest.mark.parametrize("path, body, status, words", [
    ("/v1/models/screening:predict", {"instances": [{"mean radius": 1, "mean textur": 2}]}, 400,
     ["unknown feature 'mean textur'", "'mean texture'"]),
    ("/v1/models/screening:predict", {"instances": [{"mean radius": 1}]}, 400, ["missing feature 'mean texture'"]),
    ("/v1/models/screening:predict", {"instances": [{"mean radius": "big", "mean texture": 2}]}, 400,
     ["'mean radius'", "number (double)"]),
    ("/v1/models/screening:predict", {"instances": [[1, 2, 3]]}, 400, ["3 values", "takes 2"]),
    ("/v1/models/screening:predict", {"inputs": [[1, 2]]}, 400, ["instances"]),
    ("/v2/models/screening/infer", {"inputs": [{"name": "mean radius", "shape": [1], "datatype": "BYTES",
                                                "data": ["a"]}, {"name": "mean texture", "shape": [1],
                                                                 "datatype": "FP64", "data": [1]}]}, 400,
     ["datatype BYTES", "'mean radius'"]),
    ("/v2/models/screening/infer", {"inputs": [{"name": "ratio", "shape": [1], "datatype": "FP64", "data": [1]}]},
     400, ["unknown input 'ratio'"]),
    ("/v1/models/nowhere:predict", {"instances": [[1, 2]]}, 404, ["no endpoint named 'nowhere'"]),
    ("/v2/models/nowhere/infer", {"inputs": []}, 404, ["nowhere"]),
    ("/v1/models/screening:predict", {"instances": [[1.0, 2.0]] * 1001}, 413, ["1001", "1000"]),
    ("/v2/models/screening/infer", {"inputs": [{"name": "t", "shape": [1001, 2], "datatype": "FP64",
                                                "data": [1.0] * 2002}]}, 413, ["1001"]),
])
def test_bad_requests_get_a_clear_json_error_never_a_500(gw, path, body, status, words):
    got, headers, answer = gw.post(path, body)
    assert got == status, answer
    assert set(answer) == {"error"}
    for w in words:
        assert w in answer["error"], (w, answer)
    assert headers["x-request-id"]


def test_malformed_json_is_400(gw):
    status, _, body = gw.post(f"/v1/models/{ENDPOINT}:predict", raw=b'{"instances": [[1, 2]')
    assert status == 400 and "not valid JSON" in body["error"]


def test_a_version_whose_files_are_gone_is_503_and_counted(gw):
    before = gw.metric("mlops_gateway_errors_total", endpoint="broken")
    status, headers, body = gw.v1([[1.0, 2.0]], endpoint="broken")
    assert status == 503 and "v4 cannot be served" in body["error"] and headers["x-model-version"] == "4"
    assert gw.metric("mlops_gateway_errors_total", endpoint="broken") == before + 1


def test_readiness(gw):
    assert gw.get("/v2/health/ready")[:1] == (200,)
    assert gw.get("/v2/health/live")[0] == 200
    status, _, body = gw.get(f"/v2/models/{ENDPOINT}/ready")
    assert status == 200 and body["ready"] is True and body["versions"] == ["1", "2"]
    assert gw.get(f"/v1/models/{ENDPOINT}")[2]["ready"] is True
    assert gw.get("/v1/models/broken")[0] == 503
    assert gw.get("/v2/models/nowhere/ready")[0] == 404


# ------------------------------------------------------------------ routing

def _roles(gw, n: int) -> dict[str, int]:
    counts = {"stable": 0, "canary": 0}
    for _ in range(n):
        status, headers, _ = gw.v1([ROW])
        assert status == 200
        counts[headers["x-model-role"]] += 1
        assert headers["x-model-version"] == {"stable": "1", "canary": "2"}[headers["x-model-role"]]
    return counts


def test_weighted_routing_is_statistically_right_and_follows_a_weight_change_within_a_second(gw, served):
    from scipy.stats import binom

    n = 2000
    counts = _roles(gw, n)
    lo, hi = binom.interval(0.999, n, 0.20)
    assert lo <= counts["canary"] <= hi, counts

    c, _, _ = served
    ep = c.serving.get_endpoint(ENDPOINT)
    c.serving.apply(ENDPOINT, Change("abort", ep.resource_version), actor="test", note="abort")
    aborted_at = time.monotonic()
    try:
        deadline = aborted_at + 5
        while True:
            batch = _roles(gw, 200)
            if batch["canary"] == 0:
                break
            assert time.monotonic() < deadline, f"the canary still answers 5 s after the abort: {batch}"
        # From now on no canary answer at all, and it took about the snapshot's second, not a restart.
        assert _roles(gw, 200)["canary"] == 0
        assert time.monotonic() - aborted_at < 5
    finally:
        ep = c.serving.get_endpoint(ENDPOINT)
        c.serving.apply(ENDPOINT, Change("start_canary", ep.resource_version, version=VersionRef(MODEL, "2"),
                                         weight=20), actor="test", note="restore")


# ------------------------------------------------------------------ metrics and faults

def test_metrics_count_by_endpoint_model_version_and_role(gw):
    before = gw.metric("mlops_gateway_requests_total", endpoint=ENDPOINT, version="1", role="stable")
    stable = _roles(gw, 20)["stable"]
    status, headers, text = gw.get("/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain")
    for name in ("mlops_gateway_requests_total", "mlops_gateway_errors_total",
                 "mlops_gateway_request_duration_seconds_bucket", "mlops_gateway_logger_dropped_total"):
        assert f"# TYPE {name.removesuffix('_bucket').removesuffix('_total')}" in text or name in text
    assert gw.metric("mlops_gateway_requests_total", endpoint=ENDPOINT, model=MODEL, version="1",
                     role="stable") == before + stable
    assert gw.metric("mlops_gateway_request_duration_seconds_count", endpoint=ENDPOINT, version="1") >= stable


def test_injected_faults_fail_a_versions_answers_and_slow_them(gw):
    assert gw.post("/admin/faults", {"spec": "1=errors:1.0"})[2] == {
        "faults": {"1": {"errors": 1.0, "latency_ms": 0.0}}}
    try:
        errors_before = gw.metric("mlops_gateway_errors_total", endpoint=ENDPOINT, version="1")
        seen = {"stable": 0, "canary": 0}
        for _ in range(40):
            status, headers, body = gw.v1([ROW])
            seen[headers["x-model-role"]] += 1
            assert status == (503 if headers["x-model-role"] == "stable" else 200), body
        assert gw.metric("mlops_gateway_errors_total", endpoint=ENDPOINT, version="1") == errors_before + seen["stable"]
        gw.post("/admin/faults", {"faults": {"1": {"latency_ms": 60}}})
        for _ in range(10):
            t0 = time.perf_counter()
            status, headers, _ = gw.v1([ROW])
            took = time.perf_counter() - t0
            assert status == 200
            if headers["x-model-role"] == "stable":
                assert took >= 0.06
        assert gw.post("/admin/faults", {"spec": "1=slow:3"})[0] == 400
    finally:
        assert gw.post("/admin/faults", {})[2] == {"faults": {}}


# ------------------------------------------------------------------ payload logging

def _wait(predicate, what: str, seconds: float = 5.0):
    deadline = time.monotonic() + seconds
    while not (result := predicate()):
        assert time.monotonic() < deadline, f"waited {seconds} s for {what}"
        time.sleep(0.02)
    return result


def _pair(receiver, rid):
    events = receiver.by_id(rid)
    return events if len(events) == 2 else None


def test_every_prediction_is_logged_as_a_kserve_request_and_response_cloudevent(gw, receiver):
    body = {"instances": [ROW, [0.1, 0.2]]}
    raw = json.dumps(body).encode()
    status, headers, answer = gw.post(f"/v1/models/{ENDPOINT}:predict", raw=raw, headers={"x-request-id": "log-1"})
    assert status == 200
    events = _wait(lambda: _pair(receiver, "log-1"), "both events of log-1", 15)
    by_type = {h["ce-type"]: (h, b) for h, b in events}
    req_h, req_b = by_type["org.kubeflow.serving.inference.request"]
    resp_h, resp_b = by_type["org.kubeflow.serving.inference.response"]
    role, version = headers["x-model-role"], headers["x-model-version"]
    for h in (req_h, resp_h):
        assert h["ce-specversion"] == "1.0" and h["ce-id"] == "log-1"
        assert h["ce-source"].startswith("http://") and h["content-type"] == "application/json"
        assert h["ce-namespace"] == "default" and h["ce-inferenceservicename"] == ENDPOINT
        assert h["ce-component"] == "predictor" and h["ce-endpoint"] == role
        assert h["ce-modelversion"] == version and h["ce-role"] == role and unquote(h["ce-model"]) == MODEL
        assert datetime.fromisoformat(h["ce-time"].replace("Z", "+00:00")).tzinfo is not None
    assert req_b == raw and json.loads(resp_b) == answer and resp_h["ce-status"] == "200"
    assert req_h["ce-time"] <= resp_h["ce-time"]
    # a refused request is logged too, with its error
    gw.v1([{"mean radius": "x", "mean texture": 1}], headers={"x-request-id": "log-2"})
    events = _wait(lambda: _pair(receiver, "log-2"), "both events of log-2", 15)
    resp = [b for h, b in events if h["ce-type"].endswith("response")][0]
    assert "error" in json.loads(resp)


def test_a_dead_ingest_never_slows_predictions_and_drops_are_counted(served, local_models):
    from services.gateway.app import build_app

    c, uri, _ = served
    hole = BlackHole()
    app = build_app(c.registry, c.serving, GatewayConfig(tracking_uri=uri, ingest_url=hole.url, log_queue=4,
                                                         log_workers=1, log_timeout=2.0))
    try:
        with running(app) as client:
            _roles(client, 5)  # both versions warm
            slowest = 0.0
            for _ in range(40):
                t0 = time.perf_counter()
                status, _, _ = client.v1([ROW])
                slowest = max(slowest, time.perf_counter() - t0)
                assert status == 200
            assert slowest < 0.5, f"a prediction waited {slowest:.3f} s on the dead ingest"
            assert client.metric("mlops_gateway_logger_dropped_total") >= 40
    finally:
        hole.close()


# ------------------------------------------------------------------ the command

def test_python_m_services_serve(served, tmp_path):
    c, uri, tmp = served
    port = free_port()
    env = {"MLFLOW_TRACKING_URI": uri, "MLOPS_DATABASE_URL": c.settings.database_url, "MLOPS_DATA_DIR": str(tmp),
           "MLOPS_INGEST_URL": "off", "PATH": "/usr/bin:/bin", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
           "GIT_PYTHON_REFRESH": "quiet"}
    proc = subprocess.Popen([sys.executable, "-m", "services", "serve", "--port", str(port)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        client = Client(port)
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stdout.read().decode()[-2000:]
            try:
                if client.get("/v2/health/ready")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "serve did not get ready within 60 s"
            time.sleep(0.1)
        status, headers, body = client.v1([ROW])
        assert status == 200 and headers["x-model-version"] in ("1", "2") and len(body["predictions"]) == 1
    finally:
        stop_process(proc)


# ------------------------------------------------------------------ trusted types

def test_tree_models_load_with_vetted_skops_types_and_pickles_only_when_allowed(tmp_path):
    import mlflow.sklearn
    import numpy as np
    import pandas as pd
    from sklearn.tree import DecisionTreeClassifier

    from services.gateway.models import TRUSTED_SKOPS_TYPES, ModelLoadError, load_local
    from services.gateway.protocols import parse_v1

    x = np.random.default_rng(0).normal(size=(40, 2))
    tree = DecisionTreeClassifier(max_depth=3).fit(pd.DataFrame(x, columns=["a", "b"]), (x[:, 0] > 0).astype(int))
    mlflow.sklearn.save_model(tree, tmp_path / "skops", serialization_format="skops",
                              skops_trusted_types=["sklearn.tree._tree.Tree"])
    cols = (("a", "double"), ("b", "double"))
    loaded = load_local(tmp_path / "skops", model="t", version="1", columns=cols, trusted=TRUSTED_SKOPS_TYPES)
    batch = parse_v1({"instances": x[:5].tolist()}, cols, max_batch=10)
    expected = tree.predict(pd.DataFrame(x[:5], columns=["a", "b"])).tolist()
    assert loaded.predict(batch) == expected
    # the model's own list of trusted types is not enough: the gateway's allow-list decides
    with pytest.raises(ModelLoadError, match=r"sklearn\.tree\._tree\.Tree.*MLOPS_GATEWAY_SKOPS_TRUSTED"):
        load_local(tmp_path / "skops", model="t", version="1", columns=cols, trusted=frozenset())

    mlflow.sklearn.save_model(tree, tmp_path / "pickle", serialization_format="cloudpickle")
    with pytest.raises(ModelLoadError, match="MLOPS_GATEWAY_ALLOW_PICKLE"):
        load_local(tmp_path / "pickle", model="t", version="1", columns=cols, trusted=TRUSTED_SKOPS_TYPES)
    allowed = load_local(tmp_path / "pickle", model="t", version="1", columns=cols, trusted=frozenset(),
                         allow_pickle=True)
    assert allowed.predict(batch) == expected
