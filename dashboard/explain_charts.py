"""Plotly charts of explanations (global importance, beeswarm, dependence, waterfall, explanation drift) and the
drift table; pure functions of an :class:`~services.explain.Explanation` or the service's plain dicts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from services.explain import Explanation

UP, DOWN, TOTAL = "#cf222e", "#0969da", "#6e7781"  # pushes the output up / down (SHAP's own convention)
TOP_IMPORTANCE, TOP_BEESWARM, TOP_WATERFALL, TOP_DRIFT = 20, 15, 12, 15
MARGIN = {"l": 10, "r": 10, "t": 40, "b": 10}


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and v != v):
        return "—"
    return f"{v:.4g}" if isinstance(v, float | np.floating) else str(v)


def importance_chart(exp: Explanation, top: int = TOP_IMPORTANCE) -> go.Figure:
    imp = exp.importance()[:top][::-1]  # the most important at the top
    fig = go.Figure(go.Bar(
        x=[r["mean_abs_shap"] for r in imp], y=[r["feature"] for r in imp], orientation="h", marker_color=DOWN,
        customdata=[[r["share"], r["rank"]] for r in imp],
        hovertemplate="%{y}<br>mean |SHAP| %{x:.4g}<br>%{customdata[0]:.1%} of the total · rank %{customdata[1]}"
                      "<extra></extra>"))
    more = len(exp.features) - len(imp)
    fig.update_layout(title=f"Global importance: mean |SHAP| ({exp.output_label})"
                            + (f" — top {len(imp)} of {len(exp.features)}" if more > 0 else ""),
                      height=max(280, 24 * len(imp) + 90), margin=MARGIN, xaxis_title="mean |SHAP value|")
    return fig


def _colour_scale(values: np.ndarray) -> np.ndarray:
    """Each value's rank within its feature, 0 (lowest) to 1 (highest); NaN stays NaN (drawn grey)."""
    out = np.full(len(values), np.nan)
    finite = np.isfinite(values)
    if finite.sum() > 1:
        ranks = pd.Series(values[finite]).rank(method="average").to_numpy()
        out[finite] = (ranks - 1) / max(1, finite.sum() - 1)
    elif finite.any():
        out[finite] = 0.5
    return out


def beeswarm_chart(exp: Explanation, top: int = TOP_BEESWARM, seed: int = 0) -> go.Figure:
    """Every row's SHAP value per feature (one band per feature, most important on top), coloured by the
    feature's value from low (blue) to high (red) within the feature; hover shows the row, value and SHAP."""
    names = [r["feature"] for r in exp.importance()[:top]]
    rng = np.random.default_rng(seed)
    xs, ys, colours, custom = [], [], [], []
    ids = np.asarray(list(exp.row_ids) or range(exp.rows), dtype=object)
    for pos, name in enumerate(names):
        j = exp.features.index(name)
        shap_j = exp.values[:, j]
        values = np.asarray(exp.data[:, j], dtype=float)
        band = len(names) - 1 - pos
        spread = 0.35 * _density(shap_j)  # wider where many rows share similar SHAP values, like a swarm
        xs.append(shap_j)
        ys.append(band + rng.uniform(-1, 1, len(shap_j)) * spread)
        colours.append(_colour_scale(values))
        custom += [[name, _fmt(float(v)), rid] for v, rid in zip(values, ids, strict=True)]
    fig = go.Figure(go.Scatter(
        x=np.concatenate(xs) if xs else [], y=np.concatenate(ys) if ys else [], mode="markers",
        marker={"color": np.concatenate(colours) if colours else [], "colorscale": "RdBu_r", "cmin": 0, "cmax": 1,
                "size": 5, "opacity": 0.75,
                "colorbar": {"title": {"text": "feature value"}, "tickvals": [0, 1], "ticktext": ["low", "high"]}},
        customdata=custom,
        hovertemplate="%{customdata[0]} = %{customdata[1]}<br>SHAP %{x:+.4g}<br>row %{customdata[2]}<extra></extra>"))
    fig.add_vline(x=0, line={"color": TOTAL, "width": 1})
    fig.update_layout(title=f"Beeswarm: each row's SHAP value per feature ({exp.output_label})",
                      height=max(300, 30 * len(names) + 90), margin=MARGIN, showlegend=False,
                      xaxis_title=f"SHAP value (pushes the {exp.output_space} output up → )",
                      yaxis={"tickvals": list(range(len(names))), "ticktext": names[::-1], "zeroline": False})
    return fig


def _density(values: np.ndarray) -> np.ndarray:
    """A 0..1 weight per value: how crowded its neighbourhood is (a 30-bin histogram)."""
    if len(values) < 2 or np.ptp(values) == 0:
        return np.ones(len(values))
    counts, edges = np.histogram(values, bins=30)
    idx = np.clip(np.digitize(values, edges[1:-1]), 0, len(counts) - 1)
    return counts[idx] / counts.max()


