"""The Capacity block of an endpoint (Deployments page): replicas now, the scaling bounds and target, what the
autoscaler says (a HorizontalPodAutoscaler's current/desired replicas and conditions; Serverless revisions),
requests per replica, the warnings (at its maximum while p95 breaks the SLO, at zero with traffic), and the
guarded *Set scaling* action (dry run in the confirmation dialog, like every action)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard.bootstrap import container, current_actor, settings_key
from dashboard.components import MISSING, fmt_time, show_error
from services.capacity import assess, load, slo_p95
from services.errors import ConsoleError

INPUTS = ("scaling-min", "scaling-max", "scaling-target")


def _n(value, unit: str = "") -> str:
    return MISSING if value is None else f"{value}{unit}"


def _rate(value: float | None) -> str:
    return MISSING if value is None else f"{value:.2f}"


def capacity_block(ep) -> None:
    from dashboard.monitoring_view import page_now

    c = container()
    st.subheader("Capacity", anchor=False)
    try:
        status = c.serving.scaling_status(ep)  # what the autoscaler says now: not cached
        rate, p95, note = _load(settings_key(), ep.name, page_now())
        cap = assess(ep, status, request_rate=rate, p95_ms=p95, slo_p95_ms=slo_p95(c.policy, ep.name),
                     notes=tuple(n for n in (status.note, note) if n))
    except ConsoleError as exc:
        show_error(exc)
        return
    for w in cap.warnings:
        st.warning(w, icon=":material/speed:")
    s = cap.scaling
    cols = st.columns(5)
    cols[0].metric("Replicas now", _n(cap.replicas), help=f"from the {cap.replicas_source}" if cap.replicas_source
                   else "not reported")
    cols[1].metric("Min / max replicas", f"{_n(s.min_replicas)} / {_n(s.max_replicas)}" if s else MISSING,
                   help="spec.predictor minReplicas / maxReplicas (— : KServe's default)" if s else
                   "this backend does not report scaling bounds")
    cols[2].metric("Scale target", f"{_n(s.target)} {s.metric or ''}".strip() if s else MISSING,
                   help="spec.predictor scaleTarget and scaleMetric (— : KServe's default)")
    cols[3].metric("Requests/s", _rate(cap.request_rate), help=f"all versions, last {_minutes(cap)} min")
    cols[4].metric("Requests/s per replica", _rate(cap.requests_per_replica))
    slo = f" · SLO {cap.slo_p95_ms:.0f} ms (policy)" if cap.slo_p95_ms is not None else " · no p95 SLO in the policy"
    p95 = (f"p95 latency {cap.p95_ms:.0f} ms" if cap.p95_ms is not None else "p95 latency unknown (no requests)")
    st.caption(f"{p95} over the last {_minutes(cap)} min{slo}")
    _autoscaler(cap.status)
    for note in cap.notes:
        if s is not None or note != cap.status.note:  # no bounds and no autoscaler: said once, below
            st.caption(note)
    _set_scaling(ep)


@st.cache_data(ttl=10, show_spinner=False)
def _load(k: str, endpoint: str, now):
    """Requests/s and p95 over the 5 minutes before ``now`` (rounded up to 10 s: sessions share the read)."""
    return load(container().metrics, endpoint, now)


def _minutes(cap) -> int:
    return int(cap.window.total_seconds() // 60)


def _autoscaler(status) -> None:
    if status.current_replicas is not None or status.desired_replicas is not None:
        st.markdown(f"**{status.source}** — current replicas **{_n(status.current_replicas)}**, desired "
                    f"**{_n(status.desired_replicas)}**")
    if status.conditions:
        st.dataframe(pd.DataFrame([{"condition": cd.type, "status": cd.status, "reason": cd.reason or MISSING,
                                    "message": cd.message or MISSING, "since": fmt_time(cd.last_transition)}
                                   for cd in status.conditions]), hide_index=True, key="autoscaler-conditions")
    if status.revisions:
        st.dataframe(pd.DataFrame([{"revision": r, "traffic %": _n(p), "replicas": _n(n)}
                                   for r, p, n in status.revisions]), hide_index=True, key="capacity-revisions")


def _fresh(ep) -> None:
    seen = (ep.name, ep.resource_version)
    if st.session_state.get("scaling-state") != seen:
        for k in INPUTS:
            st.session_state.pop(k, None)
        st.session_state["scaling-state"] = seen


def _set_scaling(ep) -> None:
    from dashboard.actions_ui import _button, start

    if ep.scaling is None:
        st.caption(f"{ep.backend} backend: scaling is not managed by the console here (it reports no replica "
                   "bounds), so there is nothing to set.")
        return
    _fresh(ep)
    refusal = container().actions.permissions(current_actor(), ep.name)["set_scaling"]
    if ep.read_only:
        refusal = f"the endpoint is read-only: {ep.read_only_reason}"
    s = ep.scaling
    with st.container(border=True):
        st.markdown("**Set scaling**")
        st.caption("Only what differs from now changes; the dry run shows the exact request first.")
        a, b, t = st.columns(3)
        lo = a.number_input("Minimum replicas", min_value=0, max_value=100, step=1, value=s.min_replicas,
                            key="scaling-min")
        hi = b.number_input("Maximum replicas", min_value=1, max_value=100, step=1, value=s.max_replicas,
                            key="scaling-max")
        target = t.number_input(f"Target ({s.metric or 'default metric'})", min_value=1, max_value=100_000, step=1,
                                value=s.target, key="scaling-target")
        if _button("Set scaling", "action-scaling", refusal, ":material/tune:"):
            start("set_scaling", ep.name, min=lo, max=hi, target=target)
