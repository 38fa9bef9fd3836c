"""Reference profiles and the histograms kept on them by the SQL prediction log (SQLite and PostgreSQL):
derived once, exact under concurrent writers, equal to the fake's, built on first write by the builder,
summed per hour or day in SQL."""

from __future__ import annotations

import random
import threading
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from services.drift.bins import MISSING, build_profile
from services.predictions import PredictionRow
from services.predictions.histograms import prediction_cells
from services.predictions.sql import SqlPredictionLog
from services.store.db import make_engine
from tests.fakes import FakeClock, FakePredictionLog

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
EP = "ns/cancer"


def reference(seed: int = 0, n: int = 400) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"radius": rng.normal(14, 3, n), "grade": rng.choice(["a", "b", "c"], n),
                         "target": rng.integers(0, 2, n)})


def rows(n: int, *, seed: int = 0, version: str = "2", role: str = "stable", spread=timedelta(hours=30)):
    rng = random.Random(seed)
    out = []
    for i in range(n):
        features = {"radius": rng.gauss(15, 3), "grade": rng.choice("abcd")}
        if i % 17 == 0:
            features.pop("radius")  # a missing value
        out.append(PredictionRow(request_id=f"{seed}-{i:05d}", row=i % 3, endpoint=EP,
                                 at=T0 + spread * rng.random(), version=version, role=role, model="cancer",
                                 features=features, prediction=rng.choice([0, 1]), latency_ms=3.0,
                                 status=500 if i % 23 == 0 else 200))
    return out


@pytest.fixture
def engine(database_url):
    eng = make_engine(database_url)
    yield eng
    eng.dispose()


@pytest.fixture
def log(engine):
    return SqlPredictionLog(engine, clock=FakeClock(T0))


def test_a_profile_is_stored_once_and_the_first_one_stays(log):
    first = build_profile("cancer", "2", reference(0), source="first")
    assert log.profile("cancer", "2") is None
    assert log.save_profile(first) == first
    assert log.save_profile(build_profile("cancer", "2", reference(1), source="second")) == first
    assert log.profile("cancer", "2") == first and log.profile("cancer", "3") is None


def test_the_fake_agrees_with_the_sql_adapter_on_histograms(log):
    fake = FakePredictionLog(clock=log.clock)
    for target in (log, fake):
        target.save_profile(build_profile("cancer", "2", reference(0), source="unit"))
        target.save_profile(build_profile("cancer", "3", reference(1), source="unit"))
    batch = rows(300, seed=1) + rows(120, seed=2, version="3", role="canary") + rows(40, seed=3, version="7")
    for i in range(0, len(batch), 70):
        log.write(batch[i:i + 70])
        fake.write(batch[i:i + 70])
    log.write(batch[:100])  # redelivered: nothing changes
    window = (T0 - timedelta(days=1), T0 + timedelta(days=2))
    for granularity in ("hour", "day"):
        a, b = log.histograms(EP, *window, granularity=granularity), fake.histograms(EP, *window,
                                                                                     granularity=granularity)
        assert [(c.period, c.version, c.role, c.feature, c.counts) for c in a] == \
               [(c.period, c.version, c.role, c.feature, c.counts) for c in b]
        assert [c.total for c in a] == pytest.approx([c.total for c in b])
    assert prediction_cells(log.rollups(EP, *window)) == prediction_cells(fake.rollups(EP, *window))
    assert log.served(EP, *window) == fake.served(EP, *window)
    assert sorted((t.version, t.role, t.requests, t.errors) for t in log.served(EP, *window)) == sorted(
        (v, role, sum(1 for r in batch if (r.version, r.role) == (v, role)),
         sum(1 for r in batch if (r.version, r.role) == (v, role) and r.status >= 400))
        for v, role in {(r.version, r.role) for r in batch})
    # what was binned: every row of a profiled version once per feature; answers only when they succeeded
    hist = log.histograms(EP, *window, granularity="day")
    profiled = [r for r in batch if r.version in ("2", "3")]
    assert sum(sum(c.counts) for c in hist if c.feature == "radius") == len(profiled)
    assert sum(c.missing for c in hist if c.feature == "radius") == \
           sum(1 for r in profiled if "radius" not in r.features)
    answered = sum(1 for r in profiled if r.status == 200)
    assert sum(sum(c.counts) for c in prediction_cells(log.rollups(EP, *window))) == answered
    assert {c.version for c in hist} == {"2", "3"}, "v7 has no profile: counted in rollups, not binned"
    only3 = log.histograms(EP, *window, version="3")
    assert {c.version for c in only3} == {"3"} and sum(sum(c.counts) for c in only3 if c.feature == "grade") == 120


