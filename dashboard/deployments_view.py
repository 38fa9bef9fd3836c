"""Views of the Deployments page: endpoint table, traffic and revision charts, readiness, pending requests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from dashboard import data
from dashboard.components import MISSING, fmt_time, table
from dashboard.monitoring_view import live_caption
from dashboard.nav import href, link

STABLE_C, CANARY_C = "#0969da", "#bf8700"


def _v(version) -> str:
    return f"v{version}" if version else MISSING


def traffic_chart(ep) -> go.Figure:
    parts = []
    if ep.stable_version:
        parts.append((f"stable v{ep.stable_version}", ep.stable_weight, STABLE_C))
    if ep.canary_version:
        parts.append((f"canary v{ep.canary_version}", ep.canary_weight, CANARY_C))
    fig = go.Figure([go.Bar(x=[v], y=["traffic"], orientation="h", name=lbl, text=[f"{lbl}: {v}%"],
                            marker_color=c, textposition="inside", hovertemplate=f"{lbl}: %{{x}}%<extra></extra>")
                     for lbl, v, c in parts])
    fig.update_layout(barmode="stack", height=110, margin={"l": 10, "r": 10, "t": 10, "b": 10},
                      xaxis={"range": [0, 100], "ticksuffix": "%"}, yaxis={"visible": False}, showlegend=False)
    return fig


def _by(r) -> str:
    return (r.actor or MISSING) + (f", approved by {r.approved_by}" if r.approved_by else "")


def revisions_chart(ep, now: datetime | None = None) -> go.Figure | None:
    """Stable version over time as a step line that runs up to now (the state still holds), canaries as
    diamonds; versions ordered by number on the axis."""
    revs = [r for r in reversed(ep.revisions) if r.at]
    if not revs:
        return None
    now = now or datetime.now(UTC)
    end = max(now, revs[-1].at)
    xs = [r.at for r in revs] + [end]
    stable = [r.stable_version for r in revs]
    fig = go.Figure()
    fig.add_trace(go.Scatter(
        x=xs, y=[_v(v) for v in stable] + [_v(stable[-1])], mode="lines+markers", name="stable",
        line={"shape": "hv", "color": STABLE_C}, marker={"size": [8] * len(revs) + [0]},
        customdata=[[r.name, _by(r), r.note[:80]] for r in revs] + [["now", "", "still serving"]],
        hovertemplate="%{x|%Y-%m-%d %H:%M:%S} UTC<br>stable %{y}<br>%{customdata[0]} by %{customdata[1]}"
                      "<br>%{customdata[2]}<extra></extra>"))
    cx = [r for r in revs if r.canary_version]
    if cx:
        fig.add_trace(go.Scatter(
            x=[r.at for r in cx], y=[_v(r.canary_version) for r in cx], mode="markers", name="canary",
            marker={"color": CANARY_C, "size": 11, "symbol": "diamond"},
            customdata=[[r.canary_weight, r.name, _by(r)] for r in cx],
            hovertemplate="%{x|%Y-%m-%d %H:%M:%S} UTC<br>canary %{y} at %{customdata[0]}%<br>%{customdata[1]} by "
                          "%{customdata[2]}<extra></extra>"))
    versions = {v for r in revs for v in (r.stable_version, r.canary_version) if v}
    order = [_v(v) for v in sorted(versions, key=lambda v: (len(v), v))]
    span = max(end - xs[0], timedelta(minutes=10))
    fig.update_layout(height=280, margin={"l": 10, "r": 10, "t": 30, "b": 10}, yaxis_title="version",
                      yaxis={"type": "category", "categoryorder": "array", "categoryarray": order},
                      xaxis={"range": [xs[0] - span * 0.05, end + span * 0.02], "nticks": 6},
                      legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0})
    return fig


def overview_table(views, repairs: dict | None = None) -> None:
    """``repairs``: endpoint -> what needs repair there (services.actions.stalled.Finding)."""
    repairs = repairs or {}
    rows = [{
        "Endpoint": v.endpoint.name,
        "Open": href("deployments", endpoint=v.endpoint.name),
        "Model": v.endpoint.model or "unknown",
        "Stable": _v(v.endpoint.stable_version),
        "Canary": f"v{v.endpoint.canary_version} @ {v.endpoint.canary_weight}%" if v.endpoint.canary_version
        else MISSING,
        "Champion": _v(v.champion),
        "Ready": "yes" if v.endpoint.ready else "NO",
        "Registry": ("NEEDS REPAIR: " + repairs[v.endpoint.name].short if v.endpoint.name in repairs
                     else "agrees" if v.agrees else "DISAGREES: " + "; ".join(v.warnings)),
    } for v in views]
    table(pd.DataFrame(rows), key="endpoints-table", file_name="endpoints.csv",
          column_config={"Open": st.column_config.LinkColumn("Open", display_text="open ↗")})


def header(view, pending: list[dict], repairs: list | None = None) -> None:
    from dashboard.repair_view import in_progress, repair_box

    ep = view.endpoint
    st.header(ep.name, anchor=False)
    for f in repairs or []:
        repair_box(f, key="endpoint")
    in_progress(ep.name)
    for w in view.warnings if not repairs else [w for w in view.warnings if "champion" not in w]:  # said above
        st.warning(w, icon=":material/sync_problem:")
    for w in view.input_warnings:
        st.warning(f"**Canary input mismatch** — {w}.", icon=":material/report:")
    for r in pending:
        st.info(f"Request [#{r['id']}]({href('approvals', status='pending', request=r['id'])}) by **{r['requester']}** "
                f"waits for approval: {r['action'].replace('_', ' ')} "
                f"{', '.join(f'{k} {v}' for k, v in r['params'].items())} (expires {fmt_time(r['expires_at'])}).",
                icon=":material/hourglass_top:")
    if ep.read_only:
        st.info(f"Read-only: {ep.read_only_reason}", icon=":material/lock:")
    c = st.columns(5)
    c[0].metric("Stable", _v(ep.stable_version))
    c[1].metric("Canary", _v(ep.canary_version) if ep.canary_version else "none",
                f"{ep.canary_weight}% traffic" if ep.canary_version else None, delta_color="off", delta_arrow="off")
    c[2].metric("Champion (registry)", _v(view.champion))
    c[3].metric("Ready", "yes" if ep.ready else "no")
    c[4].metric("Replicas", ep.replicas if ep.replicas is not None else MISSING)
    live_caption(ep.name)
    retraining_caption(ep.name)
    if ep.model:
        cols = st.columns(3)
        with cols[0]:
            link("models", f"Model {ep.model}", icon=":material/history:", model=ep.model)
        if ep.stable_version:
            with cols[1]:
                link("models", f"Stable v{ep.stable_version}", model=ep.model, version=ep.stable_version)
        if ep.canary_version:
            with cols[2]:
                link("models", f"Canary v{ep.canary_version}", model=ep.model, version=ep.canary_version)
    st.plotly_chart(traffic_chart(ep), key="traffic-chart")


def retraining_caption(endpoint: str) -> None:
    """The endpoint's latest retraining, if any: run, state, who started it, when (services.retraining)."""
    from dashboard.bootstrap import container
    from services.errors import ConsoleError
    from services.retraining.usecases import last_run

    c = container()
    try:
        last = last_run(c.retrainer, c.audit, endpoint)
    except ConsoleError as exc:
        st.caption(f"Last retraining: cannot be read ({exc.source}: {exc.message})")
        return
    if last is None:
        return
    st.caption(f"Last retraining: run `{last['run_id']}` of {_v(last['parent_version'])}, **{last['state']}**"
               + (f" → {_v(last['new_version'])} (challenger)" if last["new_version"] else "")
               + f", started by {last['by']}, {fmt_time(last['at'])}"
               + (f" — {last['state_note']}" if last["state_note"] else ""))


