"""Views of model history: the models list, a model (versions, where they serve, the policy's gates), a version.

Pages route; these functions lay out. Pure decisions (where a version serves, which versions pass the
policy's gates, readable dataset sources) live in :mod:`services.history`.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from dashboard import data, state
from dashboard.bootstrap import container
from dashboard.components import MISSING, clean_frame, fmt_time, frame_config, guard, table
from dashboard.nav import href, link
from services.history import (
    ServingSlot,
    dataset_shape,
    dataset_source,
    default_compare,
    gate_rule,
    gate_verdicts,
    metric_direction,
    serving_slots,
    split_stated_gate,
    verdict_label,
)
from services.policy import GateResult, OfflineGate

KEY_METRICS = ("roc_auc", "accuracy", "f1", "r2")
GATE_ACTIONS = {"promote": "promote", "start_canary": "start a canary"}


def safe_name(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)[:80] or "model"


# -- where a model serves, and the gates of those endpoints -------------------------------------------------------
@dataclass(frozen=True)
class EndpointGates:
    endpoint: str
    champion: str | None
    gates: tuple[OfflineGate, ...]
    gate_actions: tuple[str, ...]
    results: dict[str, list[GateResult]]  # version -> results

    @property
    def column(self) -> str:
        return f"Gates: {self.endpoint}"

    def label(self, version: str) -> str:
        return verdict_label(self.results.get(version, []), self.gates)

    def mark(self, version: str) -> str:
        """The label with a sign for the table: ``✓ pass``, ``✗ FAIL: accuracy``, ``—``."""
        label = self.label(version)
        return {"pass": "✓ pass", MISSING: MISSING}.get(label, f"✗ {label}")


def serving_for(model: str) -> tuple[list, dict[str, list[ServingSlot]]]:
    """The endpoints serving ``model`` (their views) and version -> slots; empty when serving is unreadable."""
    views = []
    with guard("serving"):
        views = [v for v in data.serving_overview() if v.endpoint.model == model]
    return views, serving_slots([v.endpoint for v in views], model)


def endpoint_gates(views, metrics_by_version: dict[str, dict[str, float]]) -> list[EndpointGates]:
    out = []
    for v in views:
        pol = container().policy.for_endpoint(v.endpoint.name)
        gates = tuple(pol.offline_gates)
        out.append(EndpointGates(v.endpoint.name, v.champion, gates, tuple(pol.gate_actions),
                                 gate_verdicts(gates, metrics_by_version, v.champion) if gates else {}))
    return out


def slots_text(slots: list[ServingSlot]) -> str:
    return "; ".join(str(s) for s in slots) or MISSING


def gates_section(eg: list[EndpointGates], model: str, stated: list[str] = ()) -> None:
    """The policy's offline gates of each endpoint serving the model (the rules; the table: gates_details)."""
    st.subheader("Promotion gates", anchor=False)
    for line in stated:
        st.caption(f"The registry description says “{line}” — the authors' note, not what the console checks: "
                   "a promotion or canary must pass the policy's gates of its endpoint, below.")
    if not eg:
        st.caption(f"No endpoint serves {model}, so no endpoint's gates apply to it yet.")
        return
    for e in eg:
        acts = ", ".join(GATE_ACTIONS.get(a, a.replace("_", " ")) for a in e.gate_actions) or "no action"
        if not e.gates:
            st.markdown(f"**{e.endpoint}** — the policy sets no offline gate.")
            continue
        rules = " · ".join(f"`{gate_rule(g)}`" for g in e.gates)
        passing = [v for v in e.results if e.label(v) == "pass"]
        st.markdown(f"**{e.endpoint}** — {rules}  \nchecked when you {acts}; against champion "
                    f"{'v' + e.champion if e.champion else '(none)'} · passing now: "
                    f"{', '.join('v' + v for v in passing) or 'none'}")


def gates_details(eg: list[EndpointGates], model: str) -> None:
    rows = [{"Version": int(v) if v.isdigit() else v, "Endpoint": e.endpoint, "Gate": r.name,
             "Result": {True: "pass", False: "FAIL"}.get(r.passed, MISSING), "Candidate": r.candidate,
             "Champion": r.baseline, "Threshold": r.threshold, "Detail": r.detail}
            for e in eg for v, rs in e.results.items() for r in rs]
    if rows:
        with st.expander("Every version against every gate"):
            df = clean_frame(pd.DataFrame(rows))
            table(df, key="gates-table", file_name=f"{safe_name(model)}-gates.csv",
                  column_config=frame_config(df, ["Candidate", "Champion", "Threshold"]))


# -- the models list -------------------------------------------------------------------------------------------------
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
    df = clean_frame(pd.DataFrame([{
        "Model": m.name,
        "Open": href("models", model=m.name),
        "Aliases": ", ".join(f"@{a} → v{v}" for a, v in sorted(m.aliases.items())),
        "Versions": m.version_count,
        "Latest": f"v{m.latest_version}" if m.latest_version else None,
        "Last updated": fmt_time(m.last_updated),
        "Description": (m.description or "").split("\n")[0][:120],
        "Tags": ", ".join(f"{k}={v}" for k, v in sorted(m.tags.items())),
    } for m in models]))
    st.caption(f"{len(models)} model{'s' if len(models) != 1 else ''} · newest activity first · select a row to "
               "open it")
    event = table(df, key=state.MODELS_TABLE, file_name="models.csv", on_select="rerun",
                  selection_mode="single-row", column_config={
                      "Open": st.column_config.LinkColumn("Open", display_text="open ↗"),
                      "Description": st.column_config.TextColumn(width="large"),
                  })
    rows = event.selection.rows if event else []
    if rows:
        st.query_params.clear()
        st.query_params["model"] = models[rows[0]].name
        st.rerun()


