"""Benchmark: the prediction ingest's write rate, and the Monitoring page's data for 7 days over 10M predictions.

    python bench/monitoring.py [--pairs 4000] [--http-pairs 3000] [--raw-rows 200000]

(The gateway's own overhead and throughput are bench/gateway.py's.) Everything runs on a fresh SQLite console
database in a temporary folder (WAL, the same engine settings as production's embedded default).

(a) Ingest rate, rows/s. KServe-logger-shaped CloudEvent pairs (V1 bodies of the demo's 31 cancer-screening
    features, ``ce-modelversion`` / ``ce-role`` / ``ce-model`` as the gateway sends them), requests of 1 row
    and of 10 rows, times at a steady 5,000 rows/s:
    * in-process, per pair: ``Ingest.half_from_http`` → pairing → ``Ingest.write_pair`` (one transaction per
      pair: what ``POST /`` does for each completed pair);
    * in-process, batched: the same, pairs written 500 at a time with ``Ingest.write_pairs`` (what
      ``seed-history`` does);
    * over HTTP: ``python -m services ingest`` (the real app on uvicorn, its own process), aiohttp clients
      with keep-alive posting the same events (request, then response, of each pair): one client
      (sequential) and 16 concurrent clients (how a fleet of loggers sends; the ingest commits pairs that
      complete together in one transaction);
    * baseline, same run: ``SqlPredictionLog.write`` of ready-made rows, 5,000 per call (the write path's floor:
      no parsing, no pairing, one transaction per 5,000 rows);
    * ceiling, same run: a no-op Starlette app (reads the body, answers a small JSON) on the same uvicorn,
      posted the same events by the same clients: what the HTTP stack alone allows on this machine.
    Target: >= 5,000 rows/s (16 clients).
(b) The Monitoring page's data (``dashboard/monitoring_view.page_data``, what its cached ``_load`` returns:
    ``metrics.aggregate_series`` at the page's step, the window's per-version stats and canary-vs-stable tests
    from the same steps; also timed as the two reads ``window_report`` + ``metrics.series``) for a 7-day window of one
    endpoint that logged 10M predictions (stable v2 and canary v4 at 20 %, every minute), read through
    ``SqlMetricsSource`` as the page does. The rollups of those 10M predictions are bulk-inserted directly into
    ``prediction_rollups`` (what the page reads), beside three other endpoints' as large. Baseline, same run:
    a plain scan of raw rows (``predictions``) computing the same per-version counts, errors and latency
    quantiles, measured on ``--raw-rows`` raw rows of realistic width over the same window and extrapolated
    linearly to 10M (10M raw rows would not fit this run's time; the extrapolation favours the scan, which
    then reads from the page cache). Target: < 1.5 s.

A plain script, not a test: always exits 0 and prints TARGET MET / MISSED.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402, F401  (sets up sys.path and MLflow's environment)

ROOT = Path(__file__).resolve().parent.parent
EP, MODEL = "cancer-screening", "breast-cancer-classifier"
INGEST_TARGET = 5000.0
PAGE_TARGET_S = 1.5
TOTAL = 10_000_000
NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)

from _monitoring_setup import container, feature_rows  # noqa: E402 - a fresh console per measurement


def make_events(rows: list[dict], pairs: int, per_request: int, tag: str) -> list[tuple[dict, bytes]]:
    """``pairs`` × (request, response) CloudEvents in HTTP binary mode, as the gateway's logger builds them."""
    from services.gateway.logger import inference_event

    rng = random.Random(tag)
    start = NOW - timedelta(hours=1)
    out = []
    for i in range(pairs):
        at = start + timedelta(seconds=i * per_request / INGEST_TARGET)
        instances = [rows[rng.randrange(len(rows))] for _ in range(per_request)]
        role, version = ("canary", "4") if rng.random() < 0.2 else ("stable", "2")
        common = {"request_id": f"{tag}-{i}", "source": "http://localhost:8080/", "endpoint": EP, "role": role,
                  "version": version, "model": MODEL}
        for kind, when, body, status in (
                ("request", at, {"instances": instances}, None),
                ("response", at + timedelta(milliseconds=rng.uniform(3, 12)),
                 {"predictions": [rng.randint(0, 1) for _ in instances]}, 200)):
            msg = inference_event(kind, at=when, body=json.dumps(body).encode(), status=status, **common)
            out.append((dict(msg.headers), msg.body))
    return out