def history_and_readiness(ep) -> None:
    left, right = st.columns([3, 2])
    with left:
        st.subheader("Revisions", anchor=False)
        fig = revisions_chart(ep)
        if fig:
            st.plotly_chart(fig, key="revisions-chart")
        if ep.revisions:
            table(pd.DataFrame([{"revision": r.name, "at": fmt_time(r.at), "stable": _v(r.stable_version),
                                 "canary": _v(r.canary_version), "canary %": r.canary_weight,
                                 "by": r.actor or MISSING, "approved by": r.approved_by or MISSING,
                                 "note": r.note or MISSING} for r in ep.revisions]),
                  key="revisions-table", file_name=f"{ep.name.replace('/', '_')}-revisions.csv")
    with right:
        st.subheader("Readiness", anchor=False)
        for cd in ep.conditions:
            icon = {"True": ":material/check_circle:", "False": ":material/cancel:"}.get(cd.status,
                                                                                        ":material/help:")
            with st.container(border=True):
                st.markdown(f"{icon} **{cd.type}**: {cd.status}" + (f" · {cd.reason}" if cd.reason else ""))
                if cd.message:
                    st.caption(cd.message)  # the whole message, wrapped: never cut off
                st.caption(f"since {fmt_time(cd.last_transition)}")
        st.caption(f"URL: `{ep.url or MISSING}` · backend `{ep.backend}` · state version `{ep.resource_version}`")
        if ep.extra:
            with st.expander("Backend details"):
                st.dataframe(pd.DataFrame([{"field": k.replace("_", " "), "value": str(v)}
                                           for k, v in ep.extra.items()]), hide_index=True, key="backend-details")


def endpoint_detail(name: str, view=None, repairs: list | None = None) -> None:
    """One endpoint: header, history and readiness, capacity, actions. ``repairs``: what the page already read
    needs repair (every endpoint's findings), so it is not read twice in one run."""
    from dashboard.actions_ui import actions_panel
    from dashboard.bootstrap import container

    if view is None:
        with st.spinner(f"Reading {name}…"):
            view = data.endpoint_view(name)
    from dashboard.repair_view import findings

    pending = container().actions.requests(status="pending", endpoint=view.endpoint.name)
    ep = view.endpoint.name
    header(view, pending, findings(ep) if repairs is None else [f for f in repairs if f.endpoint == ep])
    history_and_readiness(view.endpoint)
    from dashboard.capacity_view import capacity_block

    capacity_block(view.endpoint)
    st.divider()
    actions_panel(view, pending)
