"""Benchmark: the gateway's per-request overhead and its single-row throughput with payload logging on.

    python bench/gateway.py [--requests 2000] [--seconds 5] [--concurrency 16]

Setup: a real MLflow SQLite store with ``tests/conftest.py``'s two logistic regressions, the local serving
backend on SQLite with ``screening`` = v1 stable + v2 canary at 20 %. The gateway runs as it does in
production, ``python -m services serve`` in its own process; the payload events go to a sink in a third
process that accepts every event (202).

(a) Latency: ``--requests`` sequential single-row V1 requests over one keep-alive connection (client time,
    so the client's own HTTP work is included). Baseline, same run: the loaded pyfunc model's ``predict`` on
    a one-row frame, in-process. Overhead = gateway - model. Target: p50 overhead <= 3 ms.
(b) Throughput: ``--concurrency`` aiohttp clients sending single-row requests for ``--seconds``, logging on
    (every request makes two CloudEvents). Baseline, same run: the same with ``MLOPS_INGEST_URL=off``.
    Target: >= 300 requests/s with logging on.

A plain script, not a test: always exits 0 and prints TARGET MET / MISSED.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import local_registry  # noqa: E402  (sets up sys.path and MLflow's environment)

ROOT = Path(__file__).resolve().parent.parent
ENDPOINT = "screening"
BODY = json.dumps({"instances": [{"mean radius": 0.7, "mean texture": -0.2}]}).encode()
OVERHEAD_TARGET_MS = 3.0
THROUGHPUT_TARGET = 300.0


def sink_main(port: int) -> None:
    """The ingest stand-in: accept every event, count them (GET / returns the count)."""
    from aiohttp import web

    count = {"events": 0}

    async def post(request):
        await request.read()
        count["events"] += 1
        return web.Response(status=202)

    async def get(request):
        return web.json_response(count)

    app = web.Application()
    app.router.add_post("/", post)
    app.router.add_get("/", get)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def setup(tmp: Path):

    from tests.conftest import MODEL, _log_version, make_container

    client, uri, exp = local_registry(tmp)
    client.create_registered_model(MODEL)
    _log_version(client, exp, MODEL, C=0.1, accuracy=0.90)
    _log_version(client, exp, MODEL, C=1.0, accuracy=0.93)
    db = f"sqlite:///{tmp / 'console.db'}"
    c = make_container(uri, db, tmp)
    c.serving.ensure_endpoint(ENDPOINT, MODEL, "1", canary_version="2", canary_weight=20)
    return c, uri, db


def wait_ready(port: int, path: str, proc, seconds: float = 90) -> None:
    import http.client

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"process exited: {proc.stdout.read().decode()[-2000:]}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", path)
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"not ready on :{port}{path} within {seconds} s")


def start_gateway(tmp: Path, uri: str, db: str, ingest: str) -> tuple[subprocess.Popen, int]:
    from tests.conftest import free_port

    port = free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "MLOPS_DATABASE_URL": db, "MLOPS_DATA_DIR": str(tmp),
           "MLOPS_INGEST_URL": ingest}
    proc = subprocess.Popen([sys.executable, "-m", "services", "serve", "--port", str(port)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    wait_ready(port, "/v2/health/ready", proc)
    wait_ready(port, f"/v2/models/{ENDPOINT}/ready", proc)  # both versions loaded
    return proc, port


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()


def latency(port: int, n: int) -> list[float]:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    out = []
    for i in range(n + 100):
        t0 = time.perf_counter()
        conn.request("POST", f"/v1/models/{ENDPOINT}:predict", body=BODY, headers={"content-type": "application/json"})
        resp = conn.getresponse()
        resp.read()
        took = time.perf_counter() - t0
        if resp.status != 200:
            raise SystemExit(f"gateway answered {resp.status}")
        if i >= 100:  # warm-up excluded
            out.append(took)
    return out


def in_process(uri: str, n: int) -> list[float]:
    import mlflow.pyfunc
    import pandas as pd

    from services.registry.mlflow_registry import MlflowRegistry
    from tests.conftest import MODEL

    model = mlflow.pyfunc.load_model(MlflowRegistry(uri).storage_uri(MODEL, "1"))
    frame = pd.DataFrame({"mean radius": [0.7], "mean texture": [-0.2]})
    out = []
    for i in range(n + 100):
        t0 = time.perf_counter()
        model.predict(frame)
        if i >= 100:
            out.append(time.perf_counter() - t0)
    return out


async def _load(port: int, seconds: float, concurrency: int) -> tuple[int, int]:
    import aiohttp

    url = f"http://127.0.0.1:{port}/v1/models/{ENDPOINT}:predict"
    done = {"ok": 0, "bad": 0}
    stop_at = time.perf_counter() + seconds

    async def worker(session):
        while time.perf_counter() < stop_at:
            async with session.post(url, data=BODY, headers={"content-type": "application/json"}) as r:
                await r.read()
                done["ok" if r.status == 200 else "bad"] += 1

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    return done["ok"], done["bad"]


def throughput(port: int, seconds: float, concurrency: int) -> tuple[float, int]:
    asyncio.run(_load(port, 1.0, concurrency))  # warm-up
    t0 = time.perf_counter()
    ok, bad = asyncio.run(_load(port, seconds, concurrency))
    return ok / (time.perf_counter() - t0), bad


def metric(port: int, name: str) -> float:
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples if s.name == name)


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if q < 100 else max(values)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--requests", type=int, default=2000)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--sink", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.sink:
        return sink_main(args.sink)

    from tests.conftest import free_port

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        _c, uri, db = setup(tmp)
        sink_port = free_port()
        sink = subprocess.Popen([sys.executable, __file__, "--sink", str(sink_port)], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT)
        wait_ready(sink_port, "/", sink, 30)
        try:
            gw, port = start_gateway(tmp, uri, db, f"http://127.0.0.1:{sink_port}/")
            try:
                lat = latency(port, args.requests)
                throughput(port, 3, args.concurrency)  # warm-up, discarded: the workers scale up to the load
                tput_on, bad_on = throughput(port, args.seconds, args.concurrency)
                dropped = metric(port, "mlops_gateway_logger_dropped_total")
                sent = metric(port, "mlops_gateway_logger_sent_total")
            finally:
                stop(gw)
            gw, port = start_gateway(tmp, uri, db, "off")
            try:
                throughput(port, 3, args.concurrency)  # the same warm-up
                tput_off, bad_off = throughput(port, args.seconds, args.concurrency)
            finally:
                stop(gw)
        finally:
            stop(sink)
        base = in_process(uri, args.requests)

    g50, g99 = pct(lat, 50) * 1000, pct(lat, 99) * 1000
    b50, b99 = pct(base, 50) * 1000, pct(base, 99) * 1000
    print(f"\n## Gateway (python -m services serve, {os.cpu_count()} cores)\n")
    print("| measurement | gateway | baseline | ratio | target |")
    print("|---|---:|---:|---:|---|")
    print(f"| single-row V1 request, p50 (n={args.requests}) | {g50:.2f} ms | {b50:.2f} ms (pyfunc predict "
          f"in-process) | {g50 / b50:.1f}× | overhead {g50 - b50:.2f} ms ≤ {OVERHEAD_TARGET_MS:g} ms — "
          f"{'met' if g50 - b50 <= OVERHEAD_TARGET_MS else 'MISSED'} |")
    print(f"| single-row V1 request, p99 | {g99:.2f} ms | {b99:.2f} ms | {g99 / b99:.1f}× | overhead "
          f"{g99 - b99:.2f} ms |")
    print(f"| throughput, logging on ({args.concurrency} clients, {args.seconds:g} s) | {tput_on:,.0f} req/s | "
          f"{tput_off:,.0f} req/s (logging off) | {tput_on / tput_off:.2f}× | ≥ {THROUGHPUT_TARGET:g} req/s — "
          f"{'met' if tput_on >= THROUGHPUT_TARGET else 'MISSED'} |")
    print(f"\npayload events: {sent:,.0f} delivered, {dropped:,.0f} dropped; non-200 answers: {bad_on + bad_off}")
    print("TARGET MET" if g50 - b50 <= OVERHEAD_TARGET_MS and tput_on >= THROUGHPUT_TARGET else "TARGET MISSED")


if __name__ == "__main__":
    main()
