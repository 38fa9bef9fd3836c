"""The policy's scaling floor (issue 12): its section parsed with clear refusals, and the replicas the current load
needs (pure), checked against hand-worked cases."""

from __future__ import annotations

import pytest

from services.actions.catalog import VOCABULARY
from services.actions.scaling import load_need
from services.errors import Invalid
from services.policy import Policy
from services.policy_scaling import ScalingPolicy, parse_scaling
from services.serving import Scaling


def test_no_section_means_no_floor_and_the_section_is_read_as_written():
    assert parse_scaling(None, "defaults.scaling") == ScalingPolicy(False, 1.25, 15.0)
    assert parse_scaling({"floor": True, "headroom": 1.5, "window_minutes": 5}, "x") == ScalingPolicy(True, 1.5, 5.0)
    pol = Policy.from_dict({"defaults": {"scaling": {"floor": True}},
                            "endpoints": {"quiet": {"scaling": {"floor": False}}}}, VOCABULARY)
    assert pol.for_endpoint("any").scaling.floor and not pol.for_endpoint("quiet").scaling.floor


@pytest.mark.parametrize(("raw", "says"), [
    ("yes", "must be a mapping"),
    ({"flor": True}, "unknown key(s) flor"),
    ({"floor": "true"}, "floor must be true or false"),
    ({"floor": True, "headroom": 0.5}, "headroom must be a number from 1 to 10"),
    ({"floor": True, "headroom": True}, "headroom must be a number"),
    ({"floor": True, "window_minutes": "15"}, "window_minutes must be a number from 1 to 1440"),
    ({"floor": True, "window_minutes": 10_000}, "window_minutes must be a number from 1 to 1440"),
])
def test_a_bad_section_is_refused_naming_the_key(raw, says):
    with pytest.raises(Invalid) as err:
        Policy.from_dict({"endpoints": {"é'p": {"scaling": raw}}}, VOCABULARY)
    assert says in err.value.message and "endpoints.é'p.scaling" in err.value.message


@pytest.mark.parametrize(("scaling", "rate", "mean_ms", "replicas", "need"), [
    # 4 requests/s × 0.5 s in flight = 2 concurrent; × 1.25 headroom = 2.5; ÷ target 1 → 3
    (Scaling(1, 6, "concurrency", 1), 4.0, 500.0, None, 3),
    # the same load at target 2 → ceil(1.25) = 2
    (Scaling(1, 6, "concurrency", 2), 4.0, 500.0, None, 2),
    # exactly on a boundary stays there (no float creep past it): 8 × 0.5 × 1.25 / 5 = 1.0
    (Scaling(1, 6, "concurrency", 5), 8.0, 500.0, None, 1),
    # rps: 30 requests/s × 1.25 ÷ 10 per replica → 4
    (Scaling(1, 6, "rps", 10), 30.0, 20.0, None, 4),
    # no metric named: concurrency is the default
    (Scaling(1, 6, None, 1), 4.0, 500.0, None, 3),
    # a trickle still needs one replica; nothing at all needs none
    (Scaling(0, 6, "concurrency", 100), 0.01, 10.0, None, 1),
    (Scaling(0, 6, "concurrency", 1), 0.0, None, None, 0),
    # CPU target: what the autoscaler runs now is the need
    (Scaling(1, 6, "cpu", 80), 50.0, 20.0, 4, 4),
    # no target: the autoscaler's count
    (Scaling(1, 6, "concurrency", None), 4.0, 500.0, 2, 2),
    # the load unreadable: the autoscaler's count; nothing known at all: unknown
    (Scaling(1, 6, "concurrency", 1), None, None, 3, 3),
    (Scaling(1, 6, "concurrency", 1), None, None, None, None),
    (Scaling(1, 6, "concurrency", 1), 4.0, None, None, None),
])
def test_the_need_is_the_load_per_target_with_headroom(scaling, rate, mean_ms, replicas, need):
    got, how = load_need(scaling, rate=rate, mean_ms=mean_ms, replicas=replicas, headroom=1.25)
    assert got == need, how
    assert how  # always says how it was worked out