# -- a model -----------------------------------------------------------------------------------------------------------
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


def run_stub(v):
    if not v.run_id:
        return None
    from services.registry import RunDetail

    return RunDetail(run_id=v.run_id, experiment_id=v.experiment_id or "0")


def model_page(name: str) -> None:
    with st.spinner(f"Reading {name}…"):
        view = data.model_view(data.key(), name)
    m = view.model
    link("models", "All models", icon=":material/arrow_back:")
    st.title(m.name)
    text, stated = split_stated_gate(m.description)
    if text:
        st.markdown(text)
    cols = st.columns(4)
    cols[0].metric("Versions", m.version_count)
    cols[1].metric("Champion", f"v{view.champion}" if view.champion else MISSING)
    cols[2].metric("Challenger", f"v{m.aliases['challenger']}" if "challenger" in m.aliases else MISSING)
    cols[3].metric("Last updated", m.last_updated.strftime("%Y-%m-%d") if m.last_updated else MISSING,
                   fmt_time(m.last_updated).split(" ", 1)[-1] if m.last_updated else None, delta_color="off",
                   delta_arrow="off")
    if m.tags:
        st.caption(" · ".join(f"`{k}` = {v}" for k, v in sorted(m.tags.items())))
    views, slots = serving_for(name)
    eg = endpoint_gates(views, {v.version: v.metrics for v in view.versions})
    gates_section(eg, name, stated)
    versions_table(name, view, slots, eg)
    gates_details(eg, name)
    pickers(name, view)
    if view.metric_names:
        st.subheader("Metrics across versions", anchor=False)
        default_metrics = [k for k in view.metric_names if k in KEY_METRICS][:2] or view.metric_names[:1]
        picked = st.multiselect("Metrics", view.metric_names, default=default_metrics, key=state.METRIC_PICKER)
        if picked:
            st.plotly_chart(metric_chart(view, picked), key="metric-chart")


def versions_table(name: str, view, slots: dict[str, list[ServingSlot]], eg: list[EndpointGates]) -> None:
    coverage = {k: sum(1 for v in view.versions if k in v.metrics) for k in view.metric_names}
    key_metrics = sorted(view.metric_names, key=lambda k: (-coverage[k], k not in KEY_METRICS, k))[:5]
    reg = container().registry
    rows = []
    for v in view.versions:
        row = {"Version": int(v.version) if v.version.isdigit() else v.version,
               "Open": href("models", model=name, version=v.version),
               "Aliases": ", ".join(f"@{a}" for a in v.aliases), "Serving": slots_text(slots.get(v.version, []))}
        for e in eg:
            row[e.column] = e.mark(v.version)
        row["Status"] = v.status
        for k in key_metrics:
            row[k] = v.metrics.get(k)
        row["Created"] = v.created
        row["Tags"] = ", ".join(f"{k}={val}" for k, val in sorted(v.tags.items()) if not k.startswith("mlflow."))
        row["Run"] = reg.run_link(run_stub(v)) or (v.run_id or "")
        rows.append(row)
    df = clean_frame(pd.DataFrame(rows))
    st.subheader("Versions", anchor=False)
    if eg:
        st.caption("**Gates** columns: would this version pass the endpoint's offline gates against its champion "
                   "now (rules above)")
    run_col = (st.column_config.LinkColumn("Run") if container().settings.mlflow_ui_url else
               st.column_config.TextColumn("Run id"))
    table(df, key="versions-table", file_name=f"{safe_name(name)}-versions.csv", column_config={
        "Open": st.column_config.LinkColumn("Open", display_text="details ↗"),
        "Run": run_col, **frame_config(df, key_metrics),
        **{e.column: st.column_config.TextColumn(e.column, help=" and ".join(gate_rule(g) for g in e.gates)
                                                  or "no offline gate") for e in eg},
    })


def pickers(name: str, view) -> None:
    c1, c2 = st.columns(2)
    with c1:
        picked = st.selectbox("Open a version", [v.version for v in view.versions], key=state.VERSION_PICKER,
                              format_func=lambda x: f"v{x}" + (" (champion)" if x == view.champion else ""))
        if st.button("Open version", key=state.OPEN_VERSION, icon=":material/open_in_new:"):
            st.query_params.clear()
            st.query_params.update({"model": name, "version": picked})
            st.rerun()
    with c2:
        chosen = st.multiselect("Compare versions", [v.version for v in view.versions],
                                default=default_compare(view.versions, view.champion), key=state.COMPARE_PICKER,
                                format_func=lambda x: f"v{x}", max_selections=8,
                                help="Starts with the champion (the baseline) and the newest version")
        if st.button("Compare", key=state.OPEN_COMPARE, icon=":material/compare_arrows:",
                     disabled=len(chosen) < 2):
            st.query_params.clear()
            st.query_params.update({"model": name, "compare": ",".join(chosen)})
            st.rerun()


# -- a version ---------------------------------------------------------------------------------------------------------
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


def curves_chart(series: dict[str, list], title: str, colors: dict[str, str] | None = None) -> go.Figure:
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


def lineage_tab(name: str, d) -> None:
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
