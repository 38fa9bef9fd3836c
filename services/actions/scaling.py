"""``set_scaling``: change an endpoint's scaling bounds and target (minimum and maximum replicas, the autoscaler's
target), a guarded action like any other (roles and approval from the policy, dry run with the backend's exact
request, compare-and-set, audit). What serves does not change.

Refused before anything is sent: negatives, fractions and text (Invalid), a maximum above :data:`MAX_REPLICAS`,
a minimum above the maximum (the one given or the current one), and a change that changes nothing
(PreconditionFailed); an endpoint whose backend does not report scaling is refused with PreconditionFailed.

Where the policy sets a scaling floor (``scaling: {floor: true}``, :mod:`services.policy_scaling`), a maximum
lowered below what the current load needs is refused (PreconditionFailed), and so is lowering it when the load
cannot be read. The need (:func:`load_need`, pure): requests in flight (Little's law: rate × mean latency over the
policy's window) per the scale target for ``concurrency``, the rate per target for ``rps``, and the replicas the
autoscaler runs now for anything else (CPU and memory targets say nothing about requests); times the headroom.
"""

from __future__ import annotations

import math
import re
from dataclasses import replace
from datetime import timedelta
from typing import Any

from services.actions.plan import SOURCE, Plan, plan_hash
from services.actions.planning import Planning
from services.errors import ConsoleError, Invalid, PreconditionFailed, Unavailable
from services.identity import Actor
from services.serving import Change, Scaling

MAX_REPLICAS = 100  # a larger bound is a capacity decision for the cluster's owners, not a console click
MAX_TARGET = 100_000
FIELDS = (("min_replicas", "minimum replicas"), ("max_replicas", "maximum replicas"), ("metric", "scale metric"),
          ("target", "scale target"))


