"""Views of the Drift page: one version's logged traffic against its reference profile — the verdict, the
per-feature table sorted by severity, reference vs current distributions of the selected feature, a feature ×
time heatmap, the feature's hourly mean with its alarms, and the alarms on one timeline. Everything comes from
the histograms kept at ingest (``services.drift.windows``), so a 30-day window reads no raw row."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from dashboard.bootstrap import container, settings_key
from dashboard.components import MISSING, fmt_time, table
from dashboard.data import windowed
from dashboard.nav import link
from services.drift.windows import MIN_ROWS, DriftView, endpoint_drift, served_versions
from services.errors import ConsoleError
from services.predictions.histograms import hour_of

PRESETS = {"-24h": "24 hours", "-7d": "7 days", "-30d": "30 days"}
DEFAULT_FROM = "-7d"
METHOD_NAMES = {"psi": "PSI", "jensenshannon": "Jensen–Shannon", "hellinger": "Hellinger"}
REF, CUR = "#6e7781", "#0969da"
WARMUP_HOURS = 48  # services.drift.sequential's default warm-up
TTL = 30  # seconds a window's read is fresh (and how far "now" is rounded up: pages/drift.py)
STALE = 180  # ... and shown while a newer one is read in the background (dashboard.shared_reads)


@windowed(fresh=TTL, stale=STALE)
def versions(key: str, endpoint: str, start: datetime, end: datetime) -> list[tuple[str, str, int]]:  # noqa: ARG001
    return served_versions(container().predictions, endpoint, start, end)


@windowed(fresh=TTL, stale=STALE)
def load(key: str, endpoint: str, version: str | None, start: datetime, end: datetime) -> tuple[DriftView, str]:  # noqa: ARG001
    """The view, and a token naming this read (new on every read: the charts built from it are cached by it)."""
    c = container()
    model, offline = None, None
    try:  # the served model and the version's offline metrics, for live quality beside them
        model = c.serving.get_endpoint(endpoint).model
        offline = c.registry.get_version(model, version).metrics if model and version else None
    except ConsoleError:
        pass  # the view still works from the log alone
    return endpoint_drift(c.predictions, c.policy.for_endpoint(endpoint).drift, endpoint, start, end,
                          version=version, model=model, offline=offline), uuid.uuid4().hex


@st.cache_resource(ttl=60, max_entries=64, show_spinner=False)
def _figures(token: str, feature: str, _v: DriftView) -> dict:  # noqa: ARG001 - the token names the read
    """The charts of one read and feature, built once for every session that shows them (``st.cache_resource``:
    shared as they are, never copied — Streamlit only reads a figure it draws). A new read (TTL, Refresh) has a
    new token, so these never outlive the data they show."""
    return {"dist": distribution_figure(_v, feature), "mean": mean_figure(_v, feature),
            "heatmap": heatmap_figure(_v)}


def pick_version(endpoint: str, start: datetime, end: datetime) -> str | None:
    """The version picker (``version`` in the URL); the busiest version of the window by default."""
    served = versions(settings_key(), endpoint, start, end)
    options: list[str] = list(dict.fromkeys(v for v, _, _ in served))
    wanted = st.query_params.get("version")
    if wanted and wanted not in options:
        options.append(wanted)
    if not options:
        return None
    picked = st.selectbox("Version", options, index=options.index(wanted) if wanted in options else 0,
                          format_func=lambda v: f"v{v}", key="drift-version",
                          help="the versions that answered requests in the window, the busiest first")
    served_as = ", ".join(f"{role} {n:,}" for v, role, n in served if v == picked)
    st.caption(f"v{picked}: {served_as} requests in the window" if served_as else
               f"v{picked} answered no request in the window")
    if picked != wanted:
        st.query_params["version"] = picked
    return picked


def summary(v: DriftView) -> None:
    d = v.verdict
    cols = st.columns(4)
    verdict = MISSING if d.drifted is None else ("Drifted" if d.drifted else "No drift")
    cols[0].metric("Dataset", verdict, help=f"drifted when at least {d.share_threshold:.0%} of the features drift")
    cols[1].metric("Drifted features", f"{d.drifted_columns} of {d.computable_columns}",
                   help="features whose statistic reaches their threshold")
    p = v.prediction
    pred = MISSING if p is None or p.statistic is None else (
        f"{p.statistic:.3f} · " + ("drifted" if p.drifted else "no drift"))
    cols[2].metric(f"Prediction drift ({METHOD_NAMES.get(p.method, p.method) if p else MISSING})", pred,
                   help="the answers' distribution against the reference's (its prediction column, else its "
                        "target), on the version's fixed bins")
    cols[3].metric("Requests in window", f"{v.current_rows:,}")
    if v.label is not None or v.performance is not None:
        quality(v)
    st.caption(f"v{v.version} of **{v.model}** on **{v.endpoint}**, {fmt_time(hour_of(v.start))} → "
               f"{fmt_time(v.end)} (from the start of the hour: histograms are hourly) · reference: "
               f"{v.profile_source}, {v.reference_rows:,} rows · fixed bins derived once from the reference, so "
               "values compare window to window")


def quality(v: DriftView) -> None:
    """Label drift and live quality, where ground truth has arrived for the window's requests."""
    cols = st.columns(4)
    lab = v.label
    cols[0].metric(f"Label drift ({METHOD_NAMES.get(lab.method, lab.method) if lab else MISSING})",
                   MISSING if lab is None or lab.statistic is None else
                   f"{lab.statistic:.3f} · " + ("drifted" if lab.drifted else "no drift"),
                   help="the ground truth that arrived for the window's requests against the reference's target")
    p = v.performance
    if not p:
        return
    if p["offline_accuracy"] is not None or p["offline_mae"] is None:
        cols[1].metric("Live accuracy", f"{p['accuracy']:.3f}",
                       help=f"95 % Wilson interval {p['accuracy_low']:.3f}–{p['accuracy_high']:.3f} on "
                            f"{p['labelled']:,} labelled requests")
        off = p["offline_accuracy"]
        cols[2].metric("Offline accuracy (held-out)", MISSING if off is None else f"{off:.3f}",
                       delta=None if off is None else f"{p['accuracy'] - off:+.3f} live",
                       delta_color="normal" if off is None or p["accuracy"] >= off else "inverse",
                       help="the version's registered evaluation metric")
        verdict = MISSING if p["degraded"] is None else ("degraded" if p["degraded"] else "holds")
        cols[3].metric("Performance", verdict, help="degraded when the offline accuracy lies above the live "
                                                    "accuracy's 95 % interval")
    else:
        cols[1].metric("Live MAE", f"{p['mae']:.4g}", help=f"{p['labelled']:,} labelled requests")
        cols[2].metric("Live RMSE", f"{p['rmse']:.4g}")
        off = p["offline_rmse"]
        cols[3].metric("Offline RMSE (held-out)", MISSING if off is None else f"{off:.4g}")


