"""Is an endpoint keeping up? Its replicas now, its scaling bounds and target, the autoscaler's word, requests
per replica, and a warning when it sits at its maximum while p95 latency breaks the SLO, or at zero replicas
with traffic arriving.

:func:`assess` is pure; :func:`capacity` reads the ports (serving backend, metrics source, policy).
The SLO is the endpoint's p95 ceiling in the policy: its live gate ``p95_latency_ms`` ``max_value`` (the line the
Monitoring page draws), else its alert rule on ``p95_latency_ms`` (``above``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from services.errors import ConsoleError
from services.serving import Endpoint, Scaling, ScalingStatus, ServingBackend

WINDOW = timedelta(minutes=5)
P95 = "p95_latency_ms"


@dataclass(frozen=True)
class Capacity:
    endpoint: str
    scaling: Scaling | None  # None: the backend does not report (or manage) scaling
    status: ScalingStatus
    replicas: int | None  # now (the autoscaler's current replicas, else what the backend reports)
    replicas_source: str
    request_rate: float | None  # requests per second over the window; None: unknown
    p95_ms: float | None
    slo_p95_ms: float | None
    window: timedelta = WINDOW
    warnings: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)  # what could not be read, and why

    @property
    def requests_per_replica(self) -> float | None:
        if self.request_rate is None or not self.replicas:
            return None
        return self.request_rate / self.replicas


def slo_p95(policy, endpoint: str) -> float | None:
    """The endpoint's p95 latency ceiling (ms) from the policy; None when it sets none."""
    try:
        pol = policy.for_endpoint(endpoint)
    except ConsoleError:
        return None
    for g in pol.live_gates:
        if g.metric == P95 and g.max_value is not None:
            return float(g.max_value)
    for rule in pol.alerts:
        if rule.metric == P95 and rule.above is not None:
            return float(rule.above)
    return None


def assess(ep: Endpoint, status: ScalingStatus, *, request_rate: float | None, p95_ms: float | None,
           slo_p95_ms: float | None, window: timedelta = WINDOW, notes: tuple[str, ...] = ()) -> Capacity:
    """The capacity of ``ep`` from what was read (pure)."""
    if status.current_replicas is not None:
        replicas, source = status.current_replicas, status.source or "autoscaler"
    elif ep.scaling is None and ep.replicas is not None:  # no autoscaler: the backend's own count
        replicas, source = ep.replicas, f"{ep.backend or 'serving'} backend"
    else:
        replicas, source = None, ""
    warnings = []
    top = ep.scaling.max_replicas if ep.scaling else None
    if (replicas is not None and top is not None and replicas >= top and p95_ms is not None
            and slo_p95_ms is not None and p95_ms > slo_p95_ms):
        warnings.append(f"{ep.name} runs at its maximum of {top} replica{'s' if top != 1 else ''} while p95 latency "
                        f"({p95_ms:.0f} ms) breaks its SLO ({slo_p95_ms:.0f} ms): it cannot scale further — raise "
                        "the maximum (Set scaling) or find what made it slow")
    if replicas == 0 and request_rate:
        warnings.append(f"{ep.name} is at zero replicas while traffic arrives ({request_rate:.2f} requests/s): "
                        "requests wait for a replica to start — a minimum of 1 keeps one warm")
    for c in status.conditions:
        if c.type == "ScalingLimited" and c.status == "True":
            warnings.append(f"The autoscaler is limited ({c.reason}): {c.message}".rstrip(": "))
        if c.type in ("AbleToScale", "ScalingActive") and c.status == "False":
            warnings.append(f"The autoscaler cannot scale ({c.type} {c.reason}): {c.message}".rstrip(": "))
    return Capacity(ep.name, ep.scaling, status, replicas, source, request_rate, p95_ms, slo_p95_ms, window,
                    tuple(warnings), notes)


def load(metrics, endpoint: str, now: datetime, window: timedelta = WINDOW
         ) -> tuple[float | None, float | None, str]:
    """(requests per second, p95 ms, note) over the window ending ``now``, all versions together."""
    from services.metrics.stats import combine

    try:
        aggs = metrics.aggregates(endpoint, now - window, now)
    except ConsoleError as exc:
        return None, None, f"request rate and latency unavailable ({exc.source}: {exc.message})"
    try:
        total = combine(aggs)
        p95 = total.quantile(0.95) if total is not None else None
    except (TypeError, ValueError):  # versions with different latency buckets: the worst version's p95
        total = None
        p95 = max((q for q in (a.quantile(0.95) for a in aggs) if q is not None), default=None)
    count = total.count if total is not None else sum(a.count for a in aggs)
    return count / window.total_seconds(), p95, ""


