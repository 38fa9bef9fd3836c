"""Side-by-side compare of 2–8 versions: metric deltas against a chosen baseline (``&baseline=V``), parameter,
signature, dependency and tag diffs, and charts where each version keeps one distinct colour.

The page opens on the metric table; the metric chart (Plotly, a 4.7 MB script for the browser) is drawn only
when its expander is opened (``&chart=1`` in the URL), and the query parameters are written only when they
change (each write is a message that makes the browser rewrite its URL)."""

from __future__ import annotations

import pandas as pd
import streamlit as st
from plotly.colors import qualitative

from dashboard import data, state
from dashboard.components import MISSING, clean_frame, fmt_num, table
from dashboard.explain_view import compare_section as explanation_drift
from dashboard.models_view import KEY_METRICS, chart_expander, safe_name, set_query_param
from dashboard.nav import link
from dashboard.version_view import curves_chart
from services.history import pick_baseline

GOOD, BAD = "#1a7f37", "#cf222e"
PALETTE = qualitative.D3  # ten clearly distinct hues; a version keeps its colour on every chart of the page
BASELINE_PICKER = "compare-baseline"
METRICS_PICKER = "compare-metrics"
CHART_OPEN = "compare-chart-open"
TABS = ["Metrics", "Parameters", "Training curves", "Signature", "Dependencies", "Tags"]


def version_colors(versions: list[str]) -> dict[str, str]:
    """``v3`` -> colour, by position in the comparison."""
    return {f"v{v}": PALETTE[i % len(PALETTE)] for i, v in enumerate(versions)}


def _baseline_changed() -> None:
    set_query_param("baseline", st.session_state[BASELINE_PICKER])


def baseline_picker(versions: list[str], champion: str | None) -> str:
    """The baseline: from the URL (``&baseline=V``) when it is one of the versions, else the first; the select
    box writes it back to the URL."""
    base = pick_baseline(versions, st.query_params.get("baseline"))
    if st.session_state.get(BASELINE_PICKER) != base:
        st.session_state[BASELINE_PICKER] = base
    base = st.selectbox("Baseline", versions, key=BASELINE_PICKER, on_change=_baseline_changed,
                        format_func=lambda v: f"v{v}" + (" (champion)" if v == champion else ""),
                        help="Deltas and added/removed/changed are relative to this version")
    set_query_param("baseline", base)
    return base


def metric_table(rows: list[dict], versions: list[str], baseline: str):
    """Values and signed deltas against the baseline as text (missing: —), deltas coloured better/worse."""
    recs = []
    for r in rows:
        rec = {"metric": r["metric"], "better": r["direction"]}
        for v in versions:
            rec[f"v{v}"] = fmt_num(r["values"][v], 4)
            if v != baseline:
                d = r["deltas"][v]
                rec[f"Δ v{v}"] = MISSING if d is None else f"{d:+.4f}"
        recs.append(rec)
    df = pd.DataFrame(recs)

    def colour(col):
        if not col.name.startswith("Δ"):
            return [""] * len(col)
        v = col.name.split("v", 1)[1]
        return [f"color: {GOOD}; font-weight: 600" if r["better"].get(v) is True else
                f"color: {BAD}; font-weight: 600" if r["better"].get(v) is False else "" for r in rows]

    return df, df.style.apply(colour, axis=0)


def metric_dots(rows: list[dict], versions: list[str], metrics: list[str], colors: dict[str, str]):
    """Each version's value per metric as a dot in its colour, side by side; the axis fits the values (bars from
    zero would hide differences in the third decimal)."""
    import plotly.graph_objects as go  # only a page that draws the chart pays for it

    by = {r["metric"]: r for r in rows}
    vals = [x for m in metrics for x in by[m]["values"].values() if x is not None]
    pad = (max(vals) - min(vals)) * 0.15 or abs(max(vals, default=1)) * 0.01 or 0.01
    fig = go.Figure()
    for v in versions:
        ys = [by[m]["values"].get(v) for m in metrics]
        fig.add_trace(go.Scatter(x=metrics, y=ys, name=f"v{v}", mode="markers", offsetgroup=f"v{v}",
                                 marker={"color": colors[f"v{v}"], "size": 13, "line": {"width": 1, "color": "white"}},
                                 hovertemplate=f"v{v}<br>%{{x}}: %{{y:.4f}}<extra></extra>"))
    fig.update_layout(scattermode="group", height=320, margin={"l": 10, "r": 10, "t": 30, "b": 10},
                      legend={"orientation": "h", "y": -0.2}, yaxis_title="value", hovermode="x unified",
                      yaxis={"range": [min(vals) - pad, max(vals) + pad]} if vals else {})
    return fig


def version_roles(cmp, versions: list[str]) -> None:
    """One line per version with an alias or a retraining lineage: which is the champion, which the challenger,
    and what a retrained version came from (and why)."""
    from services.retraining import lineage

    lines = []
    for v in versions:
        d = cmp.details.get(v)
        if d is None:
            continue
        bits = [f"@{a}" for a in sorted(d.summary.aliases)]
        run = d.run
        lin = lineage({**(run.tags if run else {}), **d.summary.tags}, run.metrics if run else {})
        if lin:
            bits.append(f"retrained from v{lin['parent_version']} by {lin['trigger'] or 'an unknown trigger'}")
        if bits:
            lines.append(f"**v{v}** " + " · ".join(bits))
    if lines:
        st.markdown("  \n".join(lines))


