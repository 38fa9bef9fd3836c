"""Model history: models → a model → a version → compare. The URL holds the view:
``/models``, ``?model=NAME``, ``?model=NAME&version=V``, ``?model=NAME&compare=3,5``."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from dashboard import data, state
from dashboard.bootstrap import container
from dashboard.components import fmt_time, guard, show_error, table
from dashboard.nav import href, link
from services.errors import ConsoleError, NotFound
from services.history import metric_direction, parse_compare

GOOD, BAD = "#1a7f37", "#cf222e"


def models_list() -> None:
    st.title("Models")
    st.caption("Every registered model in the registry. Search by name; open one to see its versions.")
    q = st.text_input("Search by name", value=st.query_params.get("q", ""), key=state.MODEL_SEARCH,
                      placeholder="e.g. classifier", icon=":material/search:")
    if q:
        st.query_params["q"] = q
    elif "q" in st.query_params:
        del st.query_params["q"]
    with st.spinner("Reading the registry…"):
        models = data.models(data.key(), q)
    if not models:
        st.info("No registered model matches." if q else "The registry has no registered models yet.")
        return
    df = pd.DataFrame([{
        "Model": m.name,
        "Open": href("models", model=m.name),
        "Aliases": ", ".join(f"@{a} → v{v}" for a, v in sorted(m.aliases.items())),
        "Versions": m.version_count,
        "Latest": f"v{m.latest_version}" if m.latest_version else "—",
        "Last updated": m.last_updated,
        "Description": (m.description or "").split("\n")[0][:120],
        "Tags": ", ".join(f"{k}={v}" for k, v in sorted(m.tags.items())),
    } for m in models])
    st.caption(f"{len(models)} model{'s' if len(models) != 1 else ''} · newest activity first · select a row to "
               "open it")
    event = table(df, key=state.MODELS_TABLE, file_name="models.csv", on_select="rerun",
                  selection_mode="single-row", column_config={
                      "Open": st.column_config.LinkColumn("Open", display_text="open ↗"),
                      "Last updated": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm"),
                      "Description": st.column_config.TextColumn(width="large"),
                  })
    rows = event.selection.rows if event else []
    if rows:
        st.query_params.clear()
        st.query_params["model"] = models[rows[0]].name
        st.rerun()


def metric_chart(view, metrics: list[str]) -> go.Figure:
    versions = sorted(view.versions, key=lambda v: v.version_int)
    fig = go.Figure()
    for m in metrics:
        xs = [f"v{v.version}" for v in versions if m in v.metrics]
        ys = [v.metrics[m] for v in versions if m in v.metrics]
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines+markers", name=f"{m} ({metric_direction(m)} is better)",
                                 hovertemplate=f"{m}: %{{y:.4f}}<br>%{{x}}<extra></extra>"))
        champ = view.champion
        if champ and any(v.version == champ and m in v.metrics for v in versions):
            val = next(v.metrics[m] for v in versions if v.version == champ)
            fig.add_trace(go.Scatter(x=[f"v{champ}"], y=[val], mode="markers", showlegend=False,
                                     marker={"symbol": "star", "size": 18, "color": "gold",
                                             "line": {"width": 1, "color": "black"}},
                                     hovertemplate=f"champion v{champ}<br>{m}: %{{y:.4f}}<extra></extra>"))
    if view.champion:
        # add_vline(annotation_text=...) raises TypeError on a category axis (plotly averages the x values)
        fig.add_vline(x=f"v{view.champion}", line_dash="dot", line_color="goldenrod")
        fig.add_annotation(x=f"v{view.champion}", y=1, yref="paper", yanchor="bottom", text="champion",
                           showarrow=False)
    fig.update_layout(height=360, margin={"l": 10, "r": 10, "t": 30, "b": 10}, hovermode="x unified",
                      xaxis_title="version", legend={"orientation": "h", "y": -0.25},
                      xaxis={"type": "category", "categoryorder": "array",
                             "categoryarray": [f"v{v.version}" for v in versions]})
    return fig


def model_page(name: str) -> None:
    with st.spinner(f"Reading {name}…"):
        view = data.model_view(data.key(), name)
    m = view.model
    link("models", "All models", icon=":material/arrow_back:")
    st.title(m.name)
    if m.description:
        st.markdown(m.description)
    cols = st.columns(4)
    cols[0].metric("Versions", m.version_count)
    cols[1].metric("Champion", f"v{view.champion}" if view.champion else "—")
    cols[2].metric("Challenger", f"v{m.aliases['challenger']}" if "challenger" in m.aliases else "—")
    cols[3].metric("Last updated", m.last_updated.strftime("%Y-%m-%d") if m.last_updated else "—",
                   fmt_time(m.last_updated).split(" ", 1)[-1] if m.last_updated else None, delta_color="off",
                   delta_arrow="off")
    if m.tags:
        st.caption(" · ".join(f"`{k}` = {v}" for k, v in sorted(m.tags.items())))
    key_metrics = view.metric_names[:6]
    reg = container().registry
    rows = []
    for v in view.versions:
        row = {"Version": int(v.version) if v.version.isdigit() else v.version,
               "Open": href("models", model=name, version=v.version),
               "Aliases": ", ".join(f"@{a}" for a in v.aliases), "Status": v.status}
        for k in key_metrics:
            row[k] = v.metrics.get(k)
        row["Created"] = v.created
        row["Tags"] = ", ".join(f"{k}={val}" for k, val in sorted(v.tags.items()) if not k.startswith("mlflow."))
        row["Run"] = reg.run_link(_run_stub(v)) or (v.run_id or "")
        rows.append(row)
    df = pd.DataFrame(rows)
    st.subheader("Versions")
    table(df, key="versions-table", file_name=f"{_safe(name)}-versions.csv", column_config={
        "Open": st.column_config.LinkColumn("Open", display_text="details ↗"),
        "Created": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm"),
        "Run": st.column_config.LinkColumn("Run") if container().settings.mlflow_ui_url else
        st.column_config.TextColumn("Run id"),
        **{k: st.column_config.NumberColumn(k, format="%.4f") for k in key_metrics},
    })
    c1, c2 = st.columns(2)
    with c1:
        picked = st.selectbox("Open a version", [v.version for v in view.versions], key=state.VERSION_PICKER,
                              format_func=lambda x: f"v{x}" + (" (champion)" if x == view.champion else ""))
        if st.button("Open version", key=state.OPEN_VERSION, icon=":material/open_in_new:"):
            st.query_params.clear()
            st.query_params.update({"model": name, "version": picked})
            st.rerun()
    with c2:
        default = [v.version for v in view.versions[:2]]
        chosen = st.multiselect("Compare versions", [v.version for v in view.versions], default=default,
                                key=state.COMPARE_PICKER, format_func=lambda x: f"v{x}", max_selections=8)
        if st.button("Compare", key=state.OPEN_COMPARE, icon=":material/compare_arrows:",
                     disabled=len(chosen) < 2):
            st.query_params.clear()
            st.query_params.update({"model": name, "compare": ",".join(chosen)})
            st.rerun()
    if view.metric_names:
        st.subheader("Metrics across versions")
        default_metrics = [k for k in view.metric_names if k in ("roc_auc", "accuracy", "f1", "r2")][:2] or \
            view.metric_names[:1]
        picked_metrics = st.multiselect("Metrics", view.metric_names, default=default_metrics,
                                        key=state.METRIC_PICKER)
        if picked_metrics:
            st.plotly_chart(metric_chart(view, picked_metrics), key="metric-chart")


def _run_stub(v):
    if not v.run_id:
        return None
    from services.registry import RunDetail

    return RunDetail(run_id=v.run_id, experiment_id=v.experiment_id or "0")


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)[:80] or "model"


def curves_chart(series: dict[str, list], title: str) -> go.Figure:
    fig = go.Figure()
    for label, points in series.items():
        fig.add_trace(go.Scatter(x=[p.step for p in points], y=[p.value for p in points], mode="lines",
                                 name=label, hovertemplate=f"{label}<br>step %{{x}}: %{{y:.4f}}<extra></extra>"))
    fig.update_layout(title=title, height=320, margin={"l": 10, "r": 10, "t": 40, "b": 10},
                      xaxis_title="step", hovermode="x unified")
    return fig


def version_page(name: str, version: str) -> None:
    with st.spinner(f"Reading {name} v{version}…"):
        d = data.version_detail(data.key(), name, version)
    s = d.summary
    reg = container().registry
    c1, c2 = st.columns([1, 1])
    with c1:
        link("models", f"{name}", icon=":material/arrow_back:", model=name)
    st.title(f"{name} · v{s.version}")
    badges = " ".join(f":orange-badge[@{a}]" for a in s.aliases)
    st.markdown(f"{badges} :gray-badge[{s.status or 'status unknown'}] created {fmt_time(s.created)}")
    if s.description:
        st.markdown(s.description)
    for w in d.load_warnings:
        st.warning(w, icon=":material/warning:")
    tabs = st.tabs(["Overview", "Parameters", "Metrics", "Signature", "Dependencies", "Lineage"])
    run = d.run
    with tabs[0]:
        rl = reg.run_link(run)
        vl = reg.version_link(name, s.version)
        info = {
            "Run": f"[{run.run_id}]({rl})" if run and rl else (run.run_id if run else "—"),
            "Run name": run.run_name if run else "—",
            "Source commit": f"`{d.source_commit}`" if d.source_commit else "—",
            "Artifact location": f"`{d.artifact_location}`" if d.artifact_location else "—",
            "Registry source": f"`{s.source}`",
            "Flavors": ", ".join(d.flavors) or "—",
            "In MLflow UI": f"[open]({vl})" if vl else "set MLOPS_MLFLOW_UI_URL to link",
        }
        st.markdown("\n".join(f"- **{k}:** {v}" for k, v in info.items()))
        user_tags = {k: v for k, v in s.tags.items() if not k.startswith("mlflow.")}
        if user_tags:
            st.markdown("**Version tags**")
            st.dataframe(pd.DataFrame(sorted(user_tags.items()), columns=["tag", "value"]), hide_index=True)
        if run and run.tags.get("mlflow.note.content"):
            st.markdown("**Run description**")
            st.markdown(run.tags["mlflow.note.content"])
    with tabs[1]:
        params = sorted((run.params if run else {}).items())
        if params:
            table(pd.DataFrame(params, columns=["parameter", "value"]), key="params-table",
                  file_name=f"{_safe(name)}-v{s.version}-params.csv")
        else:
            st.info("This version's run logged no parameters.")
    with tabs[2]:
        metrics = run.metrics if run else {}
        if metrics:
            table(pd.DataFrame([{"metric": k, "value": v, "better": metric_direction(k)}
                                for k, v in sorted(metrics.items())]), key="metrics-table",
                  file_name=f"{_safe(name)}-v{s.version}-metrics.csv",
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
        else:
            st.info("This version's run logged no metrics.")
    with tabs[3]:
        sig = d.signature
        if sig is None:
            st.info("This version has no signature.")
        else:
            a, b = st.columns(2)
            a.markdown("**Inputs**")
            a.dataframe(pd.DataFrame(sig.inputs, columns=["name", "type"]), hide_index=True)
            b.markdown("**Outputs**")
            b.dataframe(pd.DataFrame(sig.outputs, columns=["name", "type"]), hide_index=True)
            if sig.params:
                st.markdown("**Inference parameters**")
                st.dataframe(pd.DataFrame(sig.params, columns=["name", "type"]), hide_index=True)
    with tabs[4]:
        if d.requirements:
            table(pd.DataFrame({"requirement": list(d.requirements)}), key="deps-table",
                  file_name=f"{_safe(name)}-v{s.version}-requirements.csv")
        else:
            st.info("No requirements.txt was logged with this model.")
    with tabs[5]:
        if run and run.datasets:
            table(pd.DataFrame([{"dataset": ds.name, "context": ds.context, "digest": ds.digest,
                                 "source type": ds.source_type, "source": ds.source, "schema": ds.schema}
                                for ds in run.datasets]), key="lineage-table",
                  file_name=f"{_safe(name)}-v{s.version}-datasets.csv")
        else:
            st.info("No dataset was logged as this run's input.")
        st.markdown(f"- **Source commit:** `{d.source_commit or 'not recorded'}`")
        if run:
            src = run.tags.get("mlflow.source.name")
            if src:
                st.markdown(f"- **Source:** `{src}`")


def _style_metrics(rows: list[dict], versions: list[str]) -> pd.io.formats.style.Styler:
    recs = []
    for r in rows:
        rec = {"metric": r["metric"], "better": r["direction"]}
        for v in versions:
            rec[f"v{v}"] = r["values"][v]
            if v != versions[0]:
                rec[f"Δ v{v}"] = r["deltas"][v]
        recs.append(rec)
    df = pd.DataFrame(recs)

    def colour(col):
        if not col.name.startswith("Δ"):
            return [""] * len(col)
        v = col.name.split("v", 1)[1]
        out = []
        for r in rows:
            b = r["better"].get(v)
            out.append(f"color: {GOOD}; font-weight: 600" if b is True else
                       f"color: {BAD}; font-weight: 600" if b is False else "")
        return out

    deltas = {c: "{:+.4f}" for c in df.columns if c.startswith("Δ")}
    return df.style.apply(colour, axis=0).format(precision=4, na_rep="—").format(deltas, na_rep="—")


def compare_page(name: str, versions: list[str]) -> None:
    with st.spinner(f"Reading {len(versions)} versions of {name}…"):
        cmp = data.comparison(data.key(), name, tuple(versions))
    link("models", f"{name}", icon=":material/arrow_back:", model=name)
    st.title(f"Compare {name}")
    st.caption("Baseline: " + f"v{versions[0]}" + " · deltas are against the baseline, green where better")
    diff_only = st.toggle("Differences only", value=st.query_params.get("diff") != "all", key=state.DIFF_ONLY)
    st.query_params["diff"] = "only" if diff_only else "all"
    tabs = st.tabs(["Parameters", "Metrics", "Training curves", "Signature", "Dependencies", "Tags"])
    vcols = {v: f"v{v}" for v in versions}
    with tabs[0]:
        rows = cmp.params(differences_only=diff_only)
        if rows:
            df = pd.DataFrame(rows).rename(columns=vcols).fillna("—")
            if diff_only:
                df = df.drop(columns=["differs"])
            table(df, key="param-diff", file_name=f"{_safe(name)}-param-diff.csv")
        else:
            st.info("No parameter differs." if diff_only else "No parameters were logged.")
    with tabs[1]:
        rows = cmp.metrics()
        if rows:
            styled = _style_metrics(rows, versions)
            st.dataframe(styled, hide_index=True, key="metric-diff")
            st.download_button("Download CSV", styled.data.to_csv(index=False).encode(), key="metric-diff-download",
                               file_name=f"{_safe(name)}-metric-diff.csv", mime="text/csv",
                               icon=":material/download:")
        else:
            st.info("No metrics were logged.")
    with tabs[2]:
        keys = sorted({k for d in cmp.details.values() if d.run for k in d.run.metrics})
        with_hist = []
        for k in keys:
            if any(len(data.metric_history(data.key(), d.run.run_id, k)) > 1
                   for d in cmp.details.values() if d.run and k in d.run.metrics):
                with_hist.append(k)
        if with_hist:
            k = st.selectbox("Metric", with_hist, key=state.CURVE_PICKER)
            series = {f"v{v}": data.metric_history(data.key(), d.run.run_id, k)
                      for v, d in cmp.details.items() if d.run and k in d.run.metrics}
            st.plotly_chart(curves_chart({lbl: p for lbl, p in series.items() if p}, f"{k} over training"),
                            key="compare-curves")
        else:
            st.info("None of these versions logged metrics over training steps.")
    with tabs[3]:
        rows = cmp.signature()
        if diff_only:
            rows = [r for r in rows if r["status"] != "same"]
        if rows:
            df = pd.DataFrame(rows).rename(columns=vcols)
            table(df, key="signature-diff", file_name=f"{_safe(name)}-signature-diff.csv")
        else:
            st.success("The signatures are the same.", icon=":material/check:")
    with tabs[4]:
        rows = cmp.dependencies()
        if diff_only:
            rows = [r for r in rows if r["status"] != "same"]
        if rows:
            summary = {s: sum(1 for r in rows if r["status"] == s) for s in ("added", "removed", "changed")}
            st.caption(" · ".join(f"{n} {s}" for s, n in summary.items()))
            df = pd.DataFrame(rows).rename(columns=vcols)
            table(df, key="dependency-diff", file_name=f"{_safe(name)}-dependency-diff.csv")
        else:
            st.success("The dependencies are the same.", icon=":material/check:")
    with tabs[5]:
        rows = cmp.tags(differences_only=diff_only)
        if rows:
            df = pd.DataFrame(rows).rename(columns=vcols).fillna("—")
            table(df.drop(columns=["differs"]) if diff_only else df, key="tag-diff",
                  file_name=f"{_safe(name)}-tag-diff.csv")
        else:
            st.info("No tag differs." if diff_only else "No tags.")


def main() -> None:
    qp = st.query_params
    name = qp.get("model")
    version = qp.get("version")
    compare = qp.get("compare")
    try:
        if not name:
            models_list()
        elif compare:
            versions = parse_compare(compare)
            if len(versions) < 2:
                st.warning("Choose at least two versions to compare.")
                model_page(name)
            else:
                compare_page(name, versions)
        elif version:
            version_page(name, version)
        else:
            model_page(name)
    except NotFound as exc:
        st.title("Models")
        show_error(exc)
        link("models", "Back to all models", icon=":material/arrow_back:")
    except ConsoleError as exc:
        show_error(exc)


with guard("Models"):
    main()
