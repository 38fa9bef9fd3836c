"""Retraining by rule on fakes: the rule's metric over its window, the threshold, at most one open retraining per
endpoint, the cool-down, dry runs, and the rules' configuration."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.errors import Invalid, Unavailable
from services.predictions import PredictionRow
from services.retraining.rules import RetrainRule, RetrainRules, check_endpoint
from tests.fakes import FakeAuditTrail, FakeClock, FakePredictionLog, FakeRetrainer, FakeServing

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
QUALITY = RetrainRule("quality-low", "accuracy", below=0.9, window_minutes=1440, min_labelled=10,
                      cooldown_minutes=120)
DRIFT = RetrainRule("drifted", "drift_share", above=0.5, window_minutes=360)


def _world(correct: int, wrong: int, *, version="2"):
    clock = FakeClock(T0)
    serving, audit, log = FakeServing(clock=clock), FakeAuditTrail(clock), FakePredictionLog(clock)
    serving.add("screening", "clf", "2")
    rows = [PredictionRow(f"r{i}", 0, "screening", T0 - timedelta(minutes=10), version, "stable", "clf", {"x": 1.0},
                          prediction=1) for i in range(correct + wrong)]
    log.write(rows)
    log.add_labels([(f"r{i}", 0, 1 if i < correct else 0) for i in range(correct + wrong)])
    return serving, audit, log, clock


def _check(retrainer, world, rules=(QUALITY,), drift=lambda *a: None, **kw):
    serving, audit, log, clock = world
    return check_endpoint(retrainer, audit, serving, log, rules, "screening", drift=drift, clock=clock, **kw)


def test_live_quality_past_the_threshold_triggers_one_audited_retraining_with_its_evidence():
    world = _world(correct=8, wrong=4)  # accuracy 0.667 < 0.9 on 12 labels
    retrainer = FakeRetrainer()
    checks, run = _check(retrainer, world)
    assert [(k.rule, k.outcome, round(k.value, 3)) for k in checks] == [("quality-low", "fired", 0.667)]
    assert run is not None and checks[0].run_id == run.run_id
    req = retrainer.requests[0]
    assert req.trigger == "rule:quality-low" and req.version == "2"
    assert (req.window_start, req.window_end) == (T0 - timedelta(days=1), T0)
    assert req.evidence["value"] == pytest.approx(8 / 12) and req.evidence["threshold"] == "< 0.9"
    entry = world[1].entries(limit=1)[0]
    assert (entry.actor, entry.action, entry.result) == ("rule:quality-low", "retrain", "ok")
    assert entry.reason.startswith("rule quality-low: accuracy 0.6667 < 0.9")
    assert entry.details["authenticated_by"] == "rule"


def test_good_quality_or_too_few_labels_decide_nothing():
    retrainer = FakeRetrainer()
    checks, run = _check(retrainer, _world(correct=19, wrong=1))
    assert run is None and checks[0].outcome == "ok" and checks[0].value == 0.95
    checks, run = _check(retrainer, _world(correct=1, wrong=5))  # 6 labels < min_labelled
    assert run is None and checks[0].outcome == "no data" and "only 6 labelled" in checks[0].note
    checks, run = _check(retrainer, _world(correct=0, wrong=20, version="3"))  # another version's labels
    assert run is None and checks[0].outcome == "no data"
    assert retrainer.requests == []


def test_at_most_one_open_retraining_per_endpoint_then_the_cool_down():
    world = _world(correct=0, wrong=12)
    clock = world[3]
    retrainer = FakeRetrainer(states=("running", "running", "succeeded"))
    _check(retrainer, world)
    clock.advance(minutes=30)
    checks, run = _check(retrainer, world)  # status read once: running
    assert run is None and checks[0].outcome == "skipped" and "is still running" in checks[0].note
    clock.advance(minutes=30)
    checks, run = _check(retrainer, world)  # running again
    assert run is None and "still running" in checks[0].note
    clock.advance(minutes=30)
    checks, run = _check(retrainer, world)  # succeeded now, but 90 min < the 120-min cool-down
    assert run is None and "within the 120-minute cool-down" in checks[0].note
    clock.advance(minutes=31)
    checks, run = _check(retrainer, world)
    assert run is not None and checks[0].outcome == "fired" and len(retrainer.requests) == 2


def test_a_run_whose_state_cannot_be_read_counts_as_open():
    world = _world(correct=0, wrong=12)
    retrainer = FakeRetrainer()
    _check(retrainer, world)
    retrainer.fail["status"] = Unavailable("down", source="Airflow http://af")
    world[3].advance(hours=3)  # past the cool-down
    checks, run = _check(retrainer, world)
    assert run is None and "cannot be read now: down" in checks[0].note


def test_the_first_rule_that_fires_starts_the_only_run_and_a_dry_run_starts_none():
    world = _world(correct=0, wrong=12)
    retrainer = FakeRetrainer()
    checks, run = _check(retrainer, world, rules=(QUALITY, DRIFT), drift=lambda *a: 0.75, dry_run=True)
    assert [k.outcome for k in checks] == ["would fire", "would fire"] and run is None
    assert retrainer.requests == [] and world[1].rows == []
    checks, run = _check(retrainer, world, rules=(DRIFT, QUALITY), drift=lambda *a: 0.75)
    assert [k.outcome for k in checks] == ["fired", "skipped"] and len(retrainer.requests) == 1
    assert retrainer.requests[0].trigger == "rule:drifted" and "started by this check" in checks[1].note


def test_rules_are_read_from_the_policy_section_and_checked(tmp_path):
    policy = tmp_path / "policy.yaml"
    policy.write_text("defaults: {}\nretraining:\n  defaults:\n    - {name: q, metric: accuracy, below: 0.9}\n"
                      "  endpoints:\n    screening:\n      - {name: d, metric: drift_share, above: 0.5, "
                      "window_minutes: 360, cooldown_minutes: 0}\n")
    rules = RetrainRules.load(policy)
    assert rules.for_endpoint("other") == (RetrainRule("q", "accuracy", below=0.9),)
    assert rules.for_endpoint("screening") == (RetrainRule("d", "drift_share", above=0.5, window_minutes=360,
                                                           cooldown_minutes=0),)
    assert RetrainRules.load(tmp_path / "policy.yaml").defaults[0].min_labelled == 100
    for bad, message in (({"defaults": [{"name": "x", "metric": "f1", "below": 1}]}, "metric must be one of"),
                         ({"defaults": [{"name": "x", "metric": "mae"}]}, "exactly one of above or below"),
                         ({"defaults": [{"name": "x", "metric": "mae", "above": 1, "every": 3}]}, "unknown key"),
                         ({"defaults": [{"name": "x", "metric": "mae", "above": 1, "window_minutes": 0}]}, "≥ 1"),
                         ({"defaults": [{"metric": "mae"}]}, "with a name"),
                         ({"defaults": [{"name": "x", "metric": "mae", "above": 1, "request_promotion": "yes"}]},
                          "true or false")):
        with pytest.raises(Invalid, match=message):
            RetrainRules.from_dict(bad)
