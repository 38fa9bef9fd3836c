"""Views of the Incidents page: the endpoint's alerts, one chart of its traffic with every event on it (click a
moment: "what served at T"), the suspects of the selected alert, the guarded actions one step away (the alert
linked in their audit entry), the timeline's events with links to their pages, and the incident report.
Everything comes from ``container().incidents`` (``services.incidents``), the same as the CLI's ``timeline``."""

from __future__ import annotations

import json
from datetime import datetime
from functools import partial

import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from dashboard.bootstrap import container
from dashboard.components import MISSING, fmt_time, show_error, table
from dashboard.data import clear_caches, windowed
from dashboard.nav import href
from services.alerts.usecases import list_alerts
from services.clock import parse_iso
from services.errors import ConsoleError

PRESETS = {"-1h": "1 hour", "-6h": "6 hours", "-24h": "24 hours", "-7d": "7 days"}
DEFAULT_FROM = "-24h"
KIND_COLOURS = {"serving_change": "#0969da", "action": "#8250df", "approval": "#6e7781", "registration": "#1a7f37",
                "alias_move": "#1a7f37", "alert_fired": "#cf222e", "alert_resolved": "#2da44e",
                "drift_alarm": "#bf8700", "source_unavailable": "#57606a"}
ROLE_COLOURS = {"stable": "#0969da", "canary": "#bf8700", "unknown": "#6e7781"}


# -- data (cached briefly: an incident moves) ------------------------------------------------------------------
@windowed(fresh=10, stale=60, kind="state")  # actions and serving changes are on it
def events(key: str, endpoint: str, start: datetime, end: datetime) -> list:  # noqa: ARG001 - key: settings
    return container().incidents.timeline(endpoint, start, end)


@windowed(fresh=10, stale=30, kind="state")  # firing alerts: shown at most 30 s late
def alerts(key: str, endpoint: str, start: datetime, end: datetime) -> tuple[list, list[str]]:  # noqa: ARG001
    c = container()
    found = list_alerts(c.alerts, c.external_alerts, endpoint=endpoint, start=start, end=end, firing_first=True)
    return found.alerts, [f"{p.source}: {p.message}" for p in found.problems]


def series(key: str, endpoint: str, start: datetime, end: datetime) -> pd.DataFrame:
    """The Monitoring page's cached read of the same window (``-24h`` on both pages: one read, not two)."""
    from dashboard.monitoring_view import _load

    return _load(key, endpoint, start, end)["series"]


# -- alerts ------------------------------------------------------------------------------------------------------
def alerts_section(endpoint: str, found: list, problems: list[str]):
    """The window's alerts, firing first; the one picked (``alert`` in the URL) is what suspects rank for."""
    st.subheader("Alerts", anchor=False)
    for p in problems:
        st.warning(f"Not shown: {p}", icon=":material/cloud_off:")
    if not found:
        st.caption("No alert on this endpoint in the window.")
        return None
    found = order(found)
    df = pd.DataFrame([{"State": a.state, "Severity": a.severity, "Rule": a.rule, "Started": fmt_time(a.started_at),
                        "Resolved": fmt_time(a.resolved_at) if a.resolved_at else MISSING, "Value": a.value,
                        "Summary": a.summary,
                        "Acknowledged by": a.acknowledged_by or MISSING, "Source": a.source, "Id": a.id}
                       for a in found])
    table(df, key="inc-alerts", file_name=f"alerts-{endpoint}.csv",
          column_config={"Value": st.column_config.NumberColumn(format="%.4g")})
    ids = [a.id for a in found]
    wanted = st.query_params.get("alert")
    picked = st.selectbox("Investigate alert", ids, index=ids.index(wanted) if wanted in ids else 0,
                          format_func=lambda i: _alert_label(next(a for a in found if a.id == i)), key="inc-alert")
    if picked != wanted:
        st.query_params["alert"] = picked
    alert = next(a for a in found if a.id == picked)
    if alert.firing and alert.source == "console" and not alert.acknowledged_by:
        acknowledge_button(alert)
    return alert


SEVERITY = {"page": 0, "ticket": 1, "info": 2}