def feature_table(v: DriftView) -> pd.DataFrame:
    """One row per feature; besides the whole window, its latest heatmap period and in how many periods it
    drifted (a change late in a long window shows there before it moves the window's own statistic)."""
    rows = []
    for f in v.features:
        periods = [x for x in v.heatmap.get(f.column, []) if x is not None]
        over = sum(1 for x in periods if f.threshold and x >= f.threshold)
        rows.append({"Feature": f.column, "Kind": f.kind, "Method": METHOD_NAMES.get(f.method, f.method),
                     "Statistic": f.statistic, "Threshold": f.threshold,
                     "Drifted": MISSING if f.drifted is None else ("yes" if f.drifted else "no"),
                     f"Latest {v.granularity}": periods[-1] if periods else None,
                     "Drifted periods": f"{over} of {len(periods)}" if periods else MISSING,
                     "Rows": f.current_rows, "Missing": f.missing_current,
                     "Note": f.reason or ""})
    return pd.DataFrame(rows)


def render_table(v: DriftView) -> None:
    df = feature_table(v)

    def colour(row):
        return ["background-color: #ffebe9" if row["Drifted"] == "yes" else ""] * len(row)

    fmt = {"Statistic": "{:.4f}", "Threshold": "{:.3g}", f"Latest {v.granularity}": "{:.4f}"}
    table(df.style.apply(colour, axis=1).format(fmt, na_rep=MISSING),
          key="drift-table", file_name=f"drift-{v.endpoint}-v{v.version}.csv", csv=lambda: df,
          column_config={"Rows": st.column_config.NumberColumn(format="%d")})


