"""Benchmark: the gateway's throughput and p95 latency at 1, 2 and 4 worker processes under the same load.

    python bench/scale.py [--clients 8] [--requests 160] [--rows 200] [--trees 600] [--workers 1,2,4]

Setup: a real MLflow SQLite store with one version of a random forest (``--trees`` trees, skops-saved, so the
model costs CPU per row) on two features, the local serving backend on SQLite with ``scale`` serving it. For
every worker count N the endpoint is set to ``min = max = N`` and the gateway runs as in production,
``python -m services serve`` (``MLOPS_GATEWAY_REPLICAS=process``, payload logging off); once its N workers are up
and warm, ``--clients`` closed-loop clients (threads, keep-alive) send ``--requests`` V1 requests of ``--rows``
rows in all. Baseline, same run: N = 1. Reference row: the same load on ``MLOPS_GATEWAY_REPLICAS=inline``
(the model in the gateway's process, batches predicted on its thread pool).

Throughput is answered requests per second over the whole load; p95 is client time per request. A plain script,
not a test: always exits 0. The machine's core count is printed: on 2 cores, past 2 workers there is nothing
left to scale onto (the gateway's own event loop and the clients share the same cores).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import local_registry  # noqa: E402  (sets up sys.path and MLflow's environment)

ROOT = Path(__file__).resolve().parent.parent
ENDPOINT = "scale"
MODEL = "bench-forest"


def setup(tmp: Path, trees: int):
    import mlflow
    import numpy as np
    import pandas as pd
    from mlflow.models import infer_signature
    from sklearn.ensemble import RandomForestClassifier

    from tests.conftest import make_container

    client, uri, exp = local_registry(tmp)
    rng = np.random.default_rng(0)
    x = pd.DataFrame(rng.normal(size=(4000, 2)), columns=["mean radius", "mean texture"])
    y = ((x["mean radius"] * x["mean texture"] + rng.normal(scale=0.3, size=len(x))) > 0).astype(int)
    forest = RandomForestClassifier(n_estimators=trees, max_depth=14, random_state=0, n_jobs=1).fit(x, y)
    with mlflow.start_run(experiment_id=exp) as run:
        info = mlflow.sklearn.log_model(forest, name="model", signature=infer_signature(x, forest.predict(x)),
                                        serialization_format="skops", skops_trusted_types=["sklearn.tree._tree.Tree"],
                                        pip_requirements=["scikit-learn"])
    client.create_registered_model(MODEL)
    client.create_model_version(MODEL, info.model_uri, run_id=run.info.run_id)
    db = f"sqlite:///{tmp / 'console.db'}"
    c = make_container(uri, db, tmp)
    c.serving.ensure_endpoint(ENDPOINT, MODEL, "1")
    return c, uri, db


def get(port: int, path: str):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def start(tmp: Path, uri: str, db: str, mode: str, workers: int, rows: int):
    from tests.conftest import free_port

    port = free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "MLOPS_DATABASE_URL": db, "MLOPS_DATA_DIR": str(tmp),
           "MLOPS_INGEST_URL": "off", "MLOPS_GATEWAY_REPLICAS": mode, "MLOPS_GATEWAY_MAX_BATCH": str(max(rows, 1000)),
           "MLOPS_GATEWAY_SCALE_DOWN_SECONDS": "600"}
    log = open(tmp / f"serve-{port}.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "services", "serve", "--port", str(port), ], cwd=ROOT, env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 180
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"serve exited: {(tmp / f'serve-{port}.log').read_text()[-2000:]}")
        try:
            if get(port, f"/v2/models/{ENDPOINT}/ready")[0] == 200:
                if mode == "inline":
                    break
                pools = json.loads(get(port, "/admin/replicas")[1])["pools"]
                if len(pools.get(f"{ENDPOINT}/1", {}).get("pids", [])) == workers:
                    break
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"{workers} workers not up within 180 s")
        time.sleep(0.2)
    return proc, port, log


def stop(proc, log) -> None:
    from tests.processes import stop_process

    stop_process(proc, timeout=30)
    log.close()


def drive(port: int, clients: int, total: int, body: bytes) -> tuple[float, list[float], int]:
    """``total`` requests from ``clients`` closed-loop clients: (seconds, latencies, non-200 answers)."""
    lock = threading.Lock()
    left = [total]
    lat: list[float] = []
    bad = [0]

    def client():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        while True:
            with lock:
                if left[0] == 0:
                    break
                left[0] -= 1
            t0 = time.perf_counter()
            conn.request("POST", f"/v1/models/{ENDPOINT}:predict", body=body,
                         headers={"content-type": "application/json"})
            resp = conn.getresponse()
            resp.read()
            took = time.perf_counter() - t0
            with lock:
                lat.append(took)
                bad[0] += resp.status != 200
        conn.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - t0, lat, bad[0]


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a live process (Linux /proc)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def worker_pids(port: int) -> list[int]:
    pools = json.loads(get(port, "/admin/replicas")[1])["pools"]
    return pools.get(f"{ENDPOINT}/1", {}).get("pids", [])


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q / 100 * (len(s) - 1))))]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--requests", type=int, default=160)
    p.add_argument("--rows", type=int, default=200)
    p.add_argument("--trees", type=int, default=600)
    p.add_argument("--workers", default="1,2,4")
    args = p.parse_args()
    counts = [int(n) for n in args.workers.split(",")]

    import numpy as np

    from services.serving import Change, Scaling

    rng = np.random.default_rng(1)
    body = json.dumps({"instances": [{"mean radius": float(a), "mean texture": float(b)}
                                     for a, b in rng.normal(size=(args.rows, 2))]}).encode()
    results = []
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        c, uri, db = setup(tmp, args.trees)
        for mode, n in [("process", n) for n in counts] + [("inline", 0)]:
            if mode == "process":
                ep = c.serving.get_endpoint(ENDPOINT)
                c.serving.apply(ENDPOINT, Change("set_scaling", ep.resource_version,
                                                 scaling=Scaling(min_replicas=n, max_replicas=n)), actor="bench")
            proc, port, log = start(tmp, uri, db, mode, n, args.rows)
            try:
                drive(port, args.clients, max(args.clients * 2, 16), body)  # warm-up: every worker answers once
                workers = worker_pids(port) if mode == "process" else []
                cpu0 = (cpu_seconds(proc.pid), sum(cpu_seconds(w) for w in workers))
                seconds, lat, bad = drive(port, args.clients, args.requests, body)
                cpu = [(cpu_seconds(proc.pid) - cpu0[0]) / args.requests * 1000,
                       (sum(cpu_seconds(w) for w in workers) - cpu0[1]) / args.requests * 1000]
            finally:
                stop(proc, log)
            results.append((mode, n, args.requests / seconds, pct(lat, 50) * 1000, pct(lat, 95) * 1000, bad, cpu))
            print(f"  {mode} {n or ''}: {args.requests / seconds:.1f} req/s, p95 {pct(lat, 95) * 1000:.0f} ms",
                  file=sys.stderr)

    base = next(r for r in results if r[0] == "process" and r[1] == counts[0])
    print(f"\n## Gateway workers (python -m services serve, {os.cpu_count()} cores)\n")
    print(f"Load: {args.clients} closed-loop clients, {args.requests} V1 requests of {args.rows} rows each, a "
          f"{args.trees}-tree random forest; payload logging off. The machine's 1-minute load average: "
          f"{load_before[0]:.1f} before, {os.getloadavg()[0]:.1f} after (other work shares these cores).\n")
    print(f"| workers (min = max) | requests/s | rows/s | p50 | p95 | throughput vs {counts[0]} worker | "
          f"p95 vs {counts[0]} worker | CPU per request: gateway / workers | cores busy serving | non-200 |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for mode, n, rps, p50, p95, bad, cpu in results:
        label = str(n) if mode == "process" else "inline (in the gateway's process)"
        print(f"| {label} | {rps:.1f} | {rps * args.rows:,.0f} | {p50:.0f} ms | {p95:.0f} ms | {rps / base[2]:.2f}× | "
              f"{p95 / base[4]:.2f}× | {cpu[0]:.0f} / {cpu[1]:.0f} ms | {sum(cpu) * rps / 1000:.2f} | {bad} |")
    print("\n*cores busy serving*: the gateway's and its workers' CPU time over the load's wall time — what this run "
          "could get of the machine's cores (the clients run in this script's process).")


if __name__ == "__main__":
    main()