def order(found: list) -> list:
    """Firing before resolved, then the most severe, then the newest."""
    newest = sorted(found, key=lambda a: a.started_at, reverse=True)
    return sorted(newest, key=lambda a: (not a.firing, SEVERITY.get(a.severity, 3)))


def _alert_label(a) -> str:
    return f"{'FIRING' if a.firing else 'resolved'} · {a.rule} ({a.severity}) from {fmt_time(a.started_at)}"


def acknowledge_button(alert) -> None:
    from dashboard.identity import current_actor
    from services.alerts.usecases import acknowledge

    actor = current_actor()
    refusal = None if set(actor.roles) - {"viewer"} else f"{actor.name} is a viewer: only people with a role " \
        "acknowledge alerts"
    if st.button("Acknowledge", key="inc-ack", icon=":material/notifications_paused:", disabled=bool(refusal),
                 help=refusal or "Say you are on it: recorded in the audit trail"):
        c = container()
        try:
            acknowledge(c.alerts, c.audit, actor, alert.id, "acknowledged on the Incidents page", clock=c.clock)
        except ConsoleError as exc:
            show_error(exc)
            return
        clear_caches(after_action=True)
        st.rerun()


# -- the chart ---------------------------------------------------------------------------------------------------
@windowed(fresh=30, stale=180)
def drift_share(key: str, endpoint: str, start: datetime, end: datetime) -> pd.DataFrame:  # noqa: ARG001
    """The share of the busiest version's features drifted, per heatmap period of the Drift view (empty when
    the endpoint has no profiled traffic in the window)."""
    from services.drift.windows import endpoint_drift
    from services.errors import NotFound

    c = container()
    try:
        v = endpoint_drift(c.predictions, c.policy.for_endpoint(endpoint).drift, endpoint, start, end)
    except NotFound:
        return pd.DataFrame(columns=["at", "share"])
    limits = {f.column: f.threshold for f in v.features}
    rows = []
    for i, period in enumerate(v.periods):
        scored = [(x, limits[f]) for f, xs in v.heatmap.items() if f in limits and (x := xs[i]) is not None]
        if scored:
            rows.append({"at": period, "share": sum(x >= t for x, t in scored) / len(scored),
                         "version": v.version})
    return pd.DataFrame(rows, columns=["at", "share", "version"])


