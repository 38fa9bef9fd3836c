"""Capacity (issue 12): the set_scaling action's validation and plan on fakes, its KServe patches (pure, fitted
to the vendored CRDs), and the capacity assessment (pure)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from services.actions.catalog import VOCABULARY
from services.capacity import assess, slo_p95
from services.errors import Invalid, PermissionDenied, PreconditionFailed
from services.policy import Policy
from services.serving import Change, Condition, Endpoint, Scaling, ScalingStatus
from services.serving.kserve import build_patches, endpoint_from_isvc
from services.serving.kserve.mapping import hpa_status
from tests.k8s_double import samples as s
from tests.k8s_double.crd import KSERVE_CRD_VERSIONS, kserve_crd_path, load_crd_schema, schema_errors, validator
from tests.k8s_double.server import apply_json_patch
from tests.unit.test_actions_usecases import EP, World


@pytest.fixture
def w():
    world = World()
    ep = world.serving.endpoints[EP]
    world.serving.endpoints[EP] = replace(ep, scaling=Scaling(1, 3, "concurrency", 10))
    return world


# ------------------------------------------------------------------ the action on fakes
def test_set_scaling_plans_only_what_changes_and_applies_it_with_an_audit_entry(w):
    plan = w.actions.plan(w.who("alice"), "set_scaling", EP, min="2", max=5, target=None)
    assert plan.params == {"min": 2, "max": 5} and not plan.needs_approval
    rows = {r["field"]: (r["before"], r["after"], r["changed"]) for r in plan.endpoint_diff}
    assert rows["min_replicas"] == (1, 2, True) and rows["max_replicas"] == (3, 5, True)
    assert rows["target"] == (10, 10, False) and rows["traffic"][2] is False
    assert plan.before["scaling"]["max_replicas"] == 3 and plan.after["scaling"]["max_replicas"] == 5
    assert plan.change.scaling == Scaling(2, 5, None, None)
    out = w.actions.execute(plan, w.who("alice"), "more headroom")
    assert out.status == "applied"
    assert w.serving.get_endpoint(EP).scaling == Scaling(2, 5, "concurrency", 10)
    assert w.trail()[-1] == ("alice", "set_scaling", "ok")
    assert w.state()[:3] == ("1", "2", 20)  # what serves did not change


def test_a_plan_made_before_someone_else_changed_the_endpoint_conflicts(w):
    plan = w.actions.plan(w.who("alice"), "set_scaling", EP, max=6)
    w.act("alice", "set_scaling", min=2)
    with pytest.raises(Exception, match="changed since"):
        w.actions.execute(plan, w.who("alice"), "late")
    assert w.serving.get_endpoint(EP).scaling.max_replicas == 3
    assert w.trail()[-1] == ("alice", "set_scaling", "conflict")


@pytest.mark.parametrize("params, error, text", [
    ({"min": 4}, Invalid, r"minimum replicas \(4\) would be above the maximum \(3\) \(the current maximum\)"),
    ({"min": 5, "max": 2}, Invalid, r"minimum replicas \(5\) would be above the maximum \(2\)$"),
    ({"min": -1}, Invalid, "minimum replicas must be a whole number from 0 to 100"),
    ({"max": "2.5"}, Invalid, "maximum replicas must be a whole number"),
    ({"max": 2.5}, Invalid, "maximum replicas must be a whole number"),
    ({"target": True}, Invalid, "scale target must be a whole number"),
    ({"target": "ten"}, Invalid, "scale target must be a whole number"),
    ({"max": 0}, Invalid, "maximum replicas must be a whole number from 1"),
    ({"max": 101}, Invalid, "decision for the cluster's owners"),
    ({}, Invalid, "needs at least one of"),
    ({"min": 1, "max": 3, "target": 10}, PreconditionFailed, "already scales with min 1, max 3, target 10"),
])
def test_bad_or_empty_scaling_is_refused_and_audited(w, params, error, text):
    with pytest.raises(error, match=text):
        w.actions.plan(w.who("alice"), "set_scaling", EP, **params)
    assert w.trail()[-1] == ("alice", "set_scaling", "refused")
    assert w.serving.get_endpoint(EP).scaling == Scaling(1, 3, "concurrency", 10)


def test_a_backend_without_scaling_refuses_and_viewers_may_not_scale():
    world = World()  # the fake's endpoint reports no scaling, as the local backend
    with pytest.raises(PreconditionFailed, match="fake backend: scaling is not managed by the console"):
        world.actions.plan(world.who("alice"), "set_scaling", EP, max=3)
    with pytest.raises(PermissionDenied, match="may not set scaling"):
        world.actions.plan(world.who("carol"), "set_scaling", EP, max=3)
    assert world.trail()[-2:] == [("alice", "set_scaling", "refused"), ("carol", "set_scaling", "refused")]


def test_the_demo_policy_gives_set_scaling_to_operators_without_approval():
    from pathlib import Path

    pol = Policy.load(Path(__file__).resolve().parents[2] / "deploy" / "policy.yaml", VOCABULARY)
    ep = pol.for_endpoint("cancer-screening")
    assert ep.roles_for("set_scaling") == ("operator",) and not ep.needs_approval("set_scaling")


# ------------------------------------------------------------------ KServe: read and patch (pure)
def _fits(obj: dict, versions=KSERVE_CRD_VERSIONS) -> None:
    for v in versions:
        errors = schema_errors(obj, validator(load_crd_schema(str(kserve_crd_path(v)))))
        assert not errors, errors


def test_kserve_scaling_is_read_from_the_predictor():
    obj = s.serverless()
    obj["spec"]["predictor"].update({"maxReplicas": 4, "scaleMetric": "rps", "scaleTarget": 50})
    assert endpoint_from_isvc(obj).scaling == Scaling(1, 4, "rps", 50)
    assert endpoint_from_isvc(s.standard()).scaling == Scaling(4, None, None, None)


def test_kserve_set_scaling_patch_is_exact_and_fits_the_crds():
    obj = s.serverless()
    change = Change("set_scaling", "7", scaling=Scaling(2, 5, None, 20))
    (body,) = build_patches(obj, change)
    assert body == [{"op": "test", "path": "/metadata/resourceVersion", "value": "7"},
                    {"op": "replace", "path": "/spec/predictor/minReplicas", "value": 2},
                    {"op": "add", "path": "/spec/predictor/maxReplicas", "value": 5},
                    {"op": "add", "path": "/spec/predictor/scaleTarget", "value": 20}]
    patched = apply_json_patch(obj, body)
    _fits(patched)
    assert endpoint_from_isvc(patched).scaling == Scaling(2, 5, None, 20)


def test_kserve_refuses_scale_to_zero_in_standard_mode_and_a_no_op():
    with pytest.raises(PreconditionFailed, match="cannot scale to zero"):
        build_patches(s.standard(), Change("set_scaling", "7", scaling=Scaling(0, None, None, None)))
    with pytest.raises(PreconditionFailed, match="already has these scaling values"):
        build_patches(s.standard(), Change("set_scaling", "7", scaling=Scaling(4, None, None, None)))
    (body,) = build_patches(s.serverless(), Change("set_scaling", "7", scaling=Scaling(0, None, None, None)))
    assert body[1] == {"op": "replace", "path": "/spec/predictor/minReplicas", "value": 0}


def test_hpa_status_reads_current_desired_and_conditions():
    st = hpa_status({"metadata": {"namespace": "ml", "name": "iris-predictor"},
                     "status": {"currentReplicas": 3, "desiredReplicas": 5, "conditions": [
                         {"type": "ScalingLimited", "status": "True", "reason": "TooManyReplicas",
                          "message": "the desired replica count is more than the maximum replica count"}]}})
    assert (st.source, st.current_replicas, st.desired_replicas) == ("HorizontalPodAutoscaler ml/iris-predictor", 3, 5)
    assert st.conditions[0].reason == "TooManyReplicas"


# ------------------------------------------------------------------ the capacity assessment (pure)
BOUNDS = Scaling(1, 3, "concurrency", 10)


def _ep(scaling: Scaling = BOUNDS, replicas=None) -> Endpoint:
    return Endpoint("ml/iris", "m", "1", scaling=scaling, replicas=replicas, backend="kserve")


def test_at_its_maximum_while_p95_breaks_the_slo_warns_and_not_otherwise():
    hpa = ScalingStatus(source="HorizontalPodAutoscaler ml/iris-predictor", current_replicas=3, desired_replicas=3)
    cap = assess(_ep(), hpa, request_rate=12.0, p95_ms=800.0, slo_p95_ms=500.0)
    assert cap.replicas == 3 and cap.requests_per_replica == pytest.approx(4.0)
    assert len(cap.warnings) == 1 and "at its maximum of 3 replicas" in cap.warnings[0]
    assert "800 ms" in cap.warnings[0] and "500 ms" in cap.warnings[0]
    assert not assess(_ep(), hpa, request_rate=12.0, p95_ms=400.0, slo_p95_ms=500.0).warnings
    below = replace(hpa, current_replicas=2)
    assert not assess(_ep(), below, request_rate=12.0, p95_ms=800.0, slo_p95_ms=500.0).warnings


def test_zero_replicas_with_traffic_warns_and_a_limited_autoscaler_is_said():
    zero = ScalingStatus(source="x", current_replicas=0)
    cap = assess(_ep(Scaling(0, 3, None, None)), zero, request_rate=0.5, p95_ms=None, slo_p95_ms=None)
    assert cap.requests_per_replica is None and "zero replicas while traffic arrives" in cap.warnings[0]
    assert not assess(_ep(Scaling(0, 3, None, None)), zero, request_rate=0.0, p95_ms=None, slo_p95_ms=None).warnings
    limited = ScalingStatus(source="x", current_replicas=3, conditions=(
        Condition("ScalingLimited", "True", "TooManyReplicas", "desired is more than the maximum"),))
    assert "The autoscaler is limited (TooManyReplicas)" in assess(
        _ep(), limited, request_rate=1.0, p95_ms=None, slo_p95_ms=None).warnings[0]


def test_a_backend_without_autoscaler_reports_its_own_replicas_and_a_serverless_one_unknown():
    local = Endpoint("screening", "m", "1", replicas=2, backend="local")
    cap = assess(local, ScalingStatus(note="none"), request_rate=3.0, p95_ms=None, slo_p95_ms=None,
                 window=timedelta(minutes=5))
    assert (cap.replicas, cap.replicas_source, cap.requests_per_replica) == (2, "local backend", 1.5)
    assert assess(_ep(replicas=1), ScalingStatus(), request_rate=3.0, p95_ms=None, slo_p95_ms=None).replicas is None


def test_the_slo_comes_from_the_policy_live_gate_or_else_the_p95_alert_rule():
    pol = Policy.from_dict({"endpoints": {"a": {"gates": {"live": [{"metric": "p95_latency_ms", "max_value": 300}]}},
                                          "b": {"alerts": [{"name": "slo", "metric": "p95_latency_ms",
                                                            "window": "5m", "above": 450}]}}}, VOCABULARY)
    assert (slo_p95(pol, "a"), slo_p95(pol, "b"), slo_p95(pol, "c")) == (300.0, 450.0, None)


class _Metrics:
    """The metrics port's ``aggregates`` only (what the capacity view reads)."""

    def __init__(self, aggs=(), error=None):
        self.aggs, self.error, self.asked = list(aggs), error, []

    def aggregates(self, endpoint, start, end):
        self.asked.append((endpoint, end - start))
        if self.error:
            raise self.error
        return self.aggs