def parse_count(value: Any, what: str, *, low: int, high: int) -> int | None:
    """A whole number from ``low`` to ``high``; None when not given. Refuses fractions, booleans and text."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    msg = f"{what} must be a whole number from {low} to {high}, got {value!r}"
    if isinstance(value, bool):
        raise Invalid(msg, source=SOURCE)
    if isinstance(value, int):
        n = value
    elif isinstance(value, float) and value.is_integer():
        n = int(value)
    elif isinstance(value, str) and re.fullmatch(r"\s*-?[0-9]+\s*", value):
        n = int(value)
    else:
        raise Invalid(msg, source=SOURCE)
    if not low <= n <= high:
        raise Invalid(msg + (f" (more than {MAX_REPLICAS} replicas is a decision for the cluster's owners)"
                             if n > high and high == MAX_REPLICAS else ""), source=SOURCE)
    return n


def requested(min: Any = None, max: Any = None, target: Any = None) -> Scaling:  # noqa: A002 - the CLI's flags
    new = Scaling(parse_count(min, "the minimum replicas", low=0, high=MAX_REPLICAS),
                  parse_count(max, "the maximum replicas", low=1, high=MAX_REPLICAS), None,
                  parse_count(target, "the scale target", low=1, high=MAX_TARGET))
    if new == Scaling():
        raise Invalid("set scaling needs at least one of: minimum replicas, maximum replicas, target", source=SOURCE)
    return new


def set_scaling(p: Planning, spec, actor: Actor, endpoint: str, min: Any = None, max: Any = None,  # noqa: A002
                target: Any = None) -> Plan:
    """The new bounds and target of ``endpoint`` (only what is given changes)."""
    ep = p.endpoint(endpoint)
    new = requested(min, max, target)
    if ep.scaling is None:
        raise PreconditionFailed(f"{p.serving.name} backend: scaling is not managed by the console for {ep.name} "
                                 "(it reports no replica bounds)", source=p.serving.source)
    cur = ep.scaling
    after = cur.merged(new)
    if after.min_replicas is not None and after.max_replicas is not None and after.min_replicas > after.max_replicas:
        which = "" if new.min_replicas is not None and new.max_replicas is not None else (
            " (the current maximum)" if new.max_replicas is None else " (the current minimum)")
        raise Invalid(f"the minimum replicas ({after.min_replicas}) would be above the maximum "
                      f"({after.max_replicas}){which}", source=SOURCE)
    if after == cur:
        raise PreconditionFailed(f"{ep.name} already scales with {describe(cur)}: nothing to change", source=SOURCE)
    only = Scaling(*(getattr(new, f) if getattr(new, f) != getattr(cur, f) else None for f, _ in FIELDS))
    if only.max_replicas is not None and cur.max_replicas is not None and only.max_replicas < cur.max_replicas:
        check_floor(p, ep, after)
    warnings = []
    if only.min_replicas == 0:
        warnings.append(f"a minimum of 0 lets {ep.name} scale to zero: the first request after a quiet spell waits "
                        "for a replica to start (a cold start)")
    if only.max_replicas is not None and cur.max_replicas is not None and only.max_replicas < cur.max_replicas:
        warnings.append(f"lowering the maximum from {cur.max_replicas} to {only.max_replicas} caps what {ep.name} "
                        "can serve under load: latency grows once every replica is busy")
    try:
        champion = p.champion(ep.model) if ep.model else None
    except Unavailable as exc:
        champion = None
        warnings.append(f"the registry is unreachable ({exc.message}); changing scaling does not need it")
    params = {"min": only.min_replicas, "max": only.max_replicas, "target": only.target}
    params = {k: v for k, v in params.items() if v is not None}
    change = Change("set_scaling", ep.resource_version, scaling=only)
    plan = p.finish(spec, actor, ep, change, params, None, champion, None, warnings)
    traffic = [r for r in plan.endpoint_diff if r["field"] == "traffic"]
    rows = [{"field": f, "before": getattr(cur, f), "after": getattr(after, f),
             "changed": getattr(cur, f) != getattr(after, f)} for f, _ in FIELDS]
    before = {**plan.before, "scaling": cur.as_dict()}
    after_d = {**plan.after, "scaling": after.as_dict()}
    bound = {"action": spec.name, "endpoint": ep.name, "model": ep.model, "params": params, "before": before,
             "after": after_d, "registry_changes": []}
    return replace(plan, before=before, after=after_d, endpoint_diff=rows + traffic, plan_hash=plan_hash(bound))


def load_need(scaling: Scaling, *, rate: float | None, mean_ms: float | None, replicas: int | None,
              headroom: float, default_metric: str = "concurrency") -> tuple[int | None, str]:
    """(replicas the load needs, how that was worked out); None when it cannot be known (pure)."""
    metric = scaling.metric or default_metric
    if metric in ("concurrency", "rps") and scaling.target and rate is not None:
        if metric == "rps":
            load, what = rate, f"{rate:.2f} requests/s"
        elif rate == 0:
            return 0, "no requests"
        else:
            if mean_ms is None:
                return None, "no latency measured"
            load, what = rate * mean_ms / 1000, f"{rate:.2f} requests/s × {mean_ms:.0f} ms mean latency in flight"
        need = math.ceil(round(load * headroom / scaling.target, 9))
        return max(need, 1 if rate > 0 else 0), f"{what} ÷ target {scaling.target} × headroom {headroom:g}"
    if replicas is not None:
        plural = "s" if replicas != 1 else ""
        return replicas, f"the {replicas} replica{plural} the autoscaler runs now ({metric} target)"
    return None, "no load measured and no autoscaler count"


def check_floor(p: Planning, ep, after: Scaling) -> None:
    """Refuse a maximum below the current load's need when the policy sets a floor (see the module docstring)."""
    pol = p.policy_for(ep.name).scaling
    if not pol.floor:
        return
    source = getattr(p.live_metrics, "metrics", p.live_metrics)  # the gate metrics wrap the metrics source
    rate = mean_ms = None
    note = "no metrics source"
    if source is not None and hasattr(source, "aggregates"):
        window = timedelta(minutes=pol.window_minutes)
        now = source.clock()
        try:
            aggs = source.aggregates(ep.name, now - window, now)  # one read: the rate and the mean latency
            count = sum(a.count for a in aggs)
            rate = count / window.total_seconds()
            mean_ms = sum(a.latency_sum_ms for a in aggs) / count if count else None
        except ConsoleError as exc:
            note = f"{exc.source}: {exc.message}"
    by_load = (after.metric or "concurrency") in ("concurrency", "rps") and after.target and rate is not None
    replicas = None if by_load else p.serving.scaling_status(ep).current_replicas  # asked only when needed
    need, how = load_need(after, rate=rate, mean_ms=mean_ms, replicas=replicas, headroom=pol.headroom)
    if need is None:
        raise PreconditionFailed(f"the policy sets a scaling floor for {ep.name} and the load cannot be read "
                                 f"({note or how}): the maximum is not lowered while that is unknown",
                                 source="policy")
    if after.max_replicas is not None and after.max_replicas < need:
        raise PreconditionFailed(f"a maximum of {after.max_replicas} is below what {ep.name}'s current load needs: "
                                 f"{need} replicas ({how}, over the last {pol.window_minutes:g} min); the policy's "
                                 "scaling floor refuses it — lower it once the load has dropped", source="policy")


def describe(s: Scaling) -> str:
    def v(x) -> str:
        return "default" if x is None else str(x)

    return f"min {v(s.min_replicas)}, max {v(s.max_replicas)}, target {v(s.target)}" + (
        f" {s.metric}" if s.metric else "")
