"""Views of the Monitoring page: the time range in the URL, stable and canary side by side with the
significance tests, Plotly charts over time (request rate, error rate, latency p50/p95/p99, live quality)
with the policy's SLO lines, each chart's data as CSV; and the one-line live summary other pages show."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from dashboard.bootstrap import container
from dashboard.components import MISSING, fmt_time, show_error
from dashboard.data import slide_end, windowed
from dashboard.nav import link
from dashboard.shared_reads import shared_read
from services.errors import ConsoleError
from services.metrics import SeriesPoint, VersionStats, default_step, parse_time
from services.metrics.report import window_report
from services.metrics.stats import merge

PRESETS = {"-15m": "15 minutes", "-1h": "1 hour", "-6h": "6 hours", "-24h": "24 hours", "-7d": "7 days"}
CUSTOM = "custom"
DEFAULT_FROM = "-1h"
ROLE_COLOURS = {"stable": "#0969da", "canary": "#bf8700", "unknown": "#6e7781"}
QUANTILE_DASH = {"p50": "dot", "p95": "solid", "p99": "dash"}
LIVE_SUMMARY_MINUTES = 5
COLD_START = ("The first request to a version loads it (its model files are fetched and loaded), so in a quiet "
              "window that one slow request can set the p99 on its own.")


# -- the time range, restored from and written to the URL ----------------------------------------------------
def time_range(now: datetime, *, default: str = DEFAULT_FROM, key: str = "mon",
               presets: dict[str, str] = PRESETS) -> tuple[datetime, datetime]:
    """``from``/``to`` of the URL (a preset like -1h, or ISO times) as a picker; changes go back to the URL."""
    qp = st.query_params
    frm, to = qp.get("from", default), qp.get("to", "now")
    preset = frm if frm in presets and to == "now" else CUSTOM
    options = [*presets, CUSTOM]
    choice = st.segmented_control("Time range", options, default=preset, key=f"{key}-range",
                                  format_func=lambda o: presets.get(o, "Custom…")) or preset
    if choice != CUSTOM:
        if (qp.get("from"), qp.get("to")) != (choice, "now"):  # the URL says the range, also the default one
            qp["from"], qp["to"] = choice, "now"
        return parse_time(choice, now=now), now
    cols = st.columns(2)
    start_default = frm if preset == CUSTOM else (now - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
    start_text = cols[0].text_input("From (UTC, ISO or -2h)", start_default, key=f"{key}-from")
    end_text = cols[1].text_input("To (UTC, ISO or now)", to if preset == CUSTOM else "now", key=f"{key}-to")
    start = parse_time(start_text, now=now, what="from") or now - timedelta(hours=1)
    end = parse_time(end_text, now=now, end=True, what="to") or now
    if (frm, to) != (start_text, end_text):
        qp["from"], qp["to"] = start_text, end_text
    return start, end


# -- data ---------------------------------------------------------------------------------------------------
@windowed(fresh=10, stale=60)
def _load(key: str, endpoint: str, start: datetime, end: datetime) -> dict:  # noqa: ARG001 - key: settings
    """The page's data, and a token naming this read (new on every read: its charts are cached by it)."""
    return {**page_data(container().metrics, endpoint, start, end), "token": uuid.uuid4().hex,
            "read_at": container().clock()}


@st.cache_resource(ttl=20, max_entries=128, show_spinner=False)
def _figure(token: str, title: str, cols: tuple, axis: str, slo: float | None, percent: bool, slo_name: str,
            _series: pd.DataFrame) -> go.Figure:
    """One chart of one read (``token``), built once for every session that shows it (``st.cache_resource``:
    shared, never copied — Streamlit only reads a figure it draws). A new read has a new token."""
    return figure(title, _series, list(cols), axis, slo, percent=percent, slo_name=slo_name)


class _Steps:
    """The window's aggregates as the sum of its steps' (the same rollups): one read of the source, not two."""

    def __init__(self, src, steps):
        self.source, self._steps = src.source, steps

    def aggregates(self, *_window) -> list:
        return list(merge(a for _, a in self._steps).values())


def page_data(src, endpoint: str, start: datetime, end: datetime) -> dict:
    """The page's data (no Streamlit): ``window_report`` (per version and role, canary vs stable) and the
    series at the default step, from one ``aggregate_series`` read (bench/monitoring.py times this)."""
    step = default_step(start, end)
    steps = src.aggregate_series(endpoint, start, end, step)
    rep = window_report(_Steps(src, steps), endpoint, start, end)
    points = [SeriesPoint(t, VersionStats.of(a), step.total_seconds()) for t, a in steps]
    rep["series"] = pd.DataFrame([{**p.as_dict(), "series": _label(p.stats.role, p.stats.version)} for p in points])
    return rep