def ingest_in_process(tmp: Path, name: str, events, *, batch: int) -> float:
    """Rows/s through parsing, pairing and writing; ``batch`` pairs per transaction (1: per pair)."""
    from services.ingest.app import Attribution, Ingest

    c, _ = container(tmp, name)
    ingest = Ingest(c.predictions, Attribution(c.history), backend="local")
    t0 = time.perf_counter()
    pairs = []
    for headers, body in events:
        pair = ingest.pending.offer(ingest.half_from_http(headers, body))
        if pair is not None:
            pairs.append(pair)
            if len(pairs) >= batch:
                ingest.write_pairs(pairs)
                pairs = []
    if pairs:
        ingest.write_pairs(pairs)
    seconds = time.perf_counter() - t0
    c.engine.dispose()
    return ingest.stored / seconds


def write_floor(tmp: Path, name: str, events) -> float:
    """Rows/s of ``SqlPredictionLog.write`` alone, the same rows ready-made, 5,000 per call."""
    from services.ingest.app import Attribution, Ingest

    c, _ = container(tmp, name)
    ingest = Ingest(c.predictions, Attribution(c.history), backend="local")
    rows = []
    for headers, body in events:
        pair = ingest.pending.offer(ingest.half_from_http(headers, body))
        if pair is not None:
            rows += ingest.rows_of(*pair)
    t0 = time.perf_counter()
    for i in range(0, len(rows), 5000):
        c.predictions.write(rows[i:i + 5000])
    seconds = time.perf_counter() - t0
    c.engine.dispose()
    return len(rows) / seconds


NOOP_APP = '''
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

async def noop(request):
    await request.body()
    return JSONResponse({"id": "x", "status": "stored", "stored": 1, "duplicates": 0})

app = Starlette(routes=[Route("/", noop, methods=["POST"]), Route("/healthz", noop, methods=["GET"])])
'''


def ingest_over_http(tmp: Path, name: str, events, per_request: int, concurrency: int = 16, *,
                     noop: bool = False) -> tuple[float, int]:
    """Rows/s through ``python -m services ingest`` on uvicorn (``noop``: the no-op app on the same uvicorn);
    returns (rows/s, non-2xx answers)."""
    from tests.conftest import free_port

    _, env = container(tmp, name)
    port = free_port()
    full_env = {**os.environ, **env}
    if noop:
        (tmp / name / "noop_app.py").write_text(NOOP_APP, encoding="utf-8")
        cmd = ["-m", "uvicorn", "--app-dir", str(tmp / name), "noop_app:app", "--log-level", "warning",
               "--no-access-log", "--port", str(port)]
    else:
        cmd = ["-m", "services", "ingest", "--port", str(port)]
    proc = subprocess.Popen([sys.executable, *cmd], cwd=ROOT, env=full_env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        import urllib.request

        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).read()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the ingest did not start: " + proc.stderr.read().decode()[-2000:]) from None
                time.sleep(0.1)  # polling a bounded start
        pairs = [events[i:i + 2] for i in range(0, len(events), 2)]
        seconds, bad = asyncio.run(_post_all(f"http://127.0.0.1:{port}/", pairs, concurrency))
        return len(pairs) * per_request / seconds, bad
    finally:
        proc.terminate()
        proc.wait(timeout=20)


async def _post_all(url: str, pairs, concurrency: int) -> tuple[float, int]:
    import aiohttp

    queue: asyncio.Queue = asyncio.Queue()
    for p in pairs:
        queue.put_nowait(p)
    bad = 0

    async def worker(session):
        nonlocal bad
        while not queue.empty():
            for headers, body in queue.get_nowait():
                async with session.post(url, data=body, headers=headers) as resp:
                    await resp.read()
                    bad += resp.status >= 300

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        return time.perf_counter() - t0, bad