def compare_page(name: str, versions: list[str]) -> None:
    with st.spinner(f"Reading {len(versions)} versions of {name}…"):
        cmp = data.comparison(data.key(), name, tuple(versions))
    champion = next((v for v, d in cmp.details.items() if "champion" in d.summary.aliases), None)
    link("models", f"{name}", icon=":material/arrow_back:", model=name)
    st.title(f"Compare {name}")
    c1, c2 = st.columns([1, 2], vertical_alignment="bottom")
    with c1:
        base = baseline_picker(versions, champion)
    with c2:
        diff_only = st.toggle("Differences only", value=st.query_params.get("diff") != "all", key=state.DIFF_ONLY)
    set_query_param("diff", "only" if diff_only else "all")
    st.caption(f"Baseline: v{base} · deltas are against the baseline, green where better")
    version_roles(cmp, versions)
    colors = version_colors(versions)
    vcols = {v: f"v{v}" for v in versions}
    tabs = st.tabs(TABS)
    with tabs[0]:
        metrics_tab(cmp, name, versions, base, colors)
    with tabs[1]:
        rows = cmp.params(differences_only=diff_only)
        if rows:
            df = pd.DataFrame(rows).rename(columns=vcols)
            df = clean_frame(df.drop(columns=["differs"]) if diff_only else df)
            table(df, key="param-diff", file_name=f"{safe_name(name)}-param-diff.csv")
        else:
            st.info("No parameter differs." if diff_only else "No parameters were logged.")
    with tabs[2]:
        curves_tab(cmp, colors)
    with tabs[3]:
        rows = [r for r in cmp.signature(base) if not diff_only or r["status"] != "same"]
        if rows:
            table(clean_frame(pd.DataFrame(rows).rename(columns=vcols)), key="signature-diff",
                  file_name=f"{safe_name(name)}-signature-diff.csv")
        else:
            st.success("The signatures are the same.", icon=":material/check:")
    with tabs[4]:
        rows = [r for r in cmp.dependencies(base) if not diff_only or r["status"] != "same"]
        if rows:
            summary = {s: sum(1 for r in rows if r["status"] == s) for s in ("added", "removed", "changed")}
            st.caption(" · ".join(f"{n} {s}" for s, n in summary.items()) + f" (against v{base})")
            table(clean_frame(pd.DataFrame(rows).rename(columns=vcols)), key="dependency-diff",
                  file_name=f"{safe_name(name)}-dependency-diff.csv")
        else:
            st.success("The dependencies are the same.", icon=":material/check:")
    with tabs[5]:
        rows = cmp.tags(differences_only=diff_only)
        if rows:
            df = pd.DataFrame(rows).rename(columns=vcols)
            table(clean_frame(df.drop(columns=["differs"]) if diff_only else df), key="tag-diff",
                  file_name=f"{safe_name(name)}-tag-diff.csv")
        else:
            st.info("No tag differs." if diff_only else "No tags.")
    explanation_drift(name, versions, base)  # SHAP on the same rows, drawn when opened (&explain=1)


def metrics_tab(cmp, name: str, versions: list[str], base: str, colors: dict[str, str]) -> None:
    rows = cmp.metrics(base)
    if not rows:
        st.info("No metrics were logged.")
        return
    df, styled = metric_table(rows, versions, base)
    right = {c: st.column_config.TextColumn(c, alignment="right") for c in df.columns if c.startswith(("v", "Δ"))}
    st.dataframe(styled, hide_index=True, key="metric-diff", column_config=right)
    st.download_button("Download CSV", lambda: df.to_csv(index=False).encode(), key="metric-diff-download",
                       file_name=f"{safe_name(name)}-metric-diff.csv", mime="text/csv", icon=":material/download:",
                       on_click="ignore")
    box = chart_expander("Chart of these metrics", CHART_OPEN, ":material/scatter_plot:")
    if box is None:
        return
    with box:
        names = [r["metric"] for r in rows]
        default = [m for m in KEY_METRICS if m in names] or names[:2]
        picked = st.multiselect("Chart metrics", names, default=default, key=METRICS_PICKER)
        if picked:
            st.plotly_chart(metric_dots(rows, versions, picked, colors), key="compare-metric-bars")




def curves_tab(cmp, colors: dict[str, str]) -> None:
    keys = sorted({k for d in cmp.details.values() if d.run for k in d.run.metrics})
    with_hist = [k for k in keys if any(len(data.metric_history(data.key(), d.run.run_id, k)) > 1
                                        for d in cmp.details.values() if d.run and k in d.run.metrics)]
    if not with_hist:
        st.info("None of these versions logged metrics over training steps.")
        return
    k = st.selectbox("Metric", with_hist, key=state.CURVE_PICKER)
    series = {f"v{v}": data.metric_history(data.key(), d.run.run_id, k)
              for v, d in cmp.details.items() if d.run and k in d.run.metrics}
    st.plotly_chart(curves_chart({lbl: p for lbl, p in series.items() if p}, f"{k} over training", colors),
                    key="compare-curves")