def _label(role: str, version) -> str:
    return f"{role} v{version}" if version else role


def slo_lines(endpoint: str) -> dict[str, float]:
    """metric -> ceiling from the endpoint's live gates (max_value), for the charts' SLO lines."""
    try:
        gates = container().policy.for_endpoint(endpoint).live_gates
    except ConsoleError:
        return {}
    return {g.metric: g.max_value for g in gates if g.max_value is not None}


# -- the page body --------------------------------------------------------------------------------------------
def render(endpoint: str, start: datetime, end: datetime) -> None:
    from dashboard.bootstrap import settings_key

    try:
        rep = _load(settings_key(), endpoint, start, end)
    except ConsoleError as exc:
        show_error(exc)
        return
    st.caption(f"{fmt_time(start)} → {fmt_time(end)} · source: **{rep['source']}** · latency quantiles are "
               "interpolated within histogram buckets · read " + fmt_time(rep.get("read_at")))
    if not rep["versions"]:
        st.info(f"No requests on **{endpoint}** in this window. Traffic through the gateway "
                "(`python -m services serve`) lands in the prediction log and shows here.")
        return
    from dashboard.alerts_view import alerts_panel

    alerts_panel(endpoint=endpoint, start=start, end=end, key="mon-alerts")
    side_by_side(rep)
    series = rep["series"]
    slo = slo_lines(endpoint)
    charts = [("Request rate", "request_rate", "requests / s", None),
              ("Error rate", "error_rate", "error rate", slo.get("error_rate"))]
    token = rep.get("token")
    for title, col, axis, line in charts:
        chart(title, series, [(col, None)], axis, line, key=col, percent=col == "error_rate", token=token)
    chart("Latency", series, [("latency_p50_ms", "p50"), ("latency_p95_ms", "p95"), ("latency_p99_ms", "p99")],
          "ms", slo.get("p95_latency_ms"), key="latency", slo_name="p95 SLO", token=token)
    st.caption(COLD_START)
    quality = [(c, None) for c in ("accuracy", "mae", "rmse") if c in series and series[c].notna().any()]
    if quality:
        chart("Live quality (labelled requests)", series, quality, "quality", None, key="quality", token=token)
    else:
        st.caption("Live quality: no ground-truth labels in this window yet.")
    recent_predictions(endpoint, start, end)


RECENT = 50


@windowed(fresh=10, stale=60)
def _recent(key: str, endpoint: str, start: datetime, end: datetime) -> pd.DataFrame:  # noqa: ARG001
    from dashboard.nav import href

    rows = container().predictions.rows(endpoint, start=start, end=end, limit=RECENT)
    return pd.DataFrame([{
        "Time": r.at, "Request": r.request_id, "Row": r.row, "Version": f"v{r.version}" if r.version else MISSING,
        "Role": r.role, "Prediction": MISSING if r.prediction is None else str(r.prediction),
        "Label": MISSING if r.label is None else str(r.label),
        "Latency ms": r.latency_ms, "Status": r.status,
        "Explain": href("explain", endpoint=endpoint, request_id=r.request_id, row=r.row or None)}
        for r in rows])


def recent_predictions(endpoint: str, start: datetime, end: datetime) -> None:
    """The newest logged predictions of the window, each with a link to its SHAP waterfall: what an on-call
    engineer opens for a strange answer."""
    from dashboard.bootstrap import settings_key
    from dashboard.components import table

    st.subheader("Recent predictions", anchor=False)
    df = _recent(settings_key(), endpoint, start, end)
    if df.empty:
        st.caption("No logged prediction in this window.")
        return
    st.caption(f"The {len(df)} newest logged predictions of the window; **Explain** opens one's SHAP waterfall "
               "(why the model answered that).")
    table(df, key="mon-recent", file_name=f"predictions-{endpoint}.csv",
          column_config={"Time": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm:ss [UTC]"),
                         "Latency ms": st.column_config.NumberColumn(format="%.1f"),
                         "Explain": st.column_config.LinkColumn("Explain", display_text="explain ↗")})