def distribution(v: DriftView, feature: str, fig: go.Figure) -> None:
    d = v.distributions[feature]
    st.plotly_chart(fig, key="drift-dist", width="stretch")
    st.caption(f"Missing values (excluded): reference {d.missing_reference:,}, current {d.missing_current:,}.")


def distribution_figure(v: DriftView, feature: str) -> go.Figure:
    d = v.distributions[feature]
    fig = go.Figure()
    for name, shares, colour in (("reference", d.reference, REF), ("current", d.current, CUR)):
        fig.add_trace(go.Bar(x=d.labels, y=shares, name=name, marker_color=colour, opacity=0.8,
                             hovertemplate=f"{name}<br>bin %{{x}}<br>share %{{y:.1%}}<extra></extra>"))
    fig.update_layout(barmode="group", height=340, title=f"{feature}: reference vs current (fixed bins)",
                      yaxis_tickformat=".0%", margin={"l": 10, "r": 10, "t": 70, "b": 10},
                      legend={"orientation": "h", "y": 1.0, "x": 1, "xanchor": "right", "yanchor": "bottom"},
                      xaxis={"tickfont": {"size": 12, "color": "#31333f"}, "tickangle": -35})
    return fig


def heatmap(v: DriftView, built: tuple[go.Figure, bytes] | None) -> None:
    if built is None:
        return
    fig, csv = built
    st.plotly_chart(fig, key="drift-heatmap", width="stretch")
    st.download_button("Download heatmap CSV", csv, file_name="drift-heatmap.csv",
                       mime="text/csv", key="drift-heatmap-csv", icon=":material/download:", on_click="ignore")


def heatmap_figure(v: DriftView) -> tuple[go.Figure, bytes] | None:
    if not v.periods:
        return None
    order = [f.column for f in v.features] + [a for a in ("prediction", "label") if a in v.heatmap]
    thresholds = {f.column: f.threshold for f in v.features}
    for answer in (v.prediction, v.label):
        if answer is not None:
            thresholds[answer.column] = answer.threshold
    z = [[None if x is None or not thresholds.get(f) else x / thresholds[f] for x in v.heatmap[f]] for f in order]
    raw = [v.heatmap[f] for f in order]
    step = timedelta(hours=int(v.granularity.split()[0]))
    starts = [[p.strftime("%Y-%m-%d %H:%M") for p in v.periods]] * len(order)
    fig = go.Figure(go.Heatmap(  # each cell spans its period: x is the period's middle
        z=z, x=[p + step / 2 for p in v.periods], y=order, customdata=np.dstack([np.array(raw, dtype=float),
                                                                               np.array(starts, dtype=object)]),
        colorscale="YlOrRd", zmin=0, zmax=2, colorbar={"title": "× threshold"},
        hovertemplate=f"%{{y}}<br>%{{customdata[1]}} UTC + {v.granularity}<br>statistic %{{customdata[0]:.4f}}"
                      "<br>%{z:.2f} × threshold<extra></extra>"))
    fig.update_layout(title=f"Drift per {v.granularity} period (statistic ÷ threshold; ≥ 1 drifted; blank: "
                            f"under {MIN_ROWS} requests, too few to tell)",
                      height=max(300, 18 * len(order) + 120), margin={"l": 10, "r": 10, "t": 40, "b": 10},
                      yaxis={"autorange": "reversed"})
    frame = pd.DataFrame(raw, index=order, columns=[p.isoformat() for p in v.periods])
    return fig, frame.to_csv().encode("utf-8")