# -- (b) the Monitoring page over 10M predictions --------------------------------------------------------------
def bulk_rollups(db: Path, endpoints: list[str], total: int, start: datetime) -> int:
    """Per-minute rollups of ``total`` predictions per endpoint over 7 days (stable v2 80 %, canary v4 20 %)."""
    from services.clock import iso
    from services.predictions import LATENCY_BUCKETS_MS
    from services.store.db import LATENCY_BUCKET_COLUMNS

    minutes = 7 * 24 * 60
    per_minute = total / minutes
    rng = random.Random(7)
    cols = ["minute", "endpoint", "version", "role", "count", "errors", "latency_sum_ms", *LATENCY_BUCKET_COLUMNS,
            "labelled", "correct", "abs_error_sum", "sq_error_sum"]
    shape = [0.02, 0.05, 0.25, 0.35, 0.2, 0.08, 0.03, 0.015, 0.005, 0, 0, 0, 0]
    assert len(shape) == len(LATENCY_BUCKETS_MS)
    values = []
    for ep in endpoints:
        for m in range(minutes):
            minute = iso(start + timedelta(minutes=m))
            for version, role, share in (("2", "stable", 0.8), ("4", "canary", 0.2)):
                n = max(1, round(per_minute * share * rng.uniform(0.8, 1.2)))
                buckets = [round(n * s) for s in shape]
                buckets[3] += n - sum(buckets)
                labelled = int(n * 0.8)
                values.append((minute, ep, version, role, n, rng.randint(0, max(1, n // 200)), n * 9.0, *buckets,
                               labelled, int(labelled * 0.96), 0.0, 0.0))
    conn = sqlite3.connect(db)
    with conn:
        conn.executemany(f"INSERT INTO prediction_rollups ({', '.join(cols)}) VALUES "
                         f"({', '.join('?' * len(cols))})", values)
    conn.close()
    return len(values)


def bulk_raw(db: Path, rows: list[dict], n: int, start: datetime) -> None:
    from services.clock import iso

    rng = random.Random(3)
    step = 7 * 24 * 3600 / n
    features = [json.dumps(r, separators=(",", ":")) for r in rows]

    def gen():
        for i in range(n):
            canary = rng.random() < 0.2
            yield (f"raw-{i}", 0, EP, iso(start + timedelta(seconds=i * step)), MODEL, "4" if canary else "2",
                   "canary" if canary else "stable", features[i % len(features)], str(rng.randint(0, 1)),
                   rng.lognormvariate(2.0, 0.5), 200 if rng.random() > 0.003 else 503, "", None, None)

    conn = sqlite3.connect(db)
    with conn:
        conn.executemany("INSERT INTO predictions (request_id, row, endpoint, at, model, version, role, features, "
                         "prediction, latency_ms, status, error, label, labelled_at) VALUES "
                         "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", gen())
    conn.close()


def page_data(src, start: datetime, end: datetime) -> float:
    """What the Monitoring page's ``_load`` reads (``monitoring_view.page_data``: one rollup read), in seconds."""
    import logging

    import streamlit.runtime.caching.cache_data_api as cache_api

    logging.getLogger(cache_api.__name__).setLevel(logging.ERROR)  # "no runtime found": outside a page, as meant
    from dashboard.monitoring_view import page_data as load

    t0 = time.perf_counter()
    rep = load(src, EP, start, end)
    seconds = time.perf_counter() - t0
    assert rep["versions"] and len(rep["series"]), "the page would show nothing"
    return seconds


def two_reads(src, start: datetime, end: datetime) -> float:
    """The page's data as two reads (``window_report`` + ``series``: before the page summed the steps)."""
    from services.metrics.report import window_report

    t0 = time.perf_counter()
    window_report(src, EP, start, end)
    src.series(EP, start, end)
    return time.perf_counter() - t0


def raw_scan(db: Path, start: datetime, end: datetime) -> tuple[float, int]:
    """A plain scan of the window's raw rows: per version and role the count, errors and latency quantiles."""
    from services.clock import iso

    conn = sqlite3.connect(db)
    t0 = time.perf_counter()
    per: dict[tuple, list] = {}
    errors: dict[tuple, int] = {}
    n = 0
    for version, role, status, latency in conn.execute(
            "SELECT version, role, status, latency_ms FROM predictions WHERE endpoint = ? AND at >= ? AND at < ?",
            (EP, iso(start), iso(end))):
        per.setdefault((version, role), []).append(latency)
        errors[(version, role)] = errors.get((version, role), 0) + (status >= 400)
        n += 1
    for values in per.values():
        statistics.quantiles(values, n=100)
    seconds = time.perf_counter() - t0
    conn.close()
    return seconds, n


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--pairs", type=int, default=4000, help="pairs per in-process measurement")
    p.add_argument("--http-pairs", type=int, default=3000, help="pairs per HTTP measurement")
    p.add_argument("--raw-rows", type=int, default=200_000, help="raw rows for the scan baseline")
    p.add_argument("--ingest-only", action="store_true", help="measure the ingest only, not the page's data")
    args = p.parse_args()
    rows = feature_rows()
    table = []
    with tempfile.TemporaryDirectory(prefix="bench-monitoring-") as tmpdir:
        tmp = Path(tmpdir)
        for per_request in (1, 10):
            n = args.pairs if per_request == 1 else args.pairs // 5
            events = make_events(rows, n, per_request, f"r{per_request}")
            floor = write_floor(tmp, f"f{per_request}", events)
            per_pair = ingest_in_process(tmp, f"pp{per_request}", events, batch=1)
            batched = ingest_in_process(tmp, f"b{per_request}", events, batch=500)
            http_n = args.http_pairs if per_request == 1 else args.http_pairs // 5
            http_events = make_events(rows, http_n, per_request, f"h{per_request}")
            seq, bad_seq = ingest_over_http(tmp, f"s{per_request}", http_events, per_request, concurrency=1)
            http, bad = ingest_over_http(tmp, f"h{per_request}", http_events, per_request, concurrency=16)
            ceiling, _ = ingest_over_http(tmp, f"n{per_request}", http_events, per_request, concurrency=16,
                                          noop=True)
            table.append((per_request, n, floor, per_pair, batched, seq, http, bad + bad_seq, ceiling))
            print(f"  ingest, {per_request}-row requests: floor {floor:,.0f}, per pair {per_pair:,.0f}, "
                  f"batched {batched:,.0f}, HTTP 1 client {seq:,.0f}, 16 clients {http:,.0f} (no-op app "
                  f"{ceiling:,.0f}) rows/s", file=sys.stderr)
        if args.ingest_only:
            _ingest_table(table)
            met = min(r[6] for r in table) >= INGEST_TARGET
            print("TARGET MET" if met else "TARGET MISSED")
            return

        c, _ = container(tmp, "page")
        c.predictions  # noqa: B018 - creates the console database's tables
        db = Path(c.settings.database_url.split("///", 1)[1])
        start = NOW - timedelta(days=7)
        t0 = time.perf_counter()
        rollups = bulk_rollups(db, [EP, "fraud", "churn", "ranking"], TOTAL, start)
        made = time.perf_counter() - t0
        src = c.metrics
        cold = page_data(src, start, NOW)
        warm = statistics.median(page_data(src, start, NOW) for _ in range(5))
        twice = statistics.median(two_reads(src, start, NOW) for _ in range(5))
        bulk_raw(db, rows, args.raw_rows, start)
        scan_s, scanned = raw_scan(db, start, NOW)
        scan_10m = scan_s * TOTAL / scanned
        c.engine.dispose()

    _ingest_table(table)
    print(f"\n| Monitoring page data, 7 days, {TOTAL:,} predictions | time | baseline: raw scan | ratio | target |")
    print("|---|---:|---:|---:|---|")
    print(f"| `monitoring_view.page_data` (SqlMetricsSource), first read | {cold:.3f} s | {scan_10m:.1f} s "
          f"(extrapolated from {scanned:,} raw rows in {scan_s:.2f} s) | {scan_10m / cold:,.0f}× faster | "
          f"< {PAGE_TARGET_S} s |")
    print(f"| same, warm (median of 5) | {warm:.3f} s | | {scan_10m / warm:,.0f}× faster | |")
    print(f"| `window_report` + `series` (two reads), median of 5 | {twice:.3f} s | | {scan_10m / twice:,.0f}× "
          "faster | |")
    print(f"\n{rollups:,} rollup rows bulk-inserted in {made:.1f} s (4 endpoints × 7 days × 1,440 minutes × 2 "
          "versions); the page's endpoint reads a quarter of them.")
    met = min(r[6] for r in table) >= INGEST_TARGET and cold < PAGE_TARGET_S
    print("TARGET MET" if met else "TARGET MISSED")


def _ingest_table(table) -> None:
    print(f"\n## Monitoring data path ({os.cpu_count()} cores, SQLite WAL)\n")
    print("| ingest (rows/s) | rows | write floor (`SqlPredictionLog.write`, 5,000/call) | in-process, per pair "
          "| in-process, 500 pairs/transaction | HTTP (uvicorn), 1 client | HTTP (uvicorn), 16 clients "
          "| no-op app, same uvicorn, 16 clients | target |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for per_request, n, floor, per_pair, batched, seq, http, bad, ceiling in table:
        print(f"| {per_request}-row requests | {n * per_request:,} | {floor:,.0f} | {per_pair:,.0f} "
              f"({per_pair / floor:.2f}× floor) | {batched:,.0f} ({batched / floor:.2f}×) | {seq:,.0f} "
              f"({seq / floor:.2f}×) | {http:,.0f} ({http / floor:.2f}×, {http / ceiling:.2f}× no-op)"
              f"{f', {bad} non-2xx' if bad else ''} | {ceiling:,.0f} | >= {INGEST_TARGET:,.0f} (16 clients) |")


if __name__ == "__main__":
    main()
