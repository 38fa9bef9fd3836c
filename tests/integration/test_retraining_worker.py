"""The worker checks the policy's retraining rules (only where the policy has them) on a real console database:
labels that say the stable version is wrong make it start exactly one retraining, and it says so."""

from __future__ import annotations

import threading
from datetime import timedelta

from services.predictions import PredictionRow
from services.retraining.commands import rules_loop
from services.worker import loops
from tests.conftest import ENDPOINT, MODEL, fresh_registry, make_container, wait_for
from tests.fakes import FakeRetrainer

RULES = ("defaults: {}\nretraining:\n  defaults:\n    - {name: quality-low, metric: accuracy, below: 0.8, "
         "window_minutes: 60, min_labelled: 10, cooldown_minutes: 60}\n")


def test_the_worker_retrains_by_rule_once(registry_template, tmp_path, clock):
    policy = tmp_path / "policy.yaml"
    policy.write_text(RULES)
    uri = fresh_registry(registry_template, tmp_path / "reg")
    c = make_container(uri, f"sqlite:///{tmp_path / 'console.db'}", tmp_path, clock=clock,
                       MLOPS_POLICY_FILE=str(policy))
    fake = c.overrides["retrainer"] = FakeRetrainer(states=("running",) * 5)
    c.serving.ensure_endpoint(ENDPOINT, MODEL, "1")
    c.predictions.write([PredictionRow(f"r{i}", 0, ENDPOINT, clock() - timedelta(minutes=5), "1", "stable", MODEL,
                                       {"mean radius": 1.0, "mean texture": 0.5}, prediction=1) for i in range(12)])
    c.predictions.add_labels([(f"r{i}", 0, 0) for i in range(12)])
    stop, said = threading.Event(), []
    assert "retraining" in loops(c, stop, said.append)
    t = threading.Thread(target=rules_loop, args=(c, stop, said.append, 0.05), daemon=True)
    t.start()
    try:
        wait_for("the rule to fire", lambda: fake.requests, timeout=20)
        wait_for("two later rounds held by the open run", lambda: fake.reads.get("fake-1", 0) >= 2, timeout=20)
    finally:
        stop.set()
        t.join(5)
    assert not t.is_alive()
    assert len(fake.requests) == 1 and fake.requests[0].trigger == "rule:quality-low"
    assert any(s.startswith(f"retraining: {ENDPOINT} rule quality-low (accuracy 0 < 0.8) started run fake-1")
               for s in said)
    assert [e.actor for e in c.audit.entries(action="retrain")] == ["rule:quality-low"]
    c.engine.dispose()


def test_no_retraining_loop_without_rules_and_a_broken_section_is_said(registry_template, tmp_path, clock):
    uri = fresh_registry(registry_template, tmp_path / "reg")
    policy = tmp_path / "policy.yaml"
    policy.write_text("defaults: {}\n")
    c = make_container(uri, f"sqlite:///{tmp_path / 'console.db'}", tmp_path, clock=clock,
                       MLOPS_POLICY_FILE=str(policy))
    assert "retraining" not in loops(c, threading.Event(), print)
    policy.write_text("defaults: {}\nretraining:\n  defaults:\n    - {name: x, metric: f1, below: 1}\n")
    stop, said = threading.Event(), []
    assert "retraining" in loops(c, stop, said.append)

    def say(line):  # one round: it says why (and does not raise); then stop
        said.append(line)
        stop.set()

    rules_loop(c, stop, say, 0)
    assert said == ["retraining rules: retraining rules: retraining.defaults 'x': metric must be one of accuracy, "
                    "mae, drift_share; will retry"]
    c.engine.dispose()
