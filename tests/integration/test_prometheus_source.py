"""The Prometheus metrics source against a real Prometheus (Debian's ``prometheus``) scraping the real gateway
every second: ``python -m services serve`` and ``python -m services ingest`` as processes on free ports over
the test registry and console database. Known traffic goes through the gateway; once Prometheus' scrape and
the prediction log both show it (bounded polling), the ``prometheus`` adapter must say what the ``sql`` adapter
says. Outside CI the test skips with a reason when ``prometheus`` is not installed; under CI it fails."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
import requests

from services.metrics.prometheus import PrometheusMetricsSource
from tests.conftest import ENDPOINT, MODEL, ROOT, free_port, fresh_registry, make_container, wait_for
from tests.processes import stop_process

N = 120  # requests sent
WINDOW = timedelta(minutes=10)
# what a KServe cluster would configure (resets survive): increase(), which misses a new series' first scrape
INCREASE = 'sum by (version, role) (increase({m}{{endpoint="$endpoint"}}[$window]))'


def _binary() -> str:
    path = shutil.which("prometheus")
    if not path:
        why = "prometheus is not installed (deploy/ensure-system.sh installs Debian's package)"
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    return path


def _proc(args, env, log_path):
    log = open(log_path, "wb")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT), log


@pytest.fixture
def stack(registry_template, tmp_path):
    binary = _binary()
    uri = fresh_registry(registry_template, tmp_path / "reg")
    db = f"sqlite:///{tmp_path / 'console.db'}"
    c = make_container(uri, db, tmp_path)
    c.serving.ensure_endpoint(ENDPOINT, MODEL, "1", canary_version="2", canary_weight=30)
    gw_port, ingest_port, prom_port = free_port(), free_port(), free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "MLOPS_DATABASE_URL": db, "MLOPS_DATA_DIR": str(tmp_path),
           "MLOPS_INGEST_URL": f"http://127.0.0.1:{ingest_port}/", "MLOPS_POLICY_FILE": str(tmp_path / "none.yaml"),
           "MLOPS_GATEWAY_REPLICAS": "inline"}  # worker processes are tested in test_gateway_replicas.py
    env.pop("MLOPS_SERVING_BACKEND", None)
    (tmp_path / "none.yaml").write_text("defaults: {}\n")
    (tmp_path / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        f"  - job_name: gateway\n    static_configs: [{{targets: ['127.0.0.1:{gw_port}']}}]\n")
    procs = [
        _proc([sys.executable, "-m", "services", "ingest", "--port", str(ingest_port)], env, tmp_path / "ingest.log"),
        _proc([sys.executable, "-m", "services", "serve", "--port", str(gw_port)], env, tmp_path / "gateway.log"),
        _proc([binary, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
               f"--web.listen-address=127.0.0.1:{prom_port}"], env, tmp_path / "prometheus.log"),
    ]
    prom = f"http://127.0.0.1:{prom_port}"
    try:
        wait_for("the ingest", lambda: requests.get(f"http://127.0.0.1:{ingest_port}/healthz", timeout=2).ok)
        wait_for("the gateway", lambda: requests.get(f"http://127.0.0.1:{gw_port}/metrics", timeout=2).ok)
        wait_for("Prometheus", lambda: requests.get(f"{prom}/-/ready", timeout=2).ok)
        yield c, f"http://127.0.0.1:{gw_port}", prom
    finally:
        stop_process(*(p for p, _log in procs), timeout=10)
        for _p, log in procs:
            log.close()
        c.engine.dispose()


def _send(gateway: str, first: int, last: int) -> None:
    for i in range(first, last):
        body = {"instances": [[0.1 * (i % 7), -0.2]]}
        r = requests.post(f"{gateway}/v1/models/{ENDPOINT}:predict", json=body, timeout=30)
        assert r.status_code == 200, r.text[:300]


def _scraped(prom: str) -> bool:
    """Prometheus holds the gateway's request counter for the endpoint (it has scraped it at least once)."""
    r = requests.get(f"{prom}/api/v1/query", params={"query": f'mlops_gateway_requests_total{{endpoint="{ENDPOINT}"}}'},
                     timeout=5)
    return bool(r.ok and r.json()["data"]["result"])