def capacity(serving: ServingBackend, metrics, policy, ep: Endpoint, now: datetime,
             window: timedelta = WINDOW) -> Capacity:
    """Read the autoscaler, the load and the SLO of ``ep`` and assess them (never raises for a source that
    cannot be read: the reason is in ``notes``)."""
    status = serving.scaling_status(ep)
    rate, p95, note = load(metrics, ep.name, now, window)
    notes = tuple(n for n in (status.note, note) if n)
    return assess(ep, status, request_rate=rate, p95_ms=p95, slo_p95_ms=slo_p95(policy, ep.name), window=window,
                  notes=notes)


# --------------------------------------------------------------------------- over time
@dataclass(frozen=True)
class CapacityHistory:
    """Replicas per version beside the request rate and p95 latency (all versions) over one window."""

    endpoint: str
    start: datetime
    end: datetime
    step: timedelta
    replicas: tuple[tuple[datetime, str, int], ...]  # (at, version, replicas): the most in each step, oldest first
    load: tuple[tuple[datetime, float, float | None], ...]  # (step start, requests/s, p95 ms)
    notes: tuple[str, ...] = ()


def bucket_replicas(samples, start: datetime, step: timedelta) -> list[tuple[datetime, str, int]]:
    """The most replicas of each version in each step (pure): a chart of days stays small, and a short peak
    still shows."""
    out: dict[tuple[datetime, str], int] = {}
    for at, version, n in samples:
        t = start + step * int((at - start) / step)
        out[(t, version)] = max(n, out.get((t, version), 0))
    return sorted(((t, v, n) for (t, v), n in out.items()), key=lambda r: (r[0], r[1]))


def history(serving: ServingBackend, metrics, endpoint: str, start: datetime, end: datetime,
            step: timedelta | None = None) -> CapacityHistory:
    """Read the replica samples and the load of ``endpoint`` over ``[start, end)`` (never raises for a source
    that cannot be read: the reason is in ``notes``)."""
    from services.metrics import default_step
    from services.metrics.stats import combine

    step = step or default_step(start, end)
    notes: list[str] = []
    try:
        replicas = bucket_replicas(serving.replica_history(endpoint, start, end), start, step)
        if not replicas and hasattr(metrics, "replica_series"):  # Prometheus: MLOPS_PROMQL_REPLICAS (the HPA's)
            try:
                replicas = bucket_replicas([(t, v or "all", int(round(n))) for t, v, n in
                                            metrics.replica_series(endpoint, start, end, step)], start, step)
            except ConsoleError as exc:
                notes.append(f"replica history from {exc.source} unavailable: {exc.message}")
        if not replicas:
            notes.append(f"the {serving.name} backend has no replica history for {endpoint} in this window"
                         + (" (the local gateway records its worker counts while it runs)"
                            if serving.name == "local" else " (it reports only what runs now)"))
    except ConsoleError as exc:
        replicas = []
        notes.append(f"replica history unavailable ({exc.source}: {exc.message})")
    load_rows: list[tuple[datetime, float, float | None]] = []
    try:
        by_step: dict[datetime, list] = {}
        for t, agg in metrics.aggregate_series(endpoint, start, end, step):
            by_step.setdefault(t, []).append(agg)
        for t in sorted(by_step):
            aggs = by_step[t]
            try:
                total = combine(aggs)
                p95 = total.quantile(0.95) if total is not None else None
            except (TypeError, ValueError):
                p95 = max((q for q in (a.quantile(0.95) for a in aggs) if q is not None), default=None)
            load_rows.append((t, sum(a.count for a in aggs) / step.total_seconds(), p95))
    except ConsoleError as exc:
        notes.append(f"request rate and latency unavailable ({exc.source}: {exc.message})")
    return CapacityHistory(endpoint, start, end, step, tuple(replicas), tuple(load_rows), tuple(notes))
