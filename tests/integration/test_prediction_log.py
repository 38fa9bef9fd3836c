"""The prediction log's SQL adapter on SQLite and PostgreSQL: each (request_id, row) stored exactly once,
rollups exact (also under concurrent writers), labels late, twice, corrected and unknown, row windows, and
retention that keeps the rollups. The in-memory fake (tests/fakes.py) is checked against the adapter."""

from __future__ import annotations

import random
import threading
from datetime import UTC, datetime, timedelta

import pytest

from services.errors import Invalid, Unavailable
from services.predictions import LATENCY_BUCKETS_MS, PredictionRow, Rollup
from services.predictions.sql import SqlPredictionLog
from services.store.db import make_engine, writing
from tests.fakes import FakeClock, FakePredictionLog

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
EP = "ns/cancer"


def row(rid: str, n: int, *, at: datetime = T0, version: str | None = "2", role: str = "stable", pred=1,
        latency: float | None = 10.0, status: int = 200, endpoint: str = EP, **kw) -> PredictionRow:
    return PredictionRow(request_id=rid, row=n, endpoint=endpoint, at=at, version=version, role=role,
                         model="cancer", features={"mean radius": 14.2 + n, "mean texture": 20.1},
                         prediction=pred, latency_ms=latency, status=status, **kw)


def buckets(*latencies: float) -> tuple[int, ...]:
    out = [0] * len(LATENCY_BUCKETS_MS)
    for ms in latencies:
        out[next(i for i, b in enumerate(LATENCY_BUCKETS_MS) if ms <= b)] += 1
    return tuple(out)


@pytest.fixture
def engine(database_url):
    eng = make_engine(database_url)
    yield eng
    eng.dispose()


@pytest.fixture
def log(engine):
    return SqlPredictionLog(engine, clock=FakeClock(T0 + timedelta(hours=1)))


def by_key(rollups: list[Rollup]) -> dict:
    return {(r.minute, r.version, r.role): r for r in rollups}


# -- write ------------------------------------------------------------------------------------------------
def test_each_row_is_stored_once_and_rollups_count_only_new_rows(log):
    first = [row("r1", 0, latency=3.0), row("r1", 1, latency=3.0),  # a batch of two: one request, two rows
             row("r2", 0, at=T0 + timedelta(seconds=30), version="3", role="canary", latency=120.0),
             row("r3", 0, at=T0 + timedelta(seconds=65), status=500, error="boom", latency=None, pred=None)]
    res = log.write(first)
    assert (res.stored, res.duplicates) == (4, 0)
    # at-least-once delivery: the same event again, plus one new row and a duplicate inside the batch
    again = [row("r1", 0, latency=999.0), row("r1", 1), row("r4", 0, latency=0.5), row("r4", 0, latency=0.5)]
    res = log.write(again)
    assert (res.stored, res.duplicates) == (1, 3)
    assert log.write([]) == type(res)(0, 0)

    ups = by_key(log.rollups(EP, T0, T0 + timedelta(minutes=5)))
    assert set(ups) == {(T0, "2", "stable"), (T0, "3", "canary"), (T0 + timedelta(minutes=1), "2", "stable")}
    s = ups[(T0, "2", "stable")]
    assert (s.count, s.errors, s.latency_sum_ms, s.latency_buckets) == (3, 0, 6.5, buckets(3.0, 3.0, 0.5)), \
        "the repeated r1 row (999 ms) must not count"
    c = ups[(T0, "3", "canary")]
    assert (c.count, c.errors, c.latency_sum_ms, c.latency_buckets) == (1, 0, 120.0, buckets(120.0))
    e = ups[(T0 + timedelta(minutes=1), "2", "stable")]
    assert (e.count, e.errors, e.latency_sum_ms, sum(e.latency_buckets)) == (1, 1, 0.0, 0)
    stored = log.rows(EP, request_id="r1")
    assert [(r.row, r.latency_ms, r.features) for r in stored] == [
        (0, 3.0, {"mean radius": 14.2, "mean texture": 20.1}), (1, 3.0, {"mean radius": 15.2, "mean texture": 20.1})]
    assert log.rows(EP, request_id="r3")[0].error == "boom" and not log.rows(EP, request_id="r3")[0].ok


