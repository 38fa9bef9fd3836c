"""The policy's scaling floor over the real parts (issue 12): the KServe adapter against the API double, the load
read from the real prediction log (SQLite) through the metrics source. A maximum below what the current load
needs is refused and audited and nothing is sent; one at or above it is planned and applied; raising the maximum
is never held back; with no floor in the policy the same lowering is planned."""

from __future__ import annotations

from datetime import timedelta

import pytest

from services.errors import PreconditionFailed
from services.predictions import PredictionRow
from tests.conftest import MODEL, TEST_POLICY
from tests.integration.test_scaling_kserve import EP, NAME, NS, kserve_container

FLOOR = {**TEST_POLICY, "defaults": {**TEST_POLICY["defaults"],
                                     "scaling": {"floor": True, "headroom": 1.25, "window_minutes": 5}}}


@pytest.fixture(params=[True, False], ids=["floor", "no-floor"])
def kc(request, registry_template, tmp_path, k8s_double, clock):
    for c in kserve_container(registry_template, tmp_path, k8s_double, clock, standard=False,
                              predictor={"maxReplicas": 8, "scaleMetric": "concurrency", "scaleTarget": 1},
                              policy=FLOOR if request.param else TEST_POLICY):
        c.floor = request.param
        yield c


def _traffic(c, clock, *, per_second: int, latency_ms: float, minutes: int = 5) -> int:
    """``per_second`` requests a second answered in ``latency_ms`` over the last ``minutes`` (the policy's window)."""
    start = clock() - timedelta(minutes=minutes)
    rows = [PredictionRow(f"r{s}-{i}", 0, EP, start + timedelta(seconds=s, milliseconds=i * 10), "1", "stable",
                          MODEL, {"x": 1.0}, 0, latency_ms, 200)
            for s in range(minutes * 60) for i in range(per_second)]
    c.predictions.write(rows)
    return len(rows)


def test_a_maximum_below_the_loads_need_is_refused_and_audited_and_nothing_is_sent(kc, k8s_double, clock):
    c, alice = kc, kc.directory.get("alice")
    # 4 requests/s × 0.5 s = 2 in flight; × 1.25 headroom ÷ target 1 → a need of 3 replicas
    assert _traffic(c, clock, per_second=4, latency_ms=500) == 1200
    if c.floor:
        with pytest.raises(PreconditionFailed) as err:
            c.actions.plan(alice, "set_scaling", EP, max=2)
        msg = err.value.message
        assert "maximum of 2 is below" in msg and "3 replicas" in msg and "target 1" in msg, msg
        assert err.value.source == "policy"
        last = [e for e in c.audit.entries() if e.action == "set_scaling"][0]
        assert last.result == "refused" and "scaling floor" in last.error
    else:
        assert c.actions.plan(alice, "set_scaling", EP, max=2).params == {"max": 2}
    plan = c.actions.plan(alice, "set_scaling", EP, max=3)  # exactly the need: allowed
    c.actions.execute(plan, alice, "right-size to the load")
    assert k8s_double.get_object(NS, NAME)["spec"]["predictor"]["maxReplicas"] == 3
    assert c.actions.plan(alice, "set_scaling", EP, max=4).params == {"max": 4}  # raising is never held back
    assert c.audit.verify().ok


def test_with_no_traffic_the_floor_lets_the_maximum_go_down_to_one(kc):
    c, alice = kc, kc.directory.get("alice")
    assert c.actions.plan(alice, "set_scaling", EP, max=1).params == {"max": 1}
