"""Views of model history: the models list and a model (versions, where they serve, the policy's gates).

Pages route; these functions lay out (a version: :mod:`dashboard.version_view`; compare:
:mod:`dashboard.compare_view`). Pure decisions (where a version serves, which versions pass the policy's
gates) live in :mod:`services.history`.

A model page opens with what a person came for — the versions table, the gates, the pickers — and draws
what costs the browser most only when asked: the metric chart (Plotly: a 4.7 MB script the browser must
load and parse) and the table of every version against every gate sit in expanders that run their content
only when opened (``on_change="rerun"``); ``&chart=1`` in the URL opens the chart (``bench/pages_browser.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import streamlit as st

from dashboard import data, state
from dashboard.bootstrap import container
from dashboard.components import MISSING, clean_frame, fmt_time, frame_config, guard, table
from dashboard.nav import href, link
from services.history import (
    ServingSlot,
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
CHART_OPEN = "metric-chart-open"  # the chart's expander (its state is also ?chart=1 in the URL)
GATES_OPEN = "gates-details-open"  # the expander of every version against every gate
ALL_VERSIONS = "all-versions"  # the button under a long versions table (?versions=all shows every version)
TABLE_ROWS = 50  # newest versions the table shows before "Show all"


def set_query_param(key: str, value: str | None) -> None:
    """Write one query parameter (``None`` removes it) only when it changes: every write is a message to the
    browser, which rewrites its URL."""
    if value is None:
        if key in st.query_params:
            del st.query_params[key]
    elif st.query_params.get(key) != value:
        st.query_params[key] = value


def open_view(**params) -> None:
    """Show another view of the Models page (``model=…, version=…``): the URL becomes exactly ``params``."""
    st.query_params.from_dict({k: v for k, v in params.items() if v not in (None, "")})
    st.rerun()


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
        views = [v for v in data.serving_views(data.key()) if v.endpoint.model == model]
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
    """Every version against every gate, in an expander whose table is built only when it is open."""
    rows = [{"Version": int(v) if v.isdigit() else v, "Endpoint": e.endpoint, "Gate": r.name,
             "Result": {True: "pass", False: "FAIL"}.get(r.passed, MISSING), "Candidate": r.candidate,
             "Champion": r.baseline, "Threshold": r.threshold, "Detail": r.detail}
            for e in eg for v, rs in e.results.items() for r in rs]
    if rows:
        box = st.expander("Every version against every gate", key=GATES_OPEN, on_change="rerun")
        if not box.open:
            return
        with box:
            df = clean_frame(pd.DataFrame(rows))
            table(df, key="gates-table", file_name=f"{safe_name(model)}-gates.csv",
                  column_config=frame_config(df, ["Candidate", "Champion", "Threshold"]))


# -- the models list -------------------------------------------------------------------------------------------------
def models_list() -> None:
    st.title("Models")
    st.caption("Every registered model in the registry. Search by name; open one to see its versions.")
    q = st.text_input("Search by name", value=st.query_params.get("q", ""), key=state.MODEL_SEARCH,
                      placeholder="e.g. classifier", icon=":material/search:")
    set_query_param("q", q or None)
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
        open_view(model=models[rows[0]].name)


# -- a model -----------------------------------------------------------------------------------------------------------
def metric_chart(view, metrics: list[str]):
    """A Plotly figure of ``metrics`` across the versions, the champion starred."""
    import plotly.graph_objects as go  # only a page that draws the chart pays for it

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
        chart_section(view)


def chart_expander(label: str, key: str, icon: str):
    """An expander for a chart that is drawn only when open; its state is ``?chart=1`` in the URL, so a shared
    link opens it (and a link or back/forward that changes the URL wins over the session). None when closed."""
    wanted = st.query_params.get("chart") == "1"
    if key in st.session_state and st.session_state[key] != wanted:
        st.session_state[key] = wanted

    def toggled() -> None:
        set_query_param("chart", "1" if st.session_state.get(key) else None)

    box = st.expander(label, expanded=wanted, key=key, on_change=toggled, icon=icon)
    return box if box.open else None


def chart_section(view) -> None:
    """The metric chart in an expander that draws it only when open (``?chart=1`` opens it)."""
    box = chart_expander("Metrics across versions (chart)", CHART_OPEN, ":material/show_chart:")
    if box is None:
        return
    with box:
        default_metrics = [k for k in view.metric_names if k in KEY_METRICS][:2] or view.metric_names[:1]
        picked = st.multiselect("Metrics", view.metric_names, default=default_metrics, key=state.METRIC_PICKER)
        if picked:
            st.plotly_chart(metric_chart(view, picked), key="metric-chart")


def shown_versions(view, slots: dict[str, list[ServingSlot]]) -> list:
    """The versions the table shows: all with ``?versions=all`` (the button under the table), else the newest
    ``TABLE_ROWS`` and every version that has an alias or serves (in the registry's order, newest first)."""
    if len(view.versions) <= TABLE_ROWS or st.query_params.get("versions") == "all":
        return list(view.versions)
    return [v for i, v in enumerate(view.versions) if i < TABLE_ROWS or v.aliases or slots.get(v.version)]


def versions_table(name: str, view, slots: dict[str, list[ServingSlot]], eg: list[EndpointGates]) -> None:
    """The versions with where they serve, their gate marks and key metrics; a long history shows its newest
    versions (and every aliased or serving one) until asked for all; the CSV always has every version."""
    coverage = {k: sum(1 for v in view.versions if k in v.metrics) for k in view.metric_names}
    key_metrics = sorted(view.metric_names, key=lambda k: (-coverage[k], k not in KEY_METRICS, k))[:5]
    reg = container().registry

    def frame(versions) -> pd.DataFrame:
        rows = []
        for v in versions:
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
        return clean_frame(pd.DataFrame(rows))

    shown = shown_versions(view, slots)
    df = frame(shown)
    st.subheader("Versions", anchor=False)
    if eg:
        st.caption("**Gates** columns: would this version pass the endpoint's offline gates against its champion "
                   "now (rules above)")
    run_col = (st.column_config.LinkColumn("Run") if container().settings.mlflow_ui_url else
               st.column_config.TextColumn("Run id"))
    table(df, key="versions-table", file_name=f"{safe_name(name)}-versions.csv",
          csv=(lambda: frame(view.versions)) if len(shown) < len(view.versions) else None, column_config={
              "Open": st.column_config.LinkColumn("Open", display_text="details ↗"),
              "Run": run_col, **frame_config(df, key_metrics),
              **{e.column: st.column_config.TextColumn(e.column, help=" and ".join(gate_rule(g) for g in e.gates)
                                                        or "no offline gate") for e in eg},
          })
    n = len(view.versions)
    if n > TABLE_ROWS:
        every = len(shown) == n
        st.caption(f"All {n} versions." if every else f"{len(shown)} of {n} versions: the newest {TABLE_ROWS} and "
                   "every one with an alias or serving. The CSV has all of them.")
        st.button(f"Show the newest {TABLE_ROWS}" if every else f"Show all {n} versions", key=ALL_VERSIONS,
                  icon=":material/unfold_less:" if every else ":material/unfold_more:",
                  on_click=set_query_param, args=("versions", None if every else "all"))


def pickers(name: str, view) -> None:
    c1, c2 = st.columns(2)
    with c1:
        picked = st.selectbox("Open a version", [v.version for v in view.versions], key=state.VERSION_PICKER,
                              format_func=lambda x: f"v{x}" + (" (champion)" if x == view.champion else ""))
        if st.button("Open version", key=state.OPEN_VERSION, icon=":material/open_in_new:"):
            open_view(model=name, version=picked)
    with c2:
        chosen = st.multiselect("Compare versions", [v.version for v in view.versions],
                                default=default_compare(view.versions, view.champion), key=state.COMPARE_PICKER,
                                format_func=lambda x: f"v{x}", max_selections=8,
                                help="Starts with the champion (the baseline) and the newest version")
        if st.button("Compare", key=state.OPEN_COMPARE, icon=":material/compare_arrows:",
                     disabled=len(chosen) < 2):
            open_view(model=name, compare=",".join(chosen))
