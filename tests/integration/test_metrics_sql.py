"""The SQL metrics source on real rollups: predictions written through the real prediction log (SQLite and
PostgreSQL), read back per version and role, as series, as canary-vs-stable tests, by the CLI, and by the
live gates of a real container."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta

import numpy as np
import pytest

from services.metrics.sql import SqlMetricsSource
from services.metrics.stats import histogram_quantile, two_proportion_ztest
from services.predictions import LATENCY_BUCKETS_MS, PredictionRow, bucket_index
from services.predictions.sql import SqlPredictionLog
from tests.conftest import ENDPOINT, make_container

LIVE_POLICY = {"defaults": {"require_approval": [], "gates": {"live": [
    {"metric": "error_rate", "compare": "stable", "max_increase": 0.02, "alpha": 0.05, "min_samples": 100},
    {"metric": "p95_latency_ms", "max_value": 400, "min_samples": 100},
    {"metric": "minutes_at_weight", "min_value": 15}]}}}


def traffic(start, minutes: int, per_minute: dict[tuple[str, str], tuple[int, float, float]], seed: int = 7):
    """Rows per minute for each (version, role): (count, error probability, mean latency ms); labels 0/1."""
    rng = np.random.default_rng(seed)
    rows, labels = [], {}
    for m in range(minutes):
        for (version, role), (n, p_err, lat) in per_minute.items():
            for i in range(n):
                err = rng.random() < p_err
                pred = int(rng.random() < 0.5)
                rows.append(PredictionRow(
                    request_id=f"{version}-{m}-{i}", row=0, endpoint=ENDPOINT,
                    at=start + timedelta(minutes=m, seconds=int(rng.integers(0, 60))), version=version, role=role,
                    model="m", features={"x": 1.0}, prediction=None if err else pred,
                    latency_ms=float(rng.exponential(lat)), status=500 if err else 200))
                labels[f"{version}-{m}-{i}"] = pred if rng.random() < 0.9 else 1 - pred
    return rows, labels


def expected(rows, version: str):
    mine = [r for r in rows if r.version == version]
    buckets = [0] * len(LATENCY_BUCKETS_MS)
    for r in mine:
        buckets[bucket_index(r.latency_ms)] += 1
    errors = sum(1 for r in mine if not r.ok)
    return len(mine), errors, buckets


@pytest.fixture
def world(registry_template, database_url, tmp_path, clock):
    from tests.conftest import fresh_registry

    c = make_container(fresh_registry(registry_template, tmp_path / "reg"), database_url, tmp_path, clock=clock,
                       policy=LIVE_POLICY)
    c.serving.ensure_endpoint(ENDPOINT, "cls model ü'%_", "1", canary_version="2", canary_weight=20)
    start = clock()
    clock.advance(minutes=30)
    rows, labels = traffic(start, 30, {("1", "stable"): (40, 0.01, 30.0), ("2", "canary"): (10, 0.12, 60.0)})
    log = SqlPredictionLog(c.engine, clock=clock)
    assert log.write(rows).stored == len(rows)
    log.add_labels([(rid, 0, y) for rid, y in labels.items()])  # ground truth, later
    rows = [replace(r, label=labels[r.request_id]) for r in rows]
    yield c, rows, start
    c.engine.dispose()


def test_summary_series_and_tests_match_the_rows(world):
    c, rows, start = world
    src = c.metrics
    assert isinstance(src, SqlMetricsSource)
    end = start + timedelta(minutes=31)
    summary = {(s.version, s.role): s for s in src.summary(ENDPOINT, start, end)}
    assert set(summary) == {("1", "stable"), ("2", "canary")}
    for version, role in summary:
        n, errors, buckets = expected(rows, version)
        s = summary[(version, role)]
        assert (s.requests, s.errors) == (n, errors)
        assert s.error_rate == pytest.approx(errors / n)
        assert s.latency_p95_ms == pytest.approx(histogram_quantile(0.95, LATENCY_BUCKETS_MS, buckets))
        mine = [r for r in rows if r.version == version]
        assert s.labelled == len(mine)
        assert s.accuracy == pytest.approx(sum(r.prediction == r.label for r in mine) / len(mine))
    series = src.series(ENDPOINT, start, end, timedelta(minutes=10))
    assert sum(p.stats.requests for p in series if p.stats.version == "2") == summary[("2", "canary")].requests
    assert len({p.at for p in series}) == 4  # 31 minutes in steps of 10: the last step is partial
    err, lat = src.significance(ENDPOINT, start, end)
    n2, e2, _ = expected(rows, "2")
    n1, e1, _ = expected(rows, "1")
    assert err.p_value == pytest.approx(two_proportion_ztest(e2, n2, e1, n1).p_value)
    assert err.significant and lat.significant and 0 < err.min_detectable_diff < 0.1


def test_a_week_window_reads_rollups_not_rows(world):
    c, rows, start = world
    n = sum(s.requests for s in c.metrics.summary(ENDPOINT, start - timedelta(days=7), start + timedelta(days=1)))
    assert n == len(rows)
    c.metrics.log.purge(start + timedelta(days=1))  # raw rows gone (retention), the rollups stay
    assert c.metrics.log.rows(ENDPOINT) == []
    n = sum(s.requests for s in c.metrics.summary(ENDPOINT, start - timedelta(days=7), start + timedelta(days=1)))
    assert n == len(rows)


def test_live_gates_of_the_container_read_the_sql_source(world):
    c, rows, _ = world
    alice = c.directory.get("alice")
    plan = c.actions.plan(alice, "promote_canary", ENDPOINT)
    live = {g.name.split()[1]: g for g in plan.gates if g.kind == "live"}
    n2, e2, _ = expected(rows, "2")
    assert live["error_rate"].candidate == pytest.approx(e2 / n2) and live["error_rate"].passed is False
    assert "vs stable" in live["error_rate"].detail and "p = " in live["error_rate"].detail
    assert live["minutes_at_weight"].candidate == pytest.approx(30) and live["minutes_at_weight"].passed


def test_cli_metrics_prints_per_version_and_role(world, capsys):
    from services.cli import main

    c, rows, start = world
    code = main(["metrics", "--endpoint", ENDPOINT, "--from", start.isoformat(),
                 "--to", (start + timedelta(minutes=31)).isoformat(), "--json"], container=c)
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    by = {(v["version"], v["role"]): v for v in out["versions"]}
    n2, e2, _ = expected(rows, "2")
    assert by[("2", "canary")]["requests"] == n2 and by[("2", "canary")]["errors"] == e2
    assert {"latency_p50_ms", "latency_p95_ms", "latency_p99_ms", "error_rate", "accuracy"} <= set(by[("1", "stable")])
    assert [t["metric"] for t in out["tests"]] == ["error_rate", "latency"]
    code = main(["metrics", "--endpoint", ENDPOINT, "--from", start.isoformat(),
                 "--to", (start + timedelta(minutes=31)).isoformat()], container=c)
    text = capsys.readouterr().out
    assert code == 0 and "canary" in text and "p95" in text.lower() and "p-value" in text
