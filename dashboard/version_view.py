"""The page of one model version: where it serves and its gates, then its run in tabs (overview, parameters,
metrics with training curves, signature, dependencies, lineage).

Pages route; these functions lay out. The model page's helpers (where a version serves, the endpoints'
gates) are in :mod:`dashboard.models_view`.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import data
from dashboard.bootstrap import container
from dashboard.components import MISSING, clean_frame, fmt_time, table
from dashboard.models_view import endpoint_gates, safe_name, serving_for
from dashboard.nav import link
from services.history import dataset_shape, dataset_source, metric_direction


def serving_line(name: str, version: str) -> None:
    """Where this version serves (with links to the endpoints) and whether it passes their gates now."""
    views, slots = serving_for(name)
    mine = slots.get(version, [])
    if mine:
        cols = st.columns(min(len(mine), 4))
        for i, s in enumerate(mine):
            with cols[i % len(cols)]:
                st.metric(f"Serving on {s.endpoint}", f"{s.role} {s.weight}%")
                link("deployments", f"Open {s.endpoint}", icon=":material/rocket_launch:", endpoint=s.endpoint)
    else:
        st.caption("Not serving on any endpoint.")
    view = data.model_view(data.key(), name)
    eg = [e for e in endpoint_gates(views, {v.version: v.metrics for v in view.versions}) if e.gates]
    def against(e):
        if e.champion == version:
            return "this is the champion: only absolute limits apply"
        return f"against champion v{e.champion}" if e.champion else "no champion: only absolute limits apply"

    lines = [f"- Gates of **{e.endpoint}** ({against(e)}): **{e.label(version)}** — "
             + "; ".join(f"{r.name}: {r.detail}" for r in e.results.get(version, [])) for e in eg]
    if lines:
        st.markdown("\n".join(lines))


def version_page(name: str, version: str) -> None:
    with st.spinner(f"Reading {name} v{version}…"):
        d = data.version_detail(data.key(), name, version)
    s = d.summary
    reg = container().registry
    link("models", f"{name}", icon=":material/arrow_back:", model=name)
    st.title(f"{name} · v{s.version}")
    badges = " ".join(f":orange-badge[@{a}]" for a in s.aliases)
    st.markdown(f"{badges} :gray-badge[{s.status or 'status unknown'}] created {fmt_time(s.created)}")
    if s.description:
        st.markdown(s.description)
    for w in d.load_warnings:
        st.warning(w, icon=":material/warning:")
    run = d.run
    serving_line(name, s.version)
    tabs = st.tabs(["Overview", "Parameters", "Metrics", "Signature", "Dependencies", "Lineage"])
    with tabs[0]:
        overview_tab(name, d, reg)
    with tabs[1]:
        params = sorted((run.params if run else {}).items())
        if params:
            table(clean_frame(pd.DataFrame(params, columns=["parameter", "value"])), key="params-table",
                  file_name=f"{safe_name(name)}-v{s.version}-params.csv")
        else:
            st.info("This version's run logged no parameters.")
    with tabs[2]:
        metrics_tab(name, s.version, run)
    with tabs[3]:
        signature_tab(d.signature)
    with tabs[4]:
        if d.requirements:
            table(pd.DataFrame({"requirement": list(d.requirements)}), key="deps-table",
                  file_name=f"{safe_name(name)}-v{s.version}-requirements.csv")
        else:
            st.info("No requirements.txt was logged with this model.")
    with tabs[5]:
        lineage_tab(name, d)


def overview_tab(name: str, d, reg) -> None:
    s, run = d.summary, d.run
    rl = reg.run_link(run)
    vl = reg.version_link(name, s.version)
    info = {
        "Run": f"[{run.run_id}]({rl})" if run and rl else (run.run_id if run else MISSING),
        "Run name": (run.run_name or MISSING) if run else MISSING,
        "Trained": f"{fmt_time(run.start_time)} → {fmt_time(run.end_time)}" if run and run.start_time else MISSING,
        "Source commit": f"`{d.source_commit}`" if d.source_commit else MISSING,
        "Artifact location": f"`{d.artifact_location}`" if d.artifact_location else MISSING,
        "Registry source": f"`{s.source}`" if s.source else MISSING,
        "Flavors": ", ".join(d.flavors) or MISSING,
        "In MLflow UI": f"[open]({vl})" if vl else "set MLOPS_MLFLOW_UI_URL to link",
    }
    st.markdown("\n".join(f"- **{k}:** {v}" for k, v in info.items()))
    user_tags = {k: v for k, v in s.tags.items() if not k.startswith("mlflow.")}
    if user_tags:
        st.markdown("**Version tags**")
        st.dataframe(clean_frame(pd.DataFrame(sorted(user_tags.items()), columns=["tag", "value"])),
                     hide_index=True)
    if run and run.tags.get("mlflow.note.content"):
        st.markdown("**Run description**")
        st.markdown(run.tags["mlflow.note.content"])


def curves_chart(series: dict[str, list], title: str, colors: dict[str, str] | None = None):
    """A Plotly figure of metric histories (``label -> points``), one line each, in ``colors`` when given."""
    import plotly.graph_objects as go  # only pages that draw a chart pay for it

    fig = go.Figure()
    for label, points in series.items():
        line = {"color": colors[label], "width": 2.5} if colors and label in colors else None
        fig.add_trace(go.Scatter(x=[p.step for p in points], y=[p.value for p in points], mode="lines",
                                 name=label, line=line,
                                 hovertemplate=f"{label}<br>step %{{x}}: %{{y:.4f}}<extra></extra>"))
    fig.update_layout(title=title, height=320, margin={"l": 10, "r": 10, "t": 40, "b": 10},
                      xaxis_title="step", hovermode="x unified", showlegend=bool(colors))
    return fig


def metrics_tab(name: str, version: str, run) -> None:
    metrics = run.metrics if run else {}
    if not metrics:
        st.info("This version's run logged no metrics.")
        return
    table(clean_frame(pd.DataFrame([{"metric": k, "value": v, "better": metric_direction(k)}
                                    for k, v in sorted(metrics.items())])), key="metrics-table",
          file_name=f"{safe_name(name)}-v{version}-metrics.csv",
          column_config={"value": st.column_config.NumberColumn(format="%.5f")})
    curves = {}
    for k in sorted(metrics):
        hist = data.metric_history(data.key(), run.run_id, k)
        if len(hist) > 1:
            curves[k] = hist
    if curves:
        st.markdown("**Training curves**")
        for k, pts in curves.items():
            st.plotly_chart(curves_chart({k: pts}, k), key=f"curve-{k}")
    else:
        st.caption("No metric was logged over training steps for this version.")


def signature_tab(sig) -> None:
    if sig is None:
        st.info("This version has no signature.")
        return
    a, b = st.columns(2)
    a.markdown("**Inputs**")
    a.dataframe(clean_frame(pd.DataFrame(sig.inputs, columns=["name", "type"])), hide_index=True)
    b.markdown("**Outputs**")
    b.dataframe(clean_frame(pd.DataFrame(sig.outputs, columns=["name", "type"])), hide_index=True)
    if sig.params:
        st.markdown("**Inference parameters**")
        st.dataframe(clean_frame(pd.DataFrame(sig.params, columns=["name", "type"])), hide_index=True)


def _better(metric: str, candidate: float, champion: float | None) -> str | None:
    if champion is None:
        return None
    if candidate == champion:
        return "equal"
    return "candidate" if (candidate > champion) == (metric_direction(metric) == "higher") else "champion"


def retraining_lineage(name: str, d) -> None:
    """A retrained version: its parent, data window, trigger and reason, and candidate vs champion on one holdout."""
    from services.retraining import lineage

    run = d.run
    lin = lineage({**(run.tags if run else {}), **d.summary.tags}, run.metrics if run else {})
    if lin is None:
        return
    st.markdown("**Retraining lineage**")
    link("models", f"Retrained from v{lin['parent_version']}", icon=":material/call_split:", model=name,
         version=lin["parent_version"])
    window = f"{lin['window_from']} → {lin['window_to']}" if lin["window_from"] else "none (original data only)"
    st.markdown(f"- **Endpoint:** {lin['endpoint'] or MISSING}\n- **Labelled prediction window:** {window}\n"
                f"- **Trigger:** {lin['trigger'] or MISSING}\n- **Reason:** {lin['reason'] or MISSING}")
    if lin["comparison"]:
        champion = lin["champion_version"]
        rows = [{"metric": r["metric"], f"v{d.summary.version} (candidate)": r["candidate"],
                 f"v{champion} (champion)" if champion else "champion": r["champion"],
                 "better": _better(r["metric"], r["candidate"], r["champion"])} for r in lin["comparison"]]
        st.caption("Both evaluated on the same holdout (the parent's held-out data).")
        table(clean_frame(pd.DataFrame(rows)), key="retraining-comparison",
              file_name=f"{safe_name(name)}-v{d.summary.version}-holdout-comparison.csv")
        if champion and champion != d.summary.version:
            link("models", f"Compare v{d.summary.version} with the champion v{champion}",
                 icon=":material/compare_arrows:", model=name, compare=f"{champion},{d.summary.version}")


def lineage_tab(name: str, d) -> None:
    retraining_lineage(name, d)
    run = d.run
    if run and run.datasets:
        df = clean_frame(pd.DataFrame([{"dataset": ds.name, "context": ds.context, "digest": ds.digest,
                                        "source type": ds.source_type,
                                        "source": dataset_source(ds.source_type, ds.source),
                                        "shape": dataset_shape(ds.schema, ds.profile)}
                                       for ds in run.datasets]))
        table(df, key="lineage-table", file_name=f"{safe_name(name)}-v{d.summary.version}-datasets.csv",
              column_config={"source": st.column_config.TextColumn(width="large")})
        st.markdown("\n".join(f"- **{r['dataset']}** ({r['context']}, digest `{r['digest']}`, {r['source type']}): "
                               + (f"`{r['source']}`" if r["source"] != MISSING else MISSING)
                               for r in df.to_dict("records")))
    else:
        st.info("No dataset was logged as this run's input.")
    st.markdown(f"- **Source commit:** `{d.source_commit or 'not recorded'}`")
    if run:
        src = run.tags.get("mlflow.source.name")
        if src:
            st.markdown(f"- **Source:** `{src}`")
