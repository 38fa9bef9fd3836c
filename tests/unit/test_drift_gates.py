"""Drift as live gates: ``drift_share`` of the candidate's traffic from the histograms, ``attribution_shift``
against the champion; every other metric passes through to the metrics source. Planned through the real
Actions facade on the fakes."""

from __future__ import annotations

import random
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from services.drift.bins import build_profile
from services.drift.gates import GateMetrics
from services.policy import Policy
from services.predictions import PredictionRow
from tests.fakes import FakeLiveMetrics, FakePredictionLog
from tests.unit.test_actions_usecases import EP, M, World


class Shifts:
    """An explainer double: the attribution shift of (model, champion, candidate), and what was asked."""

    def __init__(self, values):
        self.values, self.asked = values, []

    def version_drift(self, model, a, b):
        self.asked.append((model, a, b))
        return {"attribution_shift": self.values[(a, b)]}


def world(shift_canary: float, *, live=None, shifts=None, gates=None):
    gates = gates or [{"metric": "drift_share", "max_value": 0.5, "min_samples": 0},
                      {"metric": "attribution_shift", "max_value": 0.3}]
    w = World(policy={"defaults": {"gates": {"live": gates}, "drift": {"method": "psi", "threshold": 0.25}}})
    log = FakePredictionLog(clock=w.clock)
    rng = np.random.default_rng(0)
    ref = pd.DataFrame({"a": rng.normal(0, 1, 2000), "b": rng.normal(0, 1, 2000), "target": [0, 1] * 1000})
    for v in ("1", "2"):
        log.save_profile(build_profile(M, v, ref, source="unit"))
    r = random.Random(1)
    now = w.clock()
    rows = [PredictionRow(f"{v}-{i}", 0, EP, now - timedelta(minutes=30) + timedelta(seconds=i), v,
                          "canary" if v == "2" else "stable", M,
                          {"a": r.gauss(shift_canary if v == "2" else 0.0, 1), "b": r.gauss(shift_canary if v == "2"
                                                                                           else 0.0, 1)},
                          r.randint(0, 1), 3.0) for v in ("1", "2") for i in range(600)]
    log.write(rows)
    shifts = shifts or Shifts({("1", "2"): 0.1})
    gm = GateMetrics(FakeLiveMetrics(live), log, w.actions.planning.policy, model_of=lambda ep: M,
                     champion_of=lambda model: w.registry.alias_map[model].get("champion"),
                     explainer=lambda: shifts, clock=w.clock, window=timedelta(minutes=60))
    w.actions.planning.live_metrics = gm
    return w, gm, shifts


def test_a_canary_whose_traffic_drifted_fails_the_drift_share_gate():
    w, gm, _ = world(1.5)
    assert gm.current(EP, "2", "drift_share") == 1.0 and gm.current(EP, "1", "drift_share") == 0.0
    plan = w.actions.plan(w.who("alice"), "promote_canary", EP)
    by = {g.name.split()[1]: g for g in plan.gates}
    assert by["drift_share"].passed is False and by["drift_share"].candidate == 1.0
    assert by["attribution_shift"].passed is True and by["attribution_shift"].candidate == pytest.approx(0.1)


def test_a_quiet_canary_passes_and_a_big_attribution_shift_fails():
    w, gm, shifts = world(0.0, shifts=Shifts({("1", "2"): 0.45}))
    plan = w.actions.plan(w.who("alice"), "promote_canary", EP)
    by = {g.name.split()[1]: g for g in plan.gates}
    assert by["drift_share"].passed is True and by["drift_share"].candidate == 0.0
    assert by["attribution_shift"].passed is False and shifts.asked == [(M, "1", "2")]


def test_no_profile_no_champion_and_other_metrics():
    w, gm, shifts = world(0.0, live={(EP, "2", "error_rate"): 0.01})
    assert gm.current(EP, "9", "drift_share") is None, "no profile, no traffic: no live data"
    assert gm.current(EP, "1", "attribution_shift") is None, "the champion against itself: nothing to compare"
    w.registry.alias_map[M].pop("champion")
    assert gm.current(EP, "2", "attribution_shift") is None and shifts.asked == []
    assert gm.current(EP, "2", "error_rate") == 0.01 and gm.p_value(EP, "2", "1", "drift_share") is None


def test_the_demo_policy_still_loads_with_drift_gates_named():
    from services.actions.catalog import VOCABULARY

    p = Policy.from_dict({"defaults": {"gates": {"live": [{"metric": "drift_share", "max_value": 0.5}]}}},
                         VOCABULARY)
    assert p.defaults.live_gates[0].metric == "drift_share"
