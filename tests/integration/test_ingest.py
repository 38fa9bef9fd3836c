"""The ingest as KServe's inference logger meets it: a real uvicorn server on a free port receiving CloudEvents
built with the ``cloudevents`` SDK in binary mode, shaped like KServe's (``ce-namespace``,
``ce-inferenceservicename``, ``ce-component``, ``ce-endpoint``; the gateway's ``ce-modelversion``/``ce-role``
when present): batched V1 and V2 payloads, response before request, repeated events, malformed ones, labels
late; the CLI over what was stored; and two ``python -m services ingest`` processes on one PostgreSQL
database receiving interleaved and duplicated events at once (rows and rollups exact)."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest
import requests
import uvicorn
from cloudevents.core.bindings.http import to_binary
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from services.cli import main
from services.ingest.app import Attribution, Ingest, create_app
from services.predictions import LATENCY_BUCKETS_MS
from services.predictions.sql import SqlPredictionLog
from services.store.db import make_engine
from tests.conftest import ENDPOINT, MODEL, ROOT, _pg_available, drop_pg, free_port, fresh_pg_url
from tests.processes import stop_process

T = datetime(2026, 11, 26, 12, 5, tzinfo=UTC)  # the container's endpoint exists from 12:00 (v1 stable, v2 canary 20%)
REQ, RESP = "org.kubeflow.serving.inference.request", "org.kubeflow.serving.inference.response"


def event(kind: str, rid: str, body, at: datetime, *, name: str = ENDPOINT, ns: str = "default",
          version: str | None = None, role: str | None = None, status: int | None = None) -> tuple[dict, bytes]:
    """One CloudEvent the way KServe's logger (plus the gateway's extensions) sends it, in binary mode."""
    attrs = {"specversion": "1.0", "id": rid, "source": "http://localhost:9081/", "time": at,
             "type": REQ if kind == "request" else RESP, "datacontenttype": "application/json",
             "namespace": ns, "inferenceservicename": name, "component": "predictor", "endpoint": "default"}
    if version is not None:
        attrs["modelversion"] = version
    if role is not None:
        attrs["role"] = role
    if status is not None:
        attrs["status"] = str(status)
    msg = to_binary(CloudEvent(attrs, data=body), JSONFormat())
    return dict(msg.headers), msg.body


def post(base: str, ev: tuple[dict, bytes]) -> requests.Response:
    return requests.post(base + "/", headers=ev[0], data=ev[1], timeout=30)


def wait_healthy(base: str, timeout: float = 30.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the ingest exited with {proc.returncode}: {proc.stderr.read()[-2000:]}")
        try:
            if requests.get(base + "/healthz", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{base}/healthz did not answer within {timeout} s")


@contextmanager
def serving(app):
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(base)
        yield base
    finally:
        server.should_exit = True
        thread.join(15)


@pytest.fixture
def ingest(container):
    """The ingest over the test container (local backend: endpoint ENDPOINT serving MODEL v1, canary v2)."""
    with serving(create_app(container)) as base:
        yield base, container


def bucket(ms: float) -> int:
    return next(i for i, b in enumerate(LATENCY_BUCKETS_MS) if ms <= b)


# -- pairs ----------------------------------------------------------------------------------------------------
def test_batched_v1_pair_is_split_named_and_attributed(ingest):
    base, c = ingest
    instances = [[14.2, 20.1], [11.0, 18.3], [19.1, 25.0]]
    r = post(base, event("request", "v1-a", {"instances": instances}, T, version="2", role="canary"))
    assert r.status_code == 202 and r.json()["waiting_for"] == "response"
    assert c.predictions.rows(ENDPOINT) == [], "nothing half-paired is written"
    r = post(base, event("response", "v1-a", {"predictions": [1, 0, 1]}, T + timedelta(milliseconds=12),
                         version="2", role="canary"))
    assert r.status_code == 200 and r.json()["stored"] == 3, r.text
    rows = sorted(c.predictions.rows(ENDPOINT, request_id="v1-a"), key=lambda x: x.row)
    assert [(x.row, x.features, x.prediction, x.version, x.role, x.model) for x in rows] == [
        (i, {"mean radius": a, "mean texture": b}, p, "2", "canary", MODEL)
        for i, ((a, b), p) in enumerate(zip(instances, [1, 0, 1], strict=True))], "signature names from the registry"
    assert {x.latency_ms for x in rows} == {12.0} and {x.at for x in rows} == {T}
    (u,) = c.predictions.rollups(ENDPOINT, T - timedelta(minutes=1), T + timedelta(minutes=1))
    assert (u.version, u.role, u.count, u.errors, u.latency_buckets[bucket(12.0)]) == ("2", "canary", 3, 0, 3)


def test_v2_response_first_and_the_serving_history_attributes(ingest):
    base, c = ingest
    # one input per feature, shape [n]; the response comes first and names its model_version
    inputs = [{"name": "mean radius", "shape": [2], "datatype": "FP64", "data": [13.0, 17.5]},
              {"name": "mean texture", "shape": [2], "datatype": "FP64", "data": [21.0, 16.0]}]
    outputs = {"model_name": "screening", "model_version": "2",
               "outputs": [{"name": "predict", "shape": [2], "datatype": "INT64", "data": [0, 1]}]}
    assert post(base, event("response", "v2-a", outputs, T + timedelta(milliseconds=40))).status_code == 202
    r = post(base, event("request", "v2-a", {"inputs": inputs}, T))
    assert r.status_code == 200 and r.json()["stored"] == 2, r.text
    rows = sorted(c.predictions.rows(ENDPOINT, request_id="v2-a"), key=lambda x: x.row)
    assert [(x.features, x.prediction, x.version, x.role, x.latency_ms) for x in rows] == [
        ({"mean radius": 13.0, "mean texture": 21.0}, 0, "2", "canary", 40.0),
        ({"mean radius": 17.5, "mean texture": 16.0}, 1, "2", "canary", 40.0)], "v2 is the canary: history says so"
    # one [n, k] tensor named input-0, no version anywhere: the stable version at that time, role unknown
    tensor = {"inputs": [{"name": "input-0", "shape": [2, 2], "datatype": "FP64", "data": [1.5, 2.5, 3.5, 4.5]}]}
    out = {"outputs": [{"name": "output-0", "shape": [2, 1], "datatype": "FP64", "data": [0.25, 0.75]}]}
    assert post(base, event("request", "v2-b", tensor, T)).status_code == 202
    assert post(base, event("response", "v2-b", out, T + timedelta(milliseconds=3))).status_code == 200
    rows = sorted(c.predictions.rows(ENDPOINT, request_id="v2-b"), key=lambda x: x.row)
    assert [(x.features, x.prediction, x.version, x.role) for x in rows] == [
        ({"mean radius": 1.5, "mean texture": 2.5}, 0.25, "1", "unknown"),
        ({"mean radius": 3.5, "mean texture": 4.5}, 0.75, "1", "unknown")]


def test_objects_errors_and_repeated_events(ingest):
    base, c = ingest
    req = event("request", "dup-1", {"instances": [{"mean radius": 1.0}, {"mean radius": 2.0}]}, T,
                version="1", role="stable")
    resp = event("response", "dup-1", {"predictions": [0, 1]}, T + timedelta(milliseconds=2500), version="1",
                 role="stable")
    assert post(base, req).status_code == 202
    assert post(base, req).status_code == 202, "the same half again still waits"
    assert post(base, resp).json()["stored"] == 2
    for ev in (req, resp, resp):  # redelivered after the pair was stored
        assert post(base, ev).status_code in (200, 202)
    fail = event("response", "err-1", {"error": "model crashed"}, T + timedelta(seconds=1), status=503)
    assert post(base, fail).status_code == 202
    r = post(base, event("request", "err-1", {"instances": [[1.0, 2.0]]}, T, version="1", role="stable"))
    assert r.json()["stored"] == 1
    assert len(c.predictions.rows(ENDPOINT, request_id="dup-1")) == 2
    (e,) = c.predictions.rows(ENDPOINT, request_id="err-1")
    assert (e.status, e.error, e.prediction, e.ok) == (503, "model crashed", None, False)
    (u,) = c.predictions.rollups(ENDPOINT, T, T + timedelta(minutes=1))
    assert (u.count, u.errors, u.latency_sum_ms) == (3, 1, 2 * 2500.0 + 1000.0), "each row counted once"


def test_malformed_events_get_400_and_write_nothing(ingest):
    base, c = ingest
    good = event("request", "m-1", {"instances": [[1, 2]]}, T)
    no_id = ({k: v for k, v in good[0].items() if k != "ce-id"}, good[1])
    cases = {
        "missing CloudEvent header ce-id": no_id,
        "is not org.kubeflow": ({**good[0], "ce-type": "com.example.other"}, good[1]),
        "not JSON": (good[0], b"{not json"),
        "no 'instances'": event("request", "m-2", {"rows": [1]}, T),
        "has shape [2, 2] but 3 values": event("request", "m-3", {"inputs": [
            {"name": "input-0", "shape": [2, 2], "datatype": "FP64", "data": [1, 2, 3]}]}, T),
        "disagree on the batch size": event("request", "m-4", {"inputs": [
            {"name": "a", "shape": [2], "datatype": "FP64", "data": [1, 2]},
            {"name": "b", "shape": [3], "datatype": "FP64", "data": [1, 2, 3]}]}, T),
        "ce-inferenceservicename": ({k: v for k, v in good[0].items() if k != "ce-inferenceservicename"}, good[1]),
        "not a CloudEvent": ({"content-type": "application/json"}, good[1]),
        "'predictions' must be a list": event("response", "m-5", {"predictions": 3}, T),
    }
    for message, ev in cases.items():
        r = post(base, ev)
        assert r.status_code == 400 and message in r.json()["error"], (message, r.status_code, r.text)
    # a pair whose halves disagree: the completing half is refused, nothing is written
    assert post(base, event("request", "m-6", {"instances": [[1, 2], [3, 4]]}, T)).status_code == 202
    r = post(base, event("response", "m-6", {"predictions": [1, 0, 1]}, T))
    assert r.status_code == 400 and "has 2 instances but its response 3 predictions" in r.json()["error"]
    assert c.predictions.rows(ENDPOINT, limit=0) == []
    assert c.predictions.rollups(ENDPOINT, T - timedelta(hours=1), T + timedelta(hours=1)) == []
    assert requests.get(base + "/healthz", timeout=5).json()["pending"] == 0


def test_labels_late_and_the_cli(ingest, tmp_path, capsys):
    base, c = ingest
    for i, pred in enumerate([1, 0]):
        rid = f"lab-{i}"
        post(base, event("request", rid, {"instances": [[1.0, 2.0], [3.0, 4.0]]}, T + timedelta(seconds=i),
                         version="1", role="stable"))
        at = T + timedelta(seconds=i, milliseconds=5)
        assert post(base, event("response", rid, {"predictions": [pred, pred]}, at, version="1",
                                role="stable")).status_code == 200
    body = [{"request_id": "lab-0", "label": 1}, {"request_id": "lab-1", "row": 1, "label": 1},
            {"request_id": "ghost", "label": 0}]
    r = requests.post(base + "/v1/labels", json=body, timeout=10)
    assert r.status_code == 200 and r.json() == {"stored": 3, "unknown": ["ghost"]}
    assert requests.post(base + "/v1/labels", json=body, timeout=10).json() == {"stored": 0, "unknown": ["ghost"]}
    assert requests.post(base + "/v1/labels", json=[{"row": 1}], timeout=10).status_code == 400
    (u,) = c.predictions.rollups(ENDPOINT, T, T + timedelta(minutes=1))
    assert (u.count, u.labelled, u.correct) == (4, 3, 2)
    # the CLI: labels from a CSV (lab-1 row 0, late), then the rows
    f = tmp_path / "labels.csv"
    f.write_text("request_id,row,label\nlab-1,0,0\nnobody,,1\n", encoding="utf-8")
    capsys.readouterr()
    assert main(["labels", "--file", str(f)], container=c) == 0
    out = capsys.readouterr().out
    assert "stored 1 label(s) from 2 line(s)" in out and "nobody" in out
    assert main(["predictions", "--endpoint", ENDPOINT, "--request-id", "lab-1", "--json"], container=c) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["row"], r["label"], r["version"], r["latency_ms"]) for r in rows] == [(0, 0, "1", 5.0), (1, 1, "1", 5.0)]
    assert main(["predictions", "--endpoint", ENDPOINT, "--from", "2026-11-26T12:05:01", "--limit", "1"],
                container=c) == 0
    text = capsys.readouterr().out.splitlines()
    assert text[0].split()[:3] == ["REQUEST", "ID", "ROW"] and len(text) == 2 and text[1].startswith("lab-1")
    bad = tmp_path / "bad.csv"
    bad.write_text("id,label\nx,1\n", encoding="utf-8")
    assert main(["labels", "--file", str(bad)], container=c) == 2


def test_the_kserve_backend_names_endpoints_namespace_slash_name(database_url):
    engine = make_engine(database_url)
    log = SqlPredictionLog(engine)
    try:
        with serving(Ingest(log, Attribution(None), backend="kserve").app()) as base:
            post(base, event("request", "k-1", {"instances": [[5.0, 6.0]]}, T, name="iris", ns="team-a"))
            assert post(base, event("response", "k-1", {"predictions": [2]}, T)).status_code == 200
            no_ns = event("request", "k-2", {"instances": [[5.0]]}, T, name="iris", ns="")
            r = post(base, no_ns)
            assert r.status_code == 400 and "ce-namespace" in r.json()["error"]
        (row,) = log.rows("team-a/iris")
        assert (row.features, row.version, row.role, row.model) == ({"f0": 5.0, "f1": 6.0}, None, "unknown", None)
    finally:
        engine.dispose()


# -- two ingest processes, one PostgreSQL database ---------------------------------------------------------------
@pytest.fixture
def pg_url():
    if not _pg_available():
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is not reachable (CI must start it)")
        pytest.skip("PostgreSQL is not reachable")
    url = fresh_pg_url()
    yield url
    drop_pg(url)


def start_ingest(url: str, data_dir) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "MLOPS_DATABASE_URL": url, "MLOPS_DATA_DIR": str(data_dir),
           "MLFLOW_TRACKING_URI": "http://127.0.0.1:9", "MLOPS_SERVING_BACKEND": "local"}
    proc = subprocess.Popen([sys.executable, "-m", "services", "ingest", "--port", str(port)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    return proc, f"http://127.0.0.1:{port}"


def test_two_ingest_processes_store_interleaved_duplicated_events_exactly(pg_url, tmp_path):
    make_engine(pg_url).dispose()  # the schema, once
    procs = [start_ingest(pg_url, tmp_path / f"p{i}") for i in range(2)]
    try:
        for proc, base in procs:
            wait_healthy(base, 60, proc)
        rng = random.Random(11)
        pairs, expected = [], {}
        for i in range(200):  # 200 requests of 5 instances = 1000 rows, over 3 minutes, 2 versions
            rid, at = f"pair-{i:04d}", T + timedelta(seconds=rng.randrange(180))
            version, role = ("2", "canary") if i % 5 == 0 else ("1", "stable")
            ms = rng.choice([0.8, 4.0, 30.0, 250.0, 1500.0])
            body = {"instances": [[float(i), float(j)] for j in range(5)]}
            halves = [event("request", rid, body, at, version=version, role=role),
                      event("response", rid, {"predictions": [j % 2 for j in range(5)]},
                            at + timedelta(milliseconds=ms), version=version, role=role)]
            pairs.append(halves)
            key = (at.replace(second=0), version, role)
            count, lat, buckets = expected.get(key, (0, 0.0, [0] * len(LATENCY_BUCKETS_MS)))
            buckets[bucket(ms)] += 5
            expected[key] = (count + 5, lat + 5 * ms, buckets)
        # each pair to one process (a Service with ClientIP affinity keeps a pod's halves together), every
        # pair delivered twice (at least once: the second copy to the other process), all interleaved
        tasks = [(procs[i % 2][1], h) for i, h in enumerate(pairs)] + [(procs[1 - i % 2][1], h)
                                                                        for i, h in enumerate(pairs)]
        rng.shuffle(tasks)
        tasks = [(base, halves if rng.random() < 0.5 else halves[::-1]) for base, halves in tasks]  # resp first too

        def deliver(task):
            base, halves = task
            return [post(base, ev).status_code for ev in halves]

        started = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            codes = list(pool.map(deliver, tasks))
        elapsed = time.monotonic() - started
        assert all(c == [202, 200] for c in codes), [c for c in codes if c != [202, 200]][:5]
        print(f"\ningest: {len(tasks)} pairs ({len(tasks) * 5} rows, half duplicates) in {elapsed:.2f} s: "
              f"{len(tasks) * 5 / elapsed:.0f} rows/s through two processes")
        engine = make_engine(pg_url)
        try:
            log = SqlPredictionLog(engine)
            rows = log.rows(ENDPOINT, limit=0)
            assert len(rows) == 1000 and len({(r.request_id, r.row) for r in rows}) == 1000
            ups = log.rollups(ENDPOINT, T, T + timedelta(minutes=4))
            got = {(u.minute, u.version, u.role): (u.count, round(u.latency_sum_ms, 6), list(u.latency_buckets))
                   for u in ups}
            assert got == {k: (n, round(lat, 6), b) for k, (n, lat, b) in expected.items()}
        finally:
            engine.dispose()
        stats = [requests.get(base + "/healthz", timeout=5).json() for _, base in procs]
        assert sum(s["stored"] for s in stats) == 1000 and all(s["pending"] == 0 for s in stats), stats
    finally:
        stop_process(*(proc for proc, _ in procs))