def dependence_chart(exp: Explanation, feature: str) -> go.Figure:
    """SHAP value of one feature against its value, coloured by the model output."""
    j = exp.features.index(feature)
    ids = list(exp.row_ids) or list(range(exp.rows))
    fig = go.Figure(go.Scatter(
        x=np.asarray(exp.data[:, j], dtype=float), y=exp.values[:, j], mode="markers",
        marker={"color": exp.outputs, "colorscale": "Viridis", "size": 7, "opacity": 0.8,
                "colorbar": {"title": {"text": "output"}}},
        customdata=[[rid, float(o)] for rid, o in zip(ids, exp.outputs, strict=True)],
        hovertemplate=f"{feature} = %{{x:.4g}}<br>SHAP %{{y:+.4g}}<br>output %{{customdata[1]:.4g}}"
                      "<br>row %{customdata[0]}<extra></extra>"))
    fig.add_hline(y=0, line={"color": TOTAL, "width": 1})
    fig.update_layout(title=f"Dependence: {feature}", height=360, margin=MARGIN, xaxis_title=feature,
                      yaxis_title=f"SHAP value of {feature} ({exp.output_space})")
    return fig


def waterfall_chart(w: dict, top: int = TOP_WATERFALL) -> go.Figure:
    """From the base value through the largest pushes (the rest summed) to the model output."""
    steps = w["steps"][:top]
    rest = w["steps"][top:]
    labels = ["base value"] + [f"{s['feature']} = {_fmt(s['value'])}" for s in steps]
    values = [w["base_value"]] + [s["shap"] for s in steps]
    if rest:
        labels.append(f"{len(rest)} other features")
        values.append(sum(s["shap"] for s in rest))
    labels.append("output")
    values.append(w["output"])
    fig = go.Figure(go.Waterfall(
        orientation="h", y=labels, x=values, measure=["absolute"] + ["relative"] * (len(values) - 2) + ["total"],
        increasing={"marker": {"color": UP}}, decreasing={"marker": {"color": DOWN}},
        totals={"marker": {"color": TOTAL}}, connector={"line": {"color": "#d0d7de"}},
        text=[f"{v:.4g}" if i in (0, len(values) - 1) else f"{v:+.4g}" for i, v in enumerate(values)],
        textposition="outside", hovertemplate="%{y}<br>%{text}<extra></extra>"))
    fig.update_layout(title=f"Why this prediction: {w['output_label']}", height=max(300, 28 * len(labels) + 90),
                      margin=MARGIN, yaxis={"autorange": "reversed"}, showlegend=False,
                      xaxis={"title": {"text": w["output_label"]}, "range": _padded(values)})
    return fig


def _padded(values: list[float]) -> list[float]:
    """An x range holding every bar of the waterfall (from 0, through the running sums) with room on both
    sides for the labels drawn outside the bars."""
    ends = [0.0, *np.cumsum(values[:-1]).tolist(), values[-1]]
    lo, hi = min(ends), max(ends)
    pad = 0.15 * ((hi - lo) or 1.0)
    return [lo - pad, hi + pad]


def drift_frame(d: dict, a: str, b: str) -> pd.DataFrame:
    """The per-feature drift table with ``a``/``b`` (e.g. ``v2``/``v4``) in the column names."""
    rows = [{"feature": r["feature"], f"rank {a}": r["rank_a"], f"rank {b}": r["rank_b"],
             "rank change": r["rank_change"], f"share {a}": r["share_a"], f"share {b}": r["share_b"],
             "shift": r["shift"], f"mean |SHAP| {a}": r["mean_abs_shap_a"], f"mean |SHAP| {b}": r["mean_abs_shap_b"],
             "only in": {"a": a, "b": b}.get(r["only_in"] or "", "")} for r in d["features"]]
    return pd.DataFrame(rows).astype({f"rank {a}": "Int64", f"rank {b}": "Int64", "rank change": "Int64"})


def drift_chart(d: dict, a: str, b: str, top: int = TOP_DRIFT) -> go.Figure:
    """Each feature's share of the total mean |SHAP| in ``a`` and ``b``, the most shifted features first."""
    rows = d["features"][:top][::-1]
    fig = go.Figure()
    for label, key, colour in ((a, "share_a", TOTAL), (b, "share_b", UP)):
        fig.add_trace(go.Bar(
            y=[r["feature"] for r in rows], x=[r[key] for r in rows], name=label, orientation="h",
            marker_color=colour, customdata=[[r["shift"], r["rank_a"] or "—", r["rank_b"] or "—"] for r in rows],
            hovertemplate=f"%{{y}}<br>{label}: %{{x:.1%}} of the total<br>shift %{{customdata[0]:+.1%}} · rank "
                          f"{a} %{{customdata[1]}} → {b} %{{customdata[2]}}<extra></extra>"))
    fig.update_layout(barmode="group", title=f"Share of mean |SHAP|: {a} vs {b} (attribution shift "
                                             f"{d['attribution_shift']:.1%})",
                      height=max(300, 34 * len(rows) + 100), margin=MARGIN, xaxis={"tickformat": ".0%"},
                      legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "xanchor": "right", "x": 1})
    return fig