def chart(endpoint: str, data: pd.DataFrame, evs: list, found: list, at: datetime | None,
          drift: pd.DataFrame | None = None) -> datetime | None:
    """Request rate, error rate, p95 latency and live quality per version, the drift share, the events as
    markers, alerts as red bands. Clicking a point returns its time (what served then)."""
    fig = figure(data, evs, found, at, drift, container().clock())
    st.caption("Click a point to see what served at that moment · ▼ events (hover for what) · red bands: alerts "
               "firing · dotted lines: serving changes and actions")
    # A callback, not on_select="rerun": the figure changes between runs (a firing alert's band ends now), so the
    # rerun's chart is a new element whose selection is empty; a callback reads the click before the run.
    st.plotly_chart(fig, key="inc-chart", on_select=_clicked, selection_mode="points", width="stretch")
    x = st.session_state.pop(CLICKED, None)
    if x is None:
        return None
    t = pd.Timestamp(x)
    return (t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")).to_pydatetime()


SUBPLOTS = 5


@st.cache_resource(show_spinner=False, max_entries=8)
def _grid(quality: str | None) -> dict:
    """The five stacked panels' layout (``make_subplots``: axes, domains, titles), built once per title set."""
    layout = make_subplots(rows=SUBPLOTS, cols=1, shared_xaxes=True, vertical_spacing=0.04,
                           subplot_titles=("Requests / s", "Error rate", "p95 latency (ms)",
                                           f"Live quality ({quality or 'no labels yet'})",
                                           "Drift share (features drifted)")).to_dict()["layout"]
    layout.pop("template", None)  # the figure applies the default template itself, as a new figure does
    return layout


def _ref(row: int) -> str:
    return "" if row == 1 else str(row)


def figure(data: pd.DataFrame, evs: list, found: list, at: datetime | None, drift: pd.DataFrame | None,
           now: datetime) -> go.Figure:
    """The chart's figure, built as one dict (traces over numpy arrays, the panels' layout from :func:`_grid`,
    each vertical line or band one shape per panel with traces, as ``add_vline``/``add_vrect`` place them):
    the same figure as ``make_subplots`` + ``add_trace``/``add_vline``/``add_vrect``, in a fraction of the CPU
    (bench/_load_cpu.py)."""
    quality = next((q for q in ("accuracy", "mae") if q in data and data[q].notna().any()), None)
    traces: list[dict] = []

    def add(trace: dict, row: int) -> None:
        traces.append({**trace, "type": "scatter", "xaxis": f"x{_ref(row)}", "yaxis": f"y{_ref(row)}"})

    if drift is not None and not drift.empty:
        add({"x": _times(drift["at"]), "y": drift["share"].to_numpy(), "mode": "lines+markers",
             "name": "drift share", "line": {"color": "#bf8700", "shape": "hv"}, "marker": {"size": 4},
             "hovertemplate": "%{x|%Y-%m-%d %H:%M} UTC<br>%{y:.0%} of the features drifted<extra></extra>"}, 5)
    if not data.empty:
        for name, g in data.groupby("series", sort=False):
            colour = ROLE_COLOURS.get(g["role"].iloc[0], "#6e7781")
            rows = [(1, "request_rate"), (2, "error_rate"), (3, "latency_p95_ms")] + ([(4, quality)] if quality
                                                                                     else [])
            x = _times(g["at"])
            for row, col in rows:
                add({"x": x, "y": g[col].to_numpy(), "mode": "lines+markers", "name": name, "legendgroup": name,
                     "showlegend": row == 1, "line": {"color": colour}, "marker": {"size": 4},
                     "hovertemplate": f"{name}<br>%{{x|%Y-%m-%d %H:%M}} UTC<br>%{{y:.4g}}<extra></extra>"}, row)
    top = float(data["request_rate"].max()) if not data.empty and data["request_rate"].notna().any() else 1.0
    marks = [e for e in evs if e.kind not in ("alert_fired", "alert_resolved", "source_unavailable")]
    if marks:
        add({"x": [e.at for e in marks], "y": [top * 1.08] * len(marks), "mode": "markers", "name": "events",
             "marker": {"symbol": "triangle-down", "size": 11, "color": [KIND_COLOURS.get(e.kind) for e in marks]},
             "text": [f"{e.kind.replace('_', ' ')} · {e.source}<br>{e.title}" for e in marks],
             "hovertemplate": "%{x|%Y-%m-%d %H:%M:%S} UTC<br>%{text}<extra></extra>"}, 1)
    panels = sorted({int(t["yaxis"][1:] or 1) for t in traces})  # add_vline/add_vrect skip empty panels
    shapes: list[dict] = []

    def span(shape: dict) -> None:
        shapes.extend({**shape, "xref": f"x{_ref(r)}", "yref": f"y{_ref(r)} domain", "y0": 0, "y1": 1}
                      for r in panels)

    for e in marks:
        if e.kind in ("serving_change", "action"):
            span({"type": "line", "x0": e.at, "x1": e.at, "line": {"color": KIND_COLOURS[e.kind], "width": 1,
                                                                   "dash": "dot"}})
    for a in found:
        span({"type": "rect", "x0": a.started_at, "x1": a.resolved_at or now, "fillcolor": "#cf222e",
              "opacity": 0.08, "line": {"width": 0}})
    if at is not None:
        span({"type": "line", "x0": at, "x1": at, "line": {"color": "#24292f", "width": 2}})
    layout = {**_grid(quality), "height": 860, "margin": {"l": 10, "r": 10, "t": 40, "b": 10},
              "hovermode": "closest", "legend": {"orientation": "h", "y": 1.06, "x": 1, "xanchor": "right"},
              "clickmode": "event+select"}
    layout["yaxis2"] = {**layout["yaxis2"], "tickformat": ".1%"}
    layout[f"yaxis{SUBPLOTS}"] = {**layout[f"yaxis{SUBPLOTS}"], "tickformat": ".0%", "range": [0, 1.05]}
    if shapes:
        layout["shapes"] = shapes
    return go.Figure(data=traces, layout=layout)


def _times(col: pd.Series):
    """A time column as plotly turns one into: naive UTC ``datetime64[us]``."""
    return (col.dt.tz_convert(None) if col.dt.tz is not None else col).to_numpy().astype("datetime64[us]")



CLICKED = "inc-clicked"


def _clicked() -> None:
    points = getattr(getattr(st.session_state.get("inc-chart"), "selection", None), "points", None) or \
        ((st.session_state.get("inc-chart") or {}).get("selection", {}).get("points") or [])
    if points:
        st.session_state[CLICKED] = points[0].get("x")


# -- what served at T, suspects, events, report ---------------------------------------------------------------
def served_section(endpoint: str, at: datetime) -> dict | None:
    st.subheader(f"What served at {fmt_time(at)}", anchor=False)
    try:
        s = container().incidents.served_at(endpoint, at)
    except ConsoleError as exc:
        show_error(exc)
        return None
    if not s["known"]:
        st.info(s["note"] or "The serving history cannot say what served then.")
        return s
    cols = st.columns(3)
    cols[0].metric("Stable", f"v{s['stable_version']}", help=f"{s['stable_weight']}% of the traffic")
    cols[1].metric("Canary", f"v{s['canary_version']}" if s["canary_version"] else MISSING,
                   help=f"{s['canary_weight']}% of the traffic" if s["canary_version"] else "no canary then")
    cols[2].metric("Canary weight", f"{s['canary_weight']}%")
    for label, ch in (("The change that led here", s["change_before"]), ("The next change", s["change_after"])):
        if ch:
            approved = f", approved by {ch['approved_by']}" if ch.get("approved_by") else ""
            st.caption(f"**{label}:** {fmt_time(parse_iso(ch['at']))} — {ch.get('what', '')} "
                       f"(by {ch.get('actor') or MISSING}{approved})")
    if s["traffic"]:
        st.dataframe(pd.DataFrame(s["traffic"]), hide_index=True, key="inc-served-traffic",
                     column_config={"error_rate": st.column_config.NumberColumn("error rate", format="percent")})
    if s["requests"]:
        st.dataframe(pd.DataFrame([{"at": parse_iso(r["at"]), **{k: r[k] for k in ("version", "role", "status",
                                                                                    "latency_ms")},
                                    "explain": href(r["link"]["page"], **{k: v for k, v in r["link"].items()
                                                                         if k != "page"})}
                                   for r in s["requests"]]), hide_index=True, key="inc-served-requests",
                     column_config={"explain": st.column_config.LinkColumn("Explain", display_text="explain ↗"),
                                    "at": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm:ss [UTC]"),
                                    "latency_ms": st.column_config.NumberColumn("latency ms", format="%.1f")})
    for w in s["warnings"]:
        st.warning(w, icon=":material/cloud_off:")
    return s


def suspects_section(evs: list, alert) -> None:
    st.subheader("Suspects", anchor=False)
    ranked = container().incidents.suspects(evs, alert)
    if not ranked:
        st.caption("No change in the two hours before this alert.")
        return
    st.caption("Changes before the alert, ranked by closeness in time and by whether the versions that served "
               "after them differ on the alert's metric (services/incidents/suspects.py documents the score).")
    table(pd.DataFrame([{"Rank": r["rank"], "Score": round(r["score"], 3),
                         "When": fmt_time(parse_iso(r["event"]["at"])),
                         "Minutes before": round(r["minutes_before"], 1), "What": r["event"]["title"],
                         "Why": r["why"], "Link": _link(r["event"].get("link"))} for r in ranked]),
          key="inc-suspects", file_name="suspects.csv",
          column_config={"Link": st.column_config.LinkColumn("Open", display_text="open ↗")})


def _link(link: dict | None) -> str | None:
    if not link or "page" not in link:
        return None
    return href(link["page"], **{k: v for k, v in link.items() if k != "page"})


def events_section(endpoint: str, evs: list) -> None:
    st.subheader("Timeline", anchor=False)
    if not evs:
        st.caption("Nothing happened on this endpoint in the window.")
        return
    df = pd.DataFrame([{"Time": e.at, "Kind": e.kind.replace("_", " "), "Source": e.source, "What": e.title,
                        "Who": e.actor or MISSING, "Open": _link(e.link)} for e in evs])
    table(df, key="inc-events", file_name=f"timeline-{endpoint}.csv",
          column_config={"Time": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm:ss [UTC]"),
                         "Open": st.column_config.LinkColumn("Open", display_text="open ↗")})


def report_section(endpoint: str, start: datetime, end: datetime, at: datetime | None) -> None:
    """The report is built when a button is clicked (on Streamlit's download thread), not on every run: it
    reads the whole window again, and most runs of this page never download it."""
    cols = st.columns(2)
    stamp = f"{endpoint.replace('/', '_')}-{start:%Y%m%dT%H%M}"
    cols[0].download_button("Incident report (Markdown)", partial(_report_file, endpoint, start, end, at, "md"),
                            file_name=f"incident-{stamp}.md", mime="text/markdown", key="inc-report-md",
                            icon=":material/description:", on_click="ignore")
    cols[1].download_button("Incident report (JSON)", partial(_report_file, endpoint, start, end, at, "json"),
                            file_name=f"incident-{stamp}.json", mime="application/json", key="inc-report-json",
                            icon=":material/data_object:", on_click="ignore")


def _report_file(endpoint: str, start: datetime, end: datetime, at: datetime | None, kind: str) -> bytes:
    """One format of the report; a source that fails makes a file that says so (there is no page to show it on)."""
    try:
        markdown, data = _report(endpoint, start, end, at)
    except ConsoleError as exc:
        text = f"The incident report could not be made: {exc.source}: {exc.message}\n"
        return (text if kind == "md" else json.dumps({"error": text.strip()})).encode("utf-8")
    return (markdown if kind == "md" else json.dumps(data, indent=2, default=str)).encode("utf-8")


@st.cache_data(ttl=30, show_spinner=False, max_entries=64)
def _report(endpoint: str, start: datetime, end: datetime, at: datetime | None) -> tuple[str, dict]:
    return container().incidents.report(endpoint, start, end, at=at)


def moment(start: datetime, end: datetime) -> datetime | None:
    """``at`` of the URL (ISO), if inside the window."""
    from services.metrics import parse_time

    text = st.query_params.get("at")
    if not text:
        return None
    return parse_time(text, now=container().clock(), what="at")


def actions(endpoint: str, alert) -> None:
    """Abort the canary or roll back, one step from the alert: the same dry run and dialog as the Deployments
    page, with the alert recorded in the audit entry."""
    from dashboard.actions_ui import start
    from dashboard.identity import current_actor

    c = container()
    try:
        ep = c.serving.get_endpoint(endpoint)
    except ConsoleError as exc:
        show_error(exc)
        return
    st.subheader("Act", anchor=False)
    may = c.actions.permissions(current_actor(), endpoint)
    context = {"alert": {"id": alert.id, "rule": alert.rule, "started_at": alert.started_at.isoformat()}} \
        if alert is not None else None
    targets = c.actions.rollback_targets(ep)
    cols = st.columns(2)
    refusal = may["abort_canary"] or (None if ep.canary_version else "no canary runs on this endpoint")
    if cols[0].button(f"Abort canary v{ep.canary_version}" if ep.canary_version else "Abort canary",
                      key="inc-abort", icon=":material/cancel:", disabled=refusal is not None, help=refusal,
                      width="stretch"):
        start("abort_canary", endpoint, context=context)
    refusal = may["rollback"] or (None if targets else "no earlier stable version on record")
    if cols[1].button(f"Roll back to v{targets[0]}" if targets else "Roll back", key="inc-rollback",
                      icon=":material/undo:", disabled=refusal is not None, help=refusal, width="stretch"):
        start("rollback", endpoint, to_version=targets[0], context=context)
    st.caption("Each shows its dry run first; the alert is linked in the audit entry.")
