"""What serves where: endpoints, traffic split, readiness, revisions, registry agreement, guarded actions.
``/deployments?endpoint=NAME`` opens one endpoint."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from dashboard import data, state
from dashboard.actions_ui import resume, start
from dashboard.bootstrap import container, current_actor
from dashboard.components import fmt_time, guard, show_error, table
from dashboard.nav import href, link
from services.errors import ConsoleError

STABLE_C, CANARY_C = "#0969da", "#bf8700"
ACTION_INPUTS = ("promote-version", "canary-version", "canary-weight", "rollback-version")


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


def revisions_chart(ep) -> go.Figure | None:
    revs = [r for r in reversed(ep.revisions) if r.at]
    if len(revs) < 1:
        return None
    xs = [r.at for r in revs]
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=xs, y=[f"v{r.stable_version}" for r in revs], mode="lines+markers", name="stable",
                             line={"shape": "hv", "color": STABLE_C},
                             customdata=[[r.name, r.actor or "", r.note[:80]] for r in revs],
                             hovertemplate="%{x}<br>stable %{y}<br>%{customdata[0]} by %{customdata[1]}"
                                           "<br>%{customdata[2]}<extra></extra>"))
    cx = [(r.at, f"v{r.canary_version}", r.canary_weight, r.name) for r in revs if r.canary_version]
    if cx:
        fig.add_trace(go.Scatter(x=[c[0] for c in cx], y=[c[1] for c in cx], mode="markers", name="canary",
                                 marker={"color": CANARY_C, "size": 11, "symbol": "diamond"},
                                 customdata=[[c[2], c[3]] for c in cx],
                                 hovertemplate="%{x}<br>canary %{y} at %{customdata[0]}%<br>%{customdata[1]}"
                                               "<extra></extra>"))
    fig.update_layout(height=280, margin={"l": 10, "r": 10, "t": 30, "b": 10}, yaxis_title="version",
                      yaxis={"type": "category"}, xaxis={"tickformat": "%b %d %H:%M", "nticks": 6},
                      legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0})
    if len(xs) == 1:  # one point: give the time axis a sensible span instead of sub-millisecond ticks
        from datetime import timedelta

        fig.update_xaxes(range=[xs[0] - timedelta(hours=1), xs[0] + timedelta(hours=1)])
    return fig


def overview_table(views) -> None:
    rows = [{
        "Endpoint": v.endpoint.name,
        "Open": href("deployments", endpoint=v.endpoint.name),
        "Model": v.endpoint.model or "unknown",
        "Stable": f"v{v.endpoint.stable_version}" if v.endpoint.stable_version else "—",
        "Canary": f"v{v.endpoint.canary_version} @ {v.endpoint.canary_weight}%" if v.endpoint.canary_version else "—",
        "Champion": f"v{v.champion}" if v.champion else "—",
        "Ready": "yes" if v.endpoint.ready else "NO",
        "Registry": "agrees" if v.agrees else "DISAGREES: " + "; ".join(v.warnings),
    } for v in views]
    table(pd.DataFrame(rows), key="endpoints-table", file_name="endpoints.csv",
          column_config={"Open": st.column_config.LinkColumn("Open", display_text="open ↗")})


def endpoint_detail(name: str, view=None) -> None:
    if view is None:
        with st.spinner(f"Reading {name}…"):
            view = data.endpoint_view(name)
    ep = view.endpoint
    st.header(ep.name, anchor=False)
    for w in view.warnings:
        st.warning(w, icon=":material/sync_problem:")
    if ep.read_only:
        st.info(f"Read-only: {ep.read_only_reason}", icon=":material/lock:")
    c = st.columns(5)
    c[0].metric("Stable", f"v{ep.stable_version}" if ep.stable_version else "—")
    c[1].metric("Canary", f"v{ep.canary_version}" if ep.canary_version else "none",
                f"{ep.canary_weight}% traffic" if ep.canary_version else None, delta_color="off", delta_arrow="off")
    c[2].metric("Champion (registry)", f"v{view.champion}" if view.champion else "—")
    c[3].metric("Ready", "yes" if ep.ready else "no")
    c[4].metric("Replicas", ep.replicas if ep.replicas is not None else "—")
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
    left, right = st.columns([3, 2])
    with left:
        st.subheader("Revisions", anchor=False)
        fig = revisions_chart(ep)
        if fig:
            st.plotly_chart(fig, key="revisions-chart")
        if ep.revisions:
            table(pd.DataFrame([{"revision": r.name, "at": r.at, "stable": r.stable_version, "canary": r.canary_version,
                                 "canary %": r.canary_weight, "by": r.actor, "note": r.note} for r in ep.revisions]),
                  key="revisions-table", file_name=f"{ep.name.replace('/', '_')}-revisions.csv",
                  column_config={"at": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm:ss")})
    with right:
        st.subheader("Readiness", anchor=False)
        st.dataframe(pd.DataFrame([{"condition": cd.type, "status": cd.status, "reason": cd.reason,
                                    "message": cd.message, "since": fmt_time(cd.last_transition)}
                                   for cd in ep.conditions]), hide_index=True, key="conditions-table")
        st.caption(f"URL: `{ep.url or '—'}` · backend `{ep.backend}` · state version `{ep.resource_version}`")
        if ep.extra:
            with st.expander("Backend details"):
                st.dataframe(pd.DataFrame([{"field": k.replace("_", " "), "value": str(v)}
                                           for k, v in ep.extra.items()]), hide_index=True, key="backend-details")
    st.divider()
    actions_panel(view)


def actions_panel(view) -> None:
    ep = view.endpoint
    actor = current_actor()
    st.subheader("Actions", anchor=False)
    st.caption(f"Acting as **{actor.name}** ({', '.join(actor.roles)}). Every action shows a dry run first and is "
               "recorded in the audit trail.")
    if not ep.model:
        st.info("This endpoint serves a model the registry does not know; the console cannot act on it.")
        return
    versions = [v.version for v in data.model_view(data.key(), ep.model).versions]
    disabled = ep.read_only
    a, b, cc = st.columns(3)
    with a, st.container(border=True):
        st.markdown("**Promote a version**")
        st.caption("Make a version stable at 100% and move @champion to it.")
        choices = [v for v in versions if v != ep.stable_version or ep.canary_version]
        default = choices.index(ep.canary_version) if ep.canary_version in choices else 0
        ver = st.selectbox("Version", choices, index=default if choices else None, key="promote-version",
                           format_func=lambda x: f"v{x}" + (" (canary)" if x == ep.canary_version else ""))
        if st.button("Request promotion", key="action-request", disabled=disabled or not choices,
                     icon=":material/upgrade:"):
            start("request_promotion", ep.name, version=ver)
    with b, st.container(border=True):
        st.markdown("**Canary**")
        if ep.canary_version:
            st.caption(f"v{ep.canary_version} gets {ep.canary_weight}% of the traffic.")
            w = st.number_input("Canary weight (%)", min_value=0, max_value=100, step=5,
                                value=int(ep.canary_weight), key="canary-weight")
            if st.button("Set canary weight", key="action-canary", disabled=disabled, icon=":material/tune:"):
                start("set_canary_weight", ep.name, weight=w)
            b1, b2 = st.columns(2)
            if b1.button("Promote", key="action-promote", disabled=disabled, icon=":material/done_all:",
                         help="Make the canary stable at 100% and move @champion to it", width="stretch"):
                start("promote_canary", ep.name)
            if b2.button("Abort", key="action-abort", disabled=disabled, icon=":material/cancel:",
                         help="Send all traffic back to the stable version and remove the canary", width="stretch"):
                start("abort_canary", ep.name)
        else:
            cands = [v for v in versions if v != ep.stable_version]
            ver = st.selectbox("Canary version", cands, key="canary-version", format_func=lambda x: f"v{x}")
            w = st.number_input("Canary weight (%)", min_value=0, max_value=100, step=5, value=10,
                                key="canary-weight")
            if st.button("Start canary", key="action-canary", disabled=disabled or not cands,
                         icon=":material/science:"):
                start("start_canary", ep.name, version=ver, weight=w)
    with cc, st.container(border=True):
        st.markdown("**Roll back**")
        target = container().actions.rollback_target(ep)
        st.caption(f"Previous stable version: v{target}" if target else "No earlier stable version on record.")
        opts = [v for v in versions if v != ep.stable_version]
        idx = opts.index(target) if target in opts else None
        to = st.selectbox("Roll back to", opts, index=idx, key="rollback-version", format_func=lambda x: f"v{x}",
                          placeholder="choose a version")
        if st.button("Roll back", key="action-rollback", disabled=disabled or to is None, icon=":material/undo:"):
            start("rollback", ep.name, to_version=to)


def main() -> None:
    from dashboard.components import flash

    st.title("Deployments")
    flash()
    with st.spinner("Reading endpoints…"):
        views = data.serving_overview()
    if not views:
        st.info("No serving endpoint found. With the local backend, `python -m services seed-demo` creates the "
                "demo's endpoints; with KServe, check MLOPS_KSERVE_NAMESPACES.")
        return
    overview_table(views)
    names = [v.endpoint.name for v in views]
    wanted = st.query_params.get("endpoint")
    prefetched = None
    if wanted and wanted not in names:  # e.g. an endpoint outside the listed namespaces: read it once
        try:
            prefetched = data.endpoint_view(wanted)
        except ConsoleError as exc:
            show_error(exc)
            return
        names.append(wanted)
    index = names.index(wanted) if wanted in names else 0
    picked = st.selectbox("Endpoint", names, index=index, key=state.ENDPOINT_PICKER)
    if st.session_state.get("actions-endpoint") != picked:  # inputs of another endpoint must not carry over
        for k in ACTION_INPUTS:
            st.session_state.pop(k, None)
        st.session_state["actions-endpoint"] = picked
    if picked != wanted:
        st.query_params["endpoint"] = picked
    with guard("endpoint"):
        endpoint_detail(picked, prefetched if prefetched and prefetched.endpoint.name == picked else None)


with guard("Deployments"):
    main()
    resume()
