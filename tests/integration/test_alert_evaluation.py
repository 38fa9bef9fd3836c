"""The evaluator end to end on SQLite and PostgreSQL: real prediction-log rows (SqlPredictionLog.write), the
rollups read through the SQL metrics source, the local serving backend, the SQL alert store, a policy loaded
from YAML. The canary's answers fail at 30 % from a known minute: the canary-errors rule fires within its
1-minute window (the stable rule stays quiet); the errors stop: it resolves within the window; the canary is
aborted (its series ends) while failing: the next alert resolves for lack of data. Evaluated every 15 s of a
clock the test moves."""

from __future__ import annotations

from datetime import timedelta

import pytest

from services.actions.catalog import VOCABULARY
from services.alerts.runner import run_once
from services.alerts.sql import SqlAlertStore
from services.metrics.sql import SqlMetricsSource
from services.policy import Policy
from services.predictions import PredictionRow
from services.predictions.sql import SqlPredictionLog
from services.serving.local import LocalServingBackend
from services.store.db import make_engine
from tests.fakes import FakeClock

EP = "screening"
POLICY = """
defaults:
  alerts:
    - {name: canary-errors, metric: error_rate, role: canary, window: 1m, above: 0.1, min_samples: 10, severity: page}
    - {name: stable-errors, metric: error_rate, role: stable, window: 5m, above: 0.05, min_samples: 50, severity: page}
"""
STEP = timedelta(seconds=15)
PER_STEP = {"stable": 12, "canary": 3}  # 48 and 12 requests a minute: a 20 % canary


@pytest.fixture
def world(database_url, tmp_path):
    clock = FakeClock()
    engine = make_engine(database_url)
    (tmp_path / "policy.yaml").write_text(POLICY)
    serving = LocalServingBackend(engine, clock=clock)
    serving.ensure_endpoint(EP, "m", "1", canary_version="2", canary_weight=20)
    log = SqlPredictionLog(engine, clock=clock)
    w = {"clock": clock, "log": log, "serving": serving, "store": SqlAlertStore(engine, clock=clock),
         "policy": Policy.load(tmp_path / "policy.yaml", VOCABULARY), "metrics": SqlMetricsSource(log, clock=clock),
         "n": 0}
    yield w
    engine.dispose()


def step(w, *, canary_error_rate: float = 0.0, canary: bool = True) -> list:
    """Traffic for the last 15 s (spread over it), then one evaluation at the new now."""
    clock = w["clock"]
    rows = []
    for role, n in PER_STEP.items():
        if role == "canary" and not canary:
            continue
        failing = round(n * 4 * canary_error_rate) if role == "canary" else 0  # per minute, spread over 4 steps
        for i in range(n):
            w["n"] += 1
            w[role] = w.get(role, 0) + 1
            fail = w[role] % (n * 4) < failing  # exactly `failing` of every minute's canary answers
            rows.append(PredictionRow(
                request_id=f"r{w['n']}", row=0, endpoint=EP, at=clock() + STEP * i / n,
                version="2" if role == "canary" else "1", role=role, model="m", features={"x": float(i)},
                prediction=None if fail else 1, latency_ms=12.0, status=503 if fail else 200,
                error="injected" if fail else ""))
    w["log"].write(rows)
    clock.advance(seconds=15)
    return run_once(w["store"], w["policy"], w["metrics"], w["log"], w["serving"], clock, timeout_s=30)


def test_canary_errors_fire_within_the_window_and_resolve(world):
    w, clock = world, world["clock"]
    for _ in range(4 * 5):  # five healthy minutes
        assert step(w) == []
    errors_from = clock()
    fired = None
    for _ in range(4 * 3):
        for change in step(w, canary_error_rate=0.3):
            assert (change.kind, change.alert.rule) == ("fired", "canary-errors"), change
            fired = fired or change.alert
    assert fired is not None, "30 % canary errors for 3 minutes and no alert"
    assert fired.started_at - errors_from <= timedelta(minutes=1), "fired within the rule's 1-minute window"
    assert fired.endpoint == EP and fired.severity == "page" and 0.1 < fired.value <= 0.5
    assert "canary error_rate" in fired.summary and "> 10.0% over 1m" in fired.summary
    (firing,) = w["store"].alerts(state="firing")
    assert firing.id == fired.id and 0.2 <= firing.last_value <= 0.4

    errors_until = clock()
    resolved = None
    for _ in range(4 * 3):
        for change in step(w):
            assert (change.kind, change.alert.id) == ("resolved", fired.id), change
            resolved = change.alert
    assert resolved is not None, "the errors stopped and the alert still fires"
    assert timedelta(0) < resolved.resolved_at - errors_until <= timedelta(minutes=1) + STEP
    assert w["store"].alerts(state="firing") == []
    assert [a.rule for a in w["store"].alerts()] == ["canary-errors"], "the stable rule never fired"


def test_an_aborted_canary_resolves_its_alert_for_lack_of_data(world):
    w, clock = world, world["clock"]
    changes = []
    for _ in range(4 * 2):
        changes += step(w, canary_error_rate=0.5)
    assert [c.kind for c in changes] == ["fired"]
    stopped = clock()
    for _ in range(4 * 3):  # the canary is gone: no canary rows at all
        changes += step(w, canary=False)
    assert [c.kind for c in changes] == ["fired", "resolved"]
    assert changes[1].alert.resolved_at - stopped <= timedelta(minutes=1) + STEP
