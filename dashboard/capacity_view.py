"""The Capacity block of an endpoint (Deployments page): replicas now, the scaling bounds and target, what the
autoscaler says (a HorizontalPodAutoscaler's current/desired replicas and conditions; Serverless revisions),
requests per replica, the warnings (at its maximum while p95 breaks the SLO, at zero with traffic), and the
guarded *Set scaling* action (dry run in the confirmation dialog, like every action)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard.bootstrap import container, current_actor, settings_key
from dashboard.components import MISSING, fmt_time, show_error
from dashboard.data import slide_end, windowed
from dashboard.shared_reads import shared_read
from services.capacity import assess, history, load, slo_p95
from services.errors import ConsoleError

INPUTS = ("scaling-min", "scaling-max", "scaling-target")
WINDOWS = {"1 h": 1, "6 h": 6, "24 h": 24}


def _n(value, unit: str = "") -> str:
    return MISSING if value is None else f"{value}{unit}"


def _rate(value: float | None) -> str:
    return MISSING if value is None else f"{value:.2f}"


def capacity_block(ep) -> None:
    from dashboard.data import page_now

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
                   help="the endpoint's minReplicas / maxReplicas (— : the backend's default; the local gateway: "
                   "min 1, max 4)" if s else
                   "this backend does not report scaling bounds")
    cols[2].metric("Scale target", f"{_n(s.target)} {s.metric or ''}".strip() if s else MISSING,
                   help="the endpoint's scaleTarget and scaleMetric (— : the backend's default; the local gateway: 1 "
                   "request in flight per replica)")
    cols[3].metric("Requests/s", _rate(cap.request_rate), help=f"all versions, last {_minutes(cap)} min")
    cols[4].metric("Requests/s per replica", _rate(cap.requests_per_replica))
    slo = f" · SLO {cap.slo_p95_ms:.0f} ms (policy)" if cap.slo_p95_ms is not None else " · no p95 SLO in the policy"
    p95 = (f"p95 latency {cap.p95_ms:.0f} ms" if cap.p95_ms is not None else "p95 latency unknown (no requests)")
    st.caption(f"{p95} over the last {_minutes(cap)} min{slo}")
    _autoscaler(cap.status)
    for note in cap.notes:
        if s is not None or note != cap.status.note:  # no bounds and no autoscaler: said once, below
            st.caption(note)
    _history(ep, cap.slo_p95_ms)
    _set_scaling(ep)


def _history(ep, slo: float | None) -> None:
    from datetime import timedelta

    from dashboard.data import page_now

    label = st.radio("Replicas over", list(WINDOWS), index=0, horizontal=True, key="capacity-window")
    end = page_now()
    with st.spinner("Reading replicas and load…"):
        h, token = _read_history(settings_key(), ep.name, end - timedelta(hours=WINDOWS.get(label, 1)), end)
    st.plotly_chart(_chart(token, slo, h), key="capacity-history")
    for note in h.notes:
        st.caption(note)


@windowed(fresh=10, stale=60)
def _read_history(k: str, endpoint: str, start, end):
    """The history, and a token naming this read (new on every read: its chart is cached by it)."""
    import uuid

    c = container()
    return history(c.serving, c.metrics, endpoint, start, end), uuid.uuid4().hex


@st.cache_resource(ttl=60, max_entries=32, show_spinner=False)
def _chart(token: str, slo: float | None, _h):  # noqa: ARG001 - the token names the read
    """The chart of one read, built once for every session that shows it (shared as it is: Streamlit only reads
    a figure it draws)."""
    return history_chart(_h, slo)


def history_chart(h, slo: float | None):
    """Replicas per version (steps) over request rate and p95 latency, one shared time axis."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=3, cols=1, shared_xaxes=True, vertical_spacing=0.06,
                        subplot_titles=("Replicas", "Requests/s (all versions)", "p95 latency (ms)"))
    for version in sorted({v for _, v, _ in h.replicas}, key=lambda v: (len(v), v)):
        pts = []
        for t, v, n in h.replicas:
            if v == version:
                if pts and t - pts[-1][0] > 2 * h.step:  # no samples: the gateway was not running — a gap
                    pts.append((pts[-1][0] + h.step, None))
                pts.append((t, n))
        who = "all versions" if version == "all" else f"v{version}"  # "all": the autoscaler's count (Prometheus)
        fig.add_trace(go.Scatter(x=[t for t, _ in pts], y=[n for _, n in pts], name=f"{who} replicas",
                                 mode="lines", line_shape="hv",
                                 hovertemplate="%{x}<br>" + who + ": %{y} replicas<extra></extra>"), 1, 1)
    fig.add_trace(go.Scatter(x=[t for t, _, _ in h.load], y=[r for _, r, _ in h.load], name="requests/s",
                             mode="lines", hovertemplate="%{x}<br>%{y:.2f} requests/s<extra></extra>"), 2, 1)
    fig.add_trace(go.Scatter(x=[t for t, _, _ in h.load], y=[p for _, _, p in h.load], name="p95 ms",
                             mode="lines", connectgaps=False,
                             hovertemplate="%{x}<br>p95 %{y:.0f} ms<extra></extra>"), 3, 1)
    if slo is not None:
        fig.add_hline(y=slo, line_dash="dot", line_color="red", annotation_text=f"SLO {slo:.0f} ms", row=3, col=1)
    fig.update_xaxes(range=[h.start, h.end])
    fig.update_yaxes(rangemode="tozero")
    fig.update_yaxes(dtick=1, row=1, col=1)
    fig.update_layout(height=520, hovermode="x unified", margin={"t": 40, "b": 20, "l": 10, "r": 10},
                      legend={"orientation": "h", "y": -0.08})
    return fig


@shared_read(fresh=10, stale=60, key=lambda k, endpoint, now: (k, endpoint), slide=slide_end,
             kind="telemetry")  # the last 5 minutes
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