def test_unknown_version_and_other_endpoints_keep_their_own_rollups(log):
    log.write([row("a", 0, version=None, role="unknown"), row("b", 0, endpoint="other", latency=7000.0)])
    (u,) = log.rollups(EP, T0, T0 + timedelta(minutes=1))
    assert (u.version, u.role, u.count) == (None, "unknown", 1)
    (o,) = log.rollups("other", T0, T0 + timedelta(minutes=1))
    assert o.latency_buckets[-1] == 1, "above the last bound: the inf bucket"
    assert log.rollups(EP, T0 + timedelta(minutes=1), T0 + timedelta(minutes=2)) == []


def test_concurrent_writers_store_once_and_add_exactly(log, engine):
    """Four threads write overlapping batches of the same 200 rows in different orders at once."""
    rows = [row(f"req-{i // 2:03d}", i % 2, at=T0 + timedelta(seconds=i % 150), latency=float(i % 40),
                version="2" if i % 3 else "3", role="stable" if i % 3 else "canary") for i in range(200)]
    results, errors = [], []
    barrier = threading.Barrier(4)

    def writer(seed: int):
        mine = rows[:]
        random.Random(seed).shuffle(mine)
        try:
            barrier.wait(10)
            for i in range(0, len(mine), 25):
                results.append(log.write(mine[i:i + 25]))
        except BaseException as exc:  # noqa: BLE001 - asserted below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == [] and not any(t.is_alive() for t in threads)
    assert sum(r.stored for r in results) == 200 and sum(r.duplicates for r in results) == 600
    assert len(log.rows(EP, limit=0)) == 200
    ups = log.rollups(EP, T0, T0 + timedelta(minutes=5))
    assert sum(u.count for u in ups) == 200
    assert sum(u.latency_sum_ms for u in ups) == sum(r.latency_ms for r in rows)
    for u in ups:
        mine = [r for r in rows if (r.at.replace(second=0), r.version, r.role) == (u.minute, u.version, u.role)]
        assert (u.count, u.latency_buckets) == (len(mine), buckets(*(r.latency_ms for r in mine)))


# -- labels -----------------------------------------------------------------------------------------------
def test_labels_late_twice_corrected_and_unknown(log):
    log.write([row("c1", 0, pred=1), row("c1", 1, pred=0), row("c2", 0, pred=1, version="3", role="canary")])
    res = log.add_labels([("c1", None, 1), ("c2", 0, 0), ("nope", None, 1), ("c2", 7, 1)])
    assert res.stored == 3 and res.unknown == ["nope", "c2"], "no such request; no row 7 of c2 (its row 0 is fine)"
    ups = by_key(log.rollups(EP, T0, T0 + timedelta(minutes=1)))
    assert (ups[(T0, "2", "stable")].labelled, ups[(T0, "2", "stable")].correct) == (2, 1)
    assert (ups[(T0, "3", "canary")].labelled, ups[(T0, "3", "canary")].correct) == (1, 0)
    before = log.rollups(EP, T0, T0 + timedelta(minutes=1))
    assert log.add_labels([("c1", None, 1), ("c2", 0, 0)]).stored == 0
    assert log.rollups(EP, T0, T0 + timedelta(minutes=1)) == before, "the same labels again change nothing"
    # a corrected label replaces the old one's contribution
    assert log.add_labels([("c1", 1, 0)]).stored == 1
    s = by_key(log.rollups(EP, T0, T0 + timedelta(minutes=1)))[(T0, "2", "stable")]
    assert (s.labelled, s.correct, s.count) == (2, 2, 2)
    labelled = {r.row: (r.label, r.labelled_at) for r in log.rows(EP, request_id="c1")}
    assert labelled == {0: (1, T0 + timedelta(hours=1)), 1: (0, T0 + timedelta(hours=1))}
    with pytest.raises(Invalid, match="null"):
        log.add_labels([("c1", 0, None)])


def test_regression_labels_add_absolute_and_squared_errors(log):
    log.write([row("g1", 0, pred=150.0, at=T0 + timedelta(minutes=3)), row("g2", 0, pred=80.5)])
    assert log.add_labels([("g1", 0, 140.0), ("g2", None, 82.5)]).stored == 2
    ups = by_key(log.rollups(EP, T0, T0 + timedelta(minutes=4)))
    late, early = ups[(T0 + timedelta(minutes=3), "2", "stable")], ups[(T0, "2", "stable")]
    assert (late.labelled, late.abs_error_sum, late.sq_error_sum) == (1, 10.0, 100.0), "the row's own minute"
    assert (early.labelled, early.abs_error_sum, early.sq_error_sum, early.correct) == (1, 2.0, 4.0, 0)
    log.add_labels([("g2", 0, 80.5)])
    early = by_key(log.rollups(EP, T0, T0 + timedelta(minutes=1)))[(T0, "2", "stable")]
    assert (early.labelled, early.abs_error_sum, early.sq_error_sum, early.correct) == (1, 0.0, 0.0, 1)