def side_by_side(rep: dict) -> None:
    in_role: dict[str, list[dict]] = {}
    for v in sorted(rep["versions"], key=lambda v: -v["requests"]):  # the busiest version of a role first
        in_role.setdefault(v["role"], []).append(v)
    cols = st.columns(2)
    for col, role in zip(cols, ("stable", "canary"), strict=True):
        with col:
            v, *others = in_role.get(role) or [None]
            st.subheader(_label(role, v["version"]) if v else f"{role}: none", anchor=False)
            if not v:
                st.caption(f"No {role} traffic in this window.")
                continue
            if others:
                st.caption(f"Also {role} in this window: " + ", ".join(
                    f"v{o['version']} ({o['requests']:,.0f} requests, {_pct(o['error_rate'])} errors)" for o in others)
                    + f". The tests below take every {role} version together.")
            c = st.columns(3)
            c[0].metric("Requests", f"{v['requests']:,.0f}")
            c[1].metric("Error rate", _pct(v["error_rate"]))
            c[2].metric("p95 latency", _ms(v["latency_p95_ms"]))
            c = st.columns(3)
            c[0].metric("p50", _ms(v["latency_p50_ms"]))
            c[1].metric("p99", _ms(v["latency_p99_ms"]), help=COLD_START)
            q = (f"{v['accuracy']:.3f}" if v["accuracy"] is not None else
                 f"{v['mae']:.3g} / {v['rmse']:.3g}" if v["mae"] is not None else MISSING)
            c[2].metric("Accuracy" if v["accuracy"] is not None else "MAE / RMSE" if v["mae"] is not None
                        else "Quality", q, help=f"{v['labelled']:,.0f} labelled requests")
    tests = rep["tests"]
    if not tests:
        st.caption("Significance: needs both stable and canary traffic in the window.")
        return
    st.subheader("Canary vs stable", anchor=False)
    rows = []
    for t in tests:
        mde = t.get("min_detectable_diff")
        rows.append({"Metric": "error rate" if t["metric"] == "error_rate" else "latency",
                     "Canary": _pct(t["candidate_value"]) if t["metric"] == "error_rate" else
                     _ms(t["candidate_value"]) + " (p50)",
                     "Stable": _pct(t["baseline_value"]) if t["metric"] == "error_rate" else
                     _ms(t["baseline_value"]) + " (p50)",
                     "Test": t["test"], "p-value": MISSING if t["p_value"] is None else f"{t['p_value']:.3g}",
                     "Significant (α 0.05)": "yes" if t["significant"] else "no",
                     "Smallest detectable increase": _pct(mde) if mde is not None else MISSING,
                     "n canary / stable": f"{t['n_candidate']:,.0f} / {t['n_baseline']:,.0f}"})
    st.dataframe(pd.DataFrame(rows), hide_index=True, key="mon-tests")
    err = next((t for t in tests if t["metric"] == "error_rate"), None)
    if err and err.get("min_detectable_diff") is not None:
        st.caption(f"At these sample sizes a two-proportion test (α = 0.05, power 0.8) detects an error-rate "
                   f"increase of {_pct(err['min_detectable_diff'])} or more over stable's {_pct(err['baseline_value'])}"
                   "; smaller differences may go unseen.")


def chart(title: str, series: pd.DataFrame, cols: list[tuple[str, str | None]], axis: str, slo: float | None,
          *, key: str, percent: bool = False, slo_name: str = "SLO", token: str | None = None) -> None:
    """One chart with its CSV; ``token`` (of the cached read ``series`` comes from): its figure is built once."""
    fig = (_figure(token, title, tuple(cols), axis, slo, percent, slo_name, series) if token else
           figure(title, series, cols, axis, slo, percent=percent, slo_name=slo_name))
    st.plotly_chart(fig, key=f"mon-chart-{key}", width="stretch")
    keep = ["at", "version", "role"] + [c for c, _ in cols if c in series] + ["requests"]
    data = series[list(dict.fromkeys(keep))]
    # the CSV is written when the button is clicked, not on every run
    st.download_button(f"Download {title.lower()} CSV", lambda: data.to_csv(index=False).encode("utf-8"),
                       file_name=f"{key}.csv", mime="text/csv", key=f"mon-csv-{key}", icon=":material/download:")