def _agg(version: str, role: str, count: int, slow_bucket: int):
    from services.metrics.stats import LATENCY_BUCKETS_MS, Aggregate

    buckets = [0.0] * len(LATENCY_BUCKETS_MS)
    buckets[slow_bucket] = float(count)
    return Aggregate(version, role, count=count, buckets=tuple(buckets))


def test_capacity_reads_load_over_five_minutes_and_warns_at_the_maximum():
    from services.capacity import capacity, load
    from services.errors import Unavailable
    from services.metrics.stats import LATENCY_BUCKETS_MS
    from tests.fakes import FakeServing

    slow = next(i for i, b in enumerate(LATENCY_BUCKETS_MS) if b > 500)
    metrics = _Metrics([_agg("1", "stable", 2400, slow), _agg("2", "canary", 600, slow)])
    rate, p95, note = load(metrics, "ml/iris", _now())
    assert rate == pytest.approx(3000 / 300) and p95 > 500 and note == ""
    assert metrics.asked == [("ml/iris", timedelta(minutes=5))]

    class AtMax(FakeServing):
        def scaling_status(self, endpoint):
            return ScalingStatus(source="HorizontalPodAutoscaler ml/iris-predictor", current_replicas=3)

    pol = Policy.from_dict({"endpoints": {"ml/iris": {"gates": {"live": [
        {"metric": "p95_latency_ms", "max_value": 500}]}}}}, VOCABULARY)
    cap = capacity(AtMax(), metrics, pol, _ep(), _now())
    assert cap.requests_per_replica == pytest.approx(10 / 3) and "at its maximum of 3" in cap.warnings[0]
    down = _Metrics(error=Unavailable("no answer", source="Prometheus"))
    cap = capacity(FakeServing(), down, pol, _ep(), _now())
    assert cap.request_rate is None and not cap.warnings
    assert cap.notes == ("the fake backend reports no autoscaler",
                         "request rate and latency unavailable (Prometheus: no answer)")


def _now():
    from datetime import UTC, datetime

    return datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def test_a_stopped_set_scaling_is_judged_by_its_bounds_not_by_what_serves():
    from services.actions.stalled import APPLIED, NOT_APPLIED, Stalled, outcome

    serving = {"stable_version": "1", "canary_version": None, "canary_weight": 0}
    before, after = BOUNDS.as_dict(), Scaling(1, 5, "concurrency", 10).as_dict()
    item = Stalled("ml/iris", "m", "set_scaling", "Set scaling", {"max": 5}, "alice", None, None, None, None, _now(),
                   {**serving, "scaling": before}, {**serving, "scaling": after}, [], "its process is gone")
    assert outcome(item, {**serving, "scaling": before}) == NOT_APPLIED
    assert outcome(item, {**serving, "scaling": after}) == APPLIED