def test_prometheus_source_says_what_the_sql_source_says(stack):
    c, gateway, prom = stack
    start = datetime.now(UTC).replace(second=0, microsecond=0)
    # a few first, then the rest once Prometheus has scraped the counter: increase() (below) cannot see what a
    # series counted before its first scrape, and a fast gateway could answer all N before it
    _send(gateway, 0, 30)
    wait_for("Prometheus to scrape the gateway's request counter", lambda: _scraped(prom), timeout=60, every=0.5)
    _send(gateway, 30, N)
    sql = c.metrics

    def sql_total():
        n = sum(s.requests for s in sql.summary(ENDPOINT, start, datetime.now(UTC) + timedelta(minutes=1)))
        return n if n == N else None

    wait_for(f"the prediction log to hold {N} requests", sql_total)

    def source(**templates):
        return PrometheusMetricsSource(prom, timeout=5, **{"requests_query": c.settings.promql_requests,
                                                           "errors_query": c.settings.promql_errors,
                                                           "buckets_query": c.settings.promql_latency_buckets,
                                                           **templates})

    exact = source()  # the default templates: the counters at the window's end minus at its start

    def scraped():
        now = datetime.now(UTC)
        n = sum(s.requests for s in exact.summary(ENDPOINT, now - WINDOW, now))
        return n if n == N else None

    wait_for(f"Prometheus to have scraped {N} requests", scraped, timeout=90, every=0.5)
    end = datetime.now(UTC) + timedelta(seconds=1)
    by_sql = {(s.version, s.role): s for s in sql.summary(ENDPOINT, start, end + timedelta(minutes=1))}
    by_prom = {(s.version, s.role): s for s in exact.summary(ENDPOINT, end - WINDOW, end)}
    assert set(by_prom) == set(by_sql) == {("1", "stable"), ("2", "canary")}, (by_prom, by_sql)
    for key, s in by_sql.items():
        p = by_prom[key]
        assert (p.requests, p.errors) == (s.requests, s.errors), key
        # latency: the gateway's histogram (seconds buckets) vs the log's (ms buckets): both interpolate
        # within their own buckets, so they agree to the coarser bucket's width, not exactly
        assert p.latency_p50_ms is not None and s.latency_p50_ms is not None
        assert abs(p.latency_p95_ms - s.latency_p95_ms) <= max(p.latency_p95_ms, s.latency_p95_ms), key

    # increase() templates fit too; they miss what a series counted before its first scrape (documented)
    inc = source(requests_query=INCREASE.format(m="mlops_gateway_requests_total"),
                 errors_query=INCREASE.format(m="mlops_gateway_errors_total"))
    approx = {(s.version, s.role): s for s in inc.summary(ENDPOINT, end - WINDOW, end)}
    # ... and extrapolate: a series that starts inside the window is extended back towards where the counter
    # would have been zero (at most its value at the first scrape, 30 here), so the sum lands in (0, N + 30 + slack]
    assert 0 < sum(a.requests for a in approx.values()) <= (N + 30) * 1.5

    # series per minute step; the canary-vs-stable tests on the same numbers
    series = exact.series(ENDPOINT, end - timedelta(minutes=3), end, timedelta(minutes=1))
    assert series and all(p.step_seconds == 60 for p in series)
    tests = exact.significance(ENDPOINT, end - WINDOW, end)
    assert [t.metric for t in tests] == ["error_rate", "latency"] and tests[0].p_value == 1.0  # no errors anywhere


def test_an_unreachable_or_refusing_prometheus_is_named(stack):
    from services.errors import Invalid, Unavailable

    c, _, prom = stack
    now = datetime.now(UTC)
    down = PrometheusMetricsSource(f"http://127.0.0.1:{free_port()}", requests_query="up", errors_query="up",
                                   buckets_query="up", timeout=2)
    with pytest.raises(Unavailable, match="not reachable"):
        down.summary(ENDPOINT, now - WINDOW, now)
    bad = PrometheusMetricsSource(prom, requests_query="sum by (", errors_query="up", buckets_query="up", timeout=5)
    with pytest.raises(Invalid, match="refused the query"):
        bad.summary(ENDPOINT, now - WINDOW, now)