# -- reads and retention ------------------------------------------------------------------------------------
def test_rows_windows_order_and_limit(log):
    log.write([row(f"w{i}", 0, at=T0 + timedelta(minutes=i)) for i in range(5)]
              + [row("w2", 1, at=T0 + timedelta(minutes=2))])
    assert [(r.request_id, r.row) for r in log.rows(EP)] == [
        ("w4", 0), ("w3", 0), ("w2", 0), ("w2", 1), ("w1", 0), ("w0", 0)], "newest first"
    window = log.rows(EP, start=T0 + timedelta(minutes=1), end=T0 + timedelta(minutes=3))
    assert [(r.request_id, r.row) for r in window] == [("w2", 0), ("w2", 1), ("w1", 0)], "start <= at < end"
    assert [r.request_id for r in log.rows(EP, limit=2)] == ["w4", "w3"]
    assert log.rows("no-such-endpoint") == [] and log.rows(EP, request_id="zzz") == []
    ups = log.rollups(EP, T0 + timedelta(minutes=1), T0 + timedelta(minutes=3))
    assert [(u.minute, u.count) for u in ups] == [(T0 + timedelta(minutes=1), 1), (T0 + timedelta(minutes=2), 2)]


def test_purge_drops_old_rows_and_keeps_rollups(log):
    log.write([row(f"p{i}", 0, at=T0 + timedelta(days=i)) for i in range(4)] + [row("x", 0, endpoint="other")])
    before = log.rollups(EP, T0, T0 + timedelta(days=5))
    assert log.purge(T0 + timedelta(days=2)) == 3, "p0, p1 and the other endpoint's row"
    assert [r.request_id for r in log.rows(EP)] == ["p3", "p2"] and log.rows("other") == []
    assert log.rollups(EP, T0, T0 + timedelta(days=5)) == before and len(before) == 4
    assert log.add_labels([("p0", None, 1)]).unknown == ["p0"], "a purged row cannot be labelled"


def test_a_broken_database_is_reported_as_unavailable(log, engine):
    with writing(engine) as conn:
        conn.exec_driver_sql("DROP TABLE prediction_rollups")
    with pytest.raises(Unavailable) as info:
        log.write([row("z", 0)])
    assert info.value.source == "prediction log" and "writing predictions failed" in info.value.message
    assert log.rows(EP) == [], "the failed write left no row behind (one transaction)"


# -- the fake keeps the same semantics ------------------------------------------------------------------------
def norm(rollups: list[Rollup]) -> list[tuple]:
    return [(u.minute, u.version, u.role, u.count, u.errors, round(u.latency_sum_ms, 6), u.latency_buckets,
             u.labelled, u.correct, round(u.abs_error_sum, 6), round(u.sq_error_sum, 6)) for u in rollups]


def test_the_fake_agrees_with_the_sql_adapter(log):
    fake = FakePredictionLog(clock=log.clock)
    rng = random.Random(7)
    for step in range(30):
        if step % 3 == 2:
            labels = [(f"q{rng.randrange(12)}", rng.choice([None, 0, 1]), rng.choice([0, 1, 2.5]))
                      for _ in range(4)]
            a, b = log.add_labels(labels), fake.add_labels(labels)
        else:
            batch = [row(f"q{rng.randrange(12)}", rng.randrange(2), at=T0 + timedelta(seconds=rng.randrange(180)),
                         version=rng.choice(["1", "2", None]), pred=rng.choice([0, 1, 2.0]),
                         latency=rng.choice([None, 0.7, 42.0, 3000.0]), status=rng.choice([200, 200, 503]))
                     for _ in range(5)]
            a, b = log.write(batch), fake.write(batch)
        assert a == b, f"step {step}"
    assert log.rows(EP, limit=0) == fake.rows(EP, limit=0)
    window = (T0, T0 + timedelta(minutes=3))
    assert norm(log.rollups(EP, *window)) == norm(fake.rollups(EP, *window))
    assert sum(u.labelled for u in fake.rollups(EP, *window)) > 0, "the scenario labelled something"
    assert log.purge(T0 + timedelta(minutes=1)) == fake.purge(T0 + timedelta(minutes=1))
    assert log.rows(EP, limit=0) == fake.rows(EP, limit=0)