def test_concurrent_writers_add_histograms_exactly(log):
    log.save_profile(build_profile("cancer", "2", reference(0), source="unit"))
    batch = rows(400, seed=4, spread=timedelta(hours=3))
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def writer(seed: int):
        mine = batch[:]
        random.Random(seed).shuffle(mine)
        try:
            barrier.wait(10)
            for i in range(0, len(mine), 40):
                log.write(mine[i:i + 40])
        except BaseException as exc:  # noqa: BLE001 - asserted below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == [] and not any(t.is_alive() for t in threads)
    bins = log.profile("cancer", "2").columns["radius"]
    cells = log.histograms(EP, T0, T0 + timedelta(hours=4))
    for hour in {c.period for c in cells}:
        mine = [r for r in batch if r.at.replace(minute=0, second=0, microsecond=0) == hour]
        want = [0] * bins.size
        for r in mine:
            b = bins.index(r.features.get("radius"))
            if b != MISSING:
                want[b] += 1
        (got,) = [c for c in cells if c.period == hour and c.feature == "radius"]
        assert got.bins(bins.size) == want and got.missing == sum(1 for r in mine if "radius" not in r.features)
        total = got.total
        assert total == pytest.approx(sum(r.features.get("radius", 0.0) for r in mine))


def test_the_builder_derives_a_missing_profile_once_and_a_failing_one_does_not_stop_writes(engine):
    calls: list[tuple[str, str]] = []

    def build(model, version):
        calls.append((model, version))
        if version == "9":
            raise RuntimeError("registry down")
        return log.save_profile(build_profile(model, version, reference(2), source="built"))

    log = SqlPredictionLog(engine, clock=FakeClock(T0), build_profile=build)
    log.write(rows(50, seed=5, spread=timedelta(minutes=30)))
    log.write(rows(50, seed=6, spread=timedelta(minutes=30)))
    res = log.write(rows(20, seed=7, version="9", spread=timedelta(minutes=30)))
    assert res.stored == 20 and calls == [("cancer", "2"), ("cancer", "9")]
    assert log.profile("cancer", "2").source == "built" and log.profile("cancer", "9") is None
    cells = log.histograms(EP, T0, T0 + timedelta(hours=1))
    assert sum(sum(c.counts) for c in cells if c.feature == "grade") == 100 and {c.version for c in cells} == {"2"}


def test_labels_are_binned_on_the_answer_bins_once_and_corrections_move(log):
    """Ground truth joins the histograms under __label__ (the prediction's bins, from the reference target):
    late, twice (nothing changes), corrected (the old value's count goes back); the fake agrees."""
    from services.drift.bins import LABEL

    fake = FakePredictionLog(clock=log.clock)
    batch = rows(60, seed=8, spread=timedelta(minutes=50))
    for target in (log, fake):
        target.save_profile(build_profile("cancer", "2", reference(0), source="unit"))
        target.write(batch)
        target.add_labels([(r.request_id, r.row, i % 2) for i, r in enumerate(batch[:40])])
        target.add_labels([(r.request_id, r.row, i % 2) for i, r in enumerate(batch[:40])])  # again: no change
        target.add_labels([(batch[0].request_id, batch[0].row, 1), ("nope", None, 1)])  # a correction 0 -> 1
    window = (T0, T0 + timedelta(hours=2))
    got = [c for c in log.histograms(EP, *window) if c.feature == LABEL]
    assert [(c.period, c.counts) for c in got] == [(c.period, c.counts) for c in fake.histograms(EP, *window)
                                                   if c.feature == LABEL]
    counts = [sum(c.counts[i] for c in got) for i in range(2)]
    assert counts == [19, 21] and sum(sum(c.counts) for c in got) == 40
    assert sum(c.total for c in got) == pytest.approx(21.0), "numeric labels keep their sum for means"