def mean_chart(feature: str, fig: go.Figure | None) -> None:
    if fig is None:
        st.caption(f"{feature} is categorical: no mean over time (see its distribution above).")
        return
    st.plotly_chart(fig, key="drift-mean", width="stretch")


def mean_figure(v: DriftView, feature: str) -> go.Figure | None:
    points = v.means.get(feature)
    if not points:
        return None
    fig = go.Figure(go.Scatter(x=[t for t, _ in points], y=[m for _, m in points], mode="lines+markers",
                               name="hourly mean", line={"color": CUR}, marker={"size": 4},
                               hovertemplate="%{x|%Y-%m-%d %H:%M} UTC<br>mean %{y:.4g}<extra></extra>"))
    bins = container().predictions.profile(v.model, v.version)
    mean = bins.columns[feature].mean if bins and feature in bins.columns else None
    if mean is not None:
        fig.add_hline(y=mean, line={"color": REF, "dash": "dot"}, annotation_text="reference mean",
                      annotation_position="bottom left")
    for a in v.alarms:
        if a["feature"] == feature:
            fig.add_vline(x=a["at"], line={"color": "#cf222e", "dash": "dash"})
    fig.update_layout(title=f"{feature}: hourly mean (red: Page–Hinkley alarms)", height=280,
                      margin={"l": 10, "r": 10, "t": 40, "b": 10})
    return fig


def alarms(v: DriftView) -> None:
    hours = len(v.traffic)
    if not v.alarms and hours <= WARMUP_HOURS:
        st.caption(f"This window is too short for the sequential alarms: they learn their baseline from its first "
                   f"{WARMUP_HOURS} hours of traffic and it has {hours}. Widen the range to 7 days to see them.")
        return
    if not v.alarms:
        st.caption("No sequential alarm in this window (Page–Hinkley on hourly feature means, CUSUM on the hourly "
                   f"request count; each learns its baseline from the window's first {WARMUP_HOURS} hours).")
        return
    df = pd.DataFrame([{"At": a["at"], "Since": a["since"], "What": a["feature"], "Detector": a["detector"],
                        "Direction": a["direction"], "Statistic (σ)": round(a["statistic"], 2)} for a in v.alarms])
    when = st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm [UTC]")
    table(df, key="drift-alarms", file_name=f"drift-alarms-{v.endpoint}.csv",
          column_config={"At": when, "Since": when})


def render(endpoint: str, version: str | None, start: datetime, end: datetime) -> None:
    with st.spinner("Comparing the window with the reference…"):
        v, token = load(settings_key(), endpoint, version, start, end)
    summary(v)
    if v.current_rows == 0:
        st.info(f"v{v.version} answered no request on **{endpoint}** in this window: nothing to compare.")
        return
    st.subheader("Features by severity", anchor=False)
    render_table(v)
    names = [f.column for f in v.features] + [a for a in ("prediction", "label") if a in v.distributions]
    wanted = st.query_params.get("feature")
    feature = st.selectbox("Feature", names, index=names.index(wanted) if wanted in names else 0,
                           key="drift-feature")
    if feature != wanted:
        st.query_params["feature"] = feature
    figs = _figures(token, feature, v)
    left, right = st.columns(2)
    with left:
        distribution(v, feature, figs["dist"])
    with right:
        mean_chart(feature, figs["mean"])
    heatmap(v, figs["heatmap"])
    st.subheader("Alarms", anchor=False)
    alarms(v)
    link("explain", f"Explain v{v.version}: how it uses these features", icon=":material/psychology:",
         model=v.model, version=v.version)