def figure(title: str, series: pd.DataFrame, cols: list[tuple[str, str | None]], axis: str, slo: float | None,
           *, percent: bool = False, slo_name: str = "SLO") -> go.Figure:
    """The chart's figure. Traces are given to the figure as plain dicts over numpy arrays (the times as naive
    UTC ``datetime64[us]``, as plotly itself turns a time column into): the same figure as one ``go.Scatter``
    per trace over pandas columns, in a fifth of the CPU (bench/_load_cpu.py: ~50 → ~8 ms for Latency)."""
    traces = []
    for name, g in series.groupby("series", sort=False):
        role = g["role"].iloc[0]
        at = customdata = None
        for col, q in cols:
            if col not in g or g[col].isna().all():
                continue
            if at is None:
                at = g["at"].dt.tz_convert(None) if g["at"].dt.tz is not None else g["at"]
                at, customdata = at.to_numpy().astype("datetime64[us]"), g[["requests"]].to_numpy()
            label = f"{name} {q or col}" if q or len(cols) > 1 else name
            traces.append({
                "type": "scatter", "x": at, "y": g[col].to_numpy(), "mode": "lines+markers", "name": label,
                "connectgaps": False,
                "line": {"color": ROLE_COLOURS.get(role, "#6e7781"), "dash": QUANTILE_DASH.get(q, "solid")},
                "marker": {"size": 4}, "customdata": customdata,
                "hovertemplate": f"%{{x|%Y-%m-%d %H:%M}} UTC<br>{label}: %{{y:{'.2%' if percent else '.4g'}}}"
                                 "<br>requests in step: %{customdata[0]:,.0f}<extra></extra>"})
    fig = go.Figure(data=traces, layout={
        "title": title, "height": 280, "margin": {"l": 10, "r": 10, "t": 40, "b": 10}, "yaxis_title": axis,
        "legend": {"orientation": "h", "yanchor": "bottom", "y": 1.02, "xanchor": "right", "x": 1},
        "hovermode": "x unified"})
    if slo is not None:
        fig.add_hline(y=slo, line={"color": "#cf222e", "dash": "dash"}, annotation_text=f"{slo_name} {slo:g}",
                      annotation_position="top left")
    if percent:  # a rate is never below 0: an empty series must not stretch the axis to −100 %
        values = [series[c].max() for c, _ in cols if c in series and series[c].notna().any()]
        top = max([float(v) for v in values] + ([slo] if slo is not None else []), default=0.0)
        fig.update_yaxes(tickformat=".1%", range=[0, max(0.05, 1.1 * top)])
    return fig


def _pct(x) -> str:
    return MISSING if x is None else f"{x:.2%}"


def _ms(x) -> str:
    """Compact, so a big-number metric never cuts it: ``7.1 ms``, ``128 ms``, ``1.28 s``, ``12.4 s``."""
    if x is None:
        return MISSING
    if x >= 1000:
        return f"{x / 1000:.2f} s" if x < 10_000 else f"{x / 1000:,.1f} s"
    return f"{x:.1f} ms" if x < 100 else f"{x:.0f} ms"


# -- the live line of the Deployments and Overview pages ----------------------------------------------------
@shared_read(fresh=15, stale=60, key=lambda key, endpoint, end: (key, endpoint), slide=slide_end,
             kind="telemetry")  # the last 5 minutes
def _live(key: str, endpoint: str, end: datetime) -> tuple[float, float | None]:  # noqa: ARG001
    start = end - timedelta(minutes=LIVE_SUMMARY_MINUTES)
    stats = container().metrics.summary(endpoint, start, end)
    n = sum(s.requests for s in stats)
    errors = sum(s.errors for s in stats)
    return n / (LIVE_SUMMARY_MINUTES * 60), (errors / n if n else None)


def live_line(endpoint: str) -> str:
    """``"0.42 req/s · 1.20 % errors (last 5 min)"``; a short reason when the source cannot answer."""
    from dashboard.bootstrap import settings_key

    try:
        now = container().clock().replace(second=0, microsecond=0) + timedelta(minutes=1)
        rate, err = _live(settings_key(), endpoint, now)
    except Exception as exc:  # noqa: BLE001 - a summary line never breaks the page that shows it
        return f"live metrics unavailable ({getattr(exc, 'message', type(exc).__name__)})"
    if rate == 0:
        return f"no traffic in the last {LIVE_SUMMARY_MINUTES} min"
    return f"{rate:.2f} req/s · {_pct(err)} errors (last {LIVE_SUMMARY_MINUTES} min)"


def live_caption(endpoint: str) -> None:
    """The live line with a link to the endpoint's Monitoring page."""
    cols = st.columns([3, 1])
    cols[0].caption(f":material/monitoring: Live: {live_line(endpoint)}")
    with cols[1]:
        link("monitoring", "Monitoring", icon=":material/monitoring:", endpoint=endpoint)
