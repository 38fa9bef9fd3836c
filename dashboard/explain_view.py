"""Views of the Explanations page (``/explain?model=M&version=V[&feature=F]``, one logged prediction with
``&endpoint=E&request_id=R[&row=N]``) and the compare page's explanation drift: what was explained and how,
global importance, a beeswarm and a dependence plot in Plotly, the waterfall of one prediction, explanation
drift between versions and against production traffic; every table downloadable.

Results come from the service's in-process LRU (:mod:`services.explain.service`): a progress bar shows while a
version is computed, a second view is a look-up."""

from __future__ import annotations

import threading
from collections import OrderedDict
from datetime import timedelta

import pandas as pd
import streamlit as st

from dashboard import data
from dashboard.bootstrap import container
from dashboard.components import clean_frame, show_error, table
from dashboard.explain_charts import (
    beeswarm_chart,
    dependence_chart,
    drift_chart,
    drift_frame,
    importance_chart,
    waterfall_chart,
)
from dashboard.models_view import safe_name, set_query_param
from services.errors import ConsoleError
from services.explain import Explanation
from services.explain.service import Explainer, for_registry

MODEL_PICKER, VERSION_PICKER, FEATURE_PICKER = "explain-model", "explain-version", "explain-feature"
DRIFT_OPEN, DRIFT_ENDPOINT, DRIFT_WINDOW = "explain-prod-open", "explain-prod-endpoint", "explain-prod-window"
COMPARE_OPEN, COMPARE_PICK = "compare-explain-open", "compare-explain-version"
WINDOWS = {"-24h": "last 24 hours", "-7d": "last 7 days"}


def explainer() -> Explainer:
    return for_registry(container().registry)


def _sync(key: str, value) -> None:
    """The URL wins over the session (a shared link, back/forward): put its value into the widget."""
    if value is not None and st.session_state.get(key) != value:
        st.session_state[key] = value


def _progress_run(what: str, fn):
    """Run ``fn(progress)`` under a progress bar that the computation moves; removed when done."""
    bar = st.progress(0.0, text=what)
    try:
        return fn(lambda f, t: bar.progress(float(min(1.0, max(0.0, f))), text=f"{what} — {t}"))
    finally:
        bar.empty()


# -- pickers --------------------------------------------------------------------------------------------------
def pickers(default_model: str | None = None, default_version: str | None = None) -> tuple[str | None, str | None]:
    """Model and version select boxes restored from (and written to) the URL; the champion by default."""
    qp = st.query_params
    with st.spinner("Reading the registry…"):
        names = [m.name for m in data.models(data.key())]
    wanted = qp.get("model") or default_model
    if wanted and wanted not in names:
        names.append(wanted)
    if not names:
        st.info("No registered model yet: nothing to explain.")
        return None, None
    cols = st.columns([2, 1])
    _sync(MODEL_PICKER, wanted or names[0])

    def model_changed() -> None:
        set_query_param("model", st.session_state[MODEL_PICKER])
        for k in ("version", "feature"):
            set_query_param(k, None)

    model = cols[0].selectbox("Model", names, key=MODEL_PICKER, on_change=model_changed)
    view = data.model_view(data.key(), model)
    versions = [v.version for v in view.versions]
    if not versions:
        st.info(f"{model} has no versions.")
        return model, None
    version = qp.get("version") or (default_version if model == (default_model or model) else None)
    version = version if version in versions else (view.champion if view.champion in versions else versions[0])
    _sync(VERSION_PICKER, version)
    labels = {v.version: f"v{v.version}" + "".join(f" @{a}" for a in v.aliases) for v in view.versions}
    version = cols[1].selectbox("Version", versions, key=VERSION_PICKER, format_func=lambda v: labels.get(v, v),
                                on_change=lambda: set_query_param("version", st.session_state[VERSION_PICKER]))
    set_query_param("model", model)
    set_query_param("version", version)
    return model, version


# -- one version ----------------------------------------------------------------------------------------------
def explained(model: str, version: str) -> Explanation:
    ex = explainer()
    if ex.cached(ex.version_key(model, version)) is None:
        return _progress_run(f"Explaining {model} v{version}", lambda p: ex.explain_version(model, version,
                                                                                            progress=p))
    return ex.explain_version(model, version)


def how(exp: Explanation) -> None:
    """What was explained and how, in words: the explainer, the output space, the background, the sample."""
    st.markdown(f"**Explainer:** {exp.explainer} on `{exp.estimator}` · **Output space:** {exp.output_label} · "
                f"**Base value:** {exp.base_value:.4g}")
    st.caption(f"Background: {exp.background}. Sample: {exp.sample}. Base value + attributions = the model's "
               f"output in this space for every row (largest gap {exp.additivity_error:.1e}); computed in "
               + (f"{exp.seconds:.2f} s." if exp.seconds >= 1 else f"{exp.seconds * 1000:.0f} ms."))
    for note in exp.notes:
        st.caption(f"Note: {note}.")


def version_section(model: str, version: str) -> None:
    try:
        exp = explained(model, version)
    except ConsoleError as exc:
        show_error(exc)
        return
    st.subheader(f"{model} v{version}", anchor=False)
    how(exp)
    c = st.columns(4)
    c[0].metric("Explainer", exp.kind)
    c[1].metric("Output space", exp.output_space)
    c[2].metric("Base value", f"{exp.base_value:.4g}")
    c[3].metric("Rows explained", f"{exp.rows:,}")
    st.plotly_chart(_figure(exp, (model, version), "importance"), key="explain-importance", width="stretch")
    st.plotly_chart(_figure(exp, (model, version), "beeswarm"), key="explain-beeswarm", width="stretch")
    names = [r["feature"] for r in exp.importance()]
    _sync(FEATURE_PICKER, st.query_params.get("feature") if st.query_params.get("feature") in names else names[0])
    feature = st.selectbox("Dependence plot of", names, key=FEATURE_PICKER,
                           on_change=lambda: set_query_param("feature", st.session_state[FEATURE_PICKER]))
    if st.query_params.get("feature") not in (None, feature):
        set_query_param("feature", feature)
    st.plotly_chart(_figure(exp, (model, version), "dependence", feature), key="explain-dependence",
                    width="stretch")
    base = f"{safe_name(model)}-v{version}"
    st.markdown("**Global importance**")
    imp = pd.DataFrame(exp.importance()).rename(columns={"mean_abs_shap": "mean |SHAP|"})
    table(imp, key="explain-importance-table", file_name=f"{base}-importance.csv",
          column_config={"share": st.column_config.NumberColumn("share", format="percent")})
    st.markdown(f"**Attributions per row** ({exp.output_label})")
    table(exp.attribution_frame(), key="explain-attributions", file_name=f"{base}-attributions.csv")
    production_section(model, version)


_FIGURES: OrderedDict[tuple, tuple[Explanation, dict]] = OrderedDict()
_FIGURES_LOCK = threading.Lock()
_FIGURES_KEPT = 16  # explanations whose figures are kept (the service keeps 32 explanations)
_BUILD = {"importance": importance_chart, "beeswarm": beeswarm_chart, "dependence": dependence_chart}


def _figure(exp: Explanation, version: tuple[str, str], kind: str, *args):
    """A chart of one explanation, built once per process and shared by the sessions that show it (Streamlit
    only reads a figure it draws). Kept with the explanation object it was built from — the service's cached
    one — and built again when the service hands out another (recomputed, or another registry)."""
    key = (data.key(), *version)
    with _FIGURES_LOCK:
        hit = _FIGURES.get(key)
        if hit is None or hit[0] is not exp:
            hit = _FIGURES[key] = (exp, {})
        _FIGURES.move_to_end(key)
        while len(_FIGURES) > _FIGURES_KEPT:
            _FIGURES.popitem(last=False)
        fig = hit[1].get((kind, *args))
    if fig is None:
        fig = _BUILD[kind](exp, *args)
        with _FIGURES_LOCK:
            hit[1][(kind, *args)] = fig
    return fig


# -- one logged prediction ----------------------------------------------------------------------------------------
def prediction_section(endpoint: str, request_id: str, row: int = 0) -> tuple[str, str] | None:
    """The waterfall of one logged prediction; returns the (model, version) that answered it."""
    st.subheader(f"One prediction: request {request_id}" + (f" row {row}" if row else "") + f" on {endpoint}",
                 anchor=False)
    try:
        with st.spinner(f"Explaining request {request_id}…"):
            out = explainer().explain_prediction(container().predictions, endpoint, request_id, row=row)
    except ConsoleError as exc:
        show_error(exc)
        return None
    w, e = out["waterfall"], out["explanation"]
    status = "ok" if 200 <= int(out["status"] or 0) < 400 else f"failed ({out['status']}: {out['error'] or '—'})"
    st.caption(f"Answered by **{out['model']} v{out['version']}** ({out['role']}) at "
               f"{pd.Timestamp(out['at']):%Y-%m-%d %H:%M:%S} UTC · logged prediction **{out['prediction']}** · "
               f"{status}" + (f" · label {out['label']}" if out["label"] is not None else "")
               + (f" · row {out['row']} of {out['rows_in_request']}" if out["rows_in_request"] > 1 else ""))
    st.markdown(f"**Explainer:** {e['explainer']} · **Output:** {w['output']:.4g} ({w['output_label']}) = "
                f"base value {w['base_value']:.4g} + the features' pushes below")
    st.caption(f"Background: {e['background']}.")
    st.plotly_chart(waterfall_chart(w), key="explain-waterfall", width="stretch")
    steps = pd.DataFrame(w["steps"]).rename(columns={"shap": "attribution"})
    table(steps, key="explain-prediction-table", file_name=f"prediction-{safe_name(str(request_id))}.csv")
    return out["model"], out["version"]


# -- explanation drift ------------------------------------------------------------------------------------------
def _lazy_expander(label: str, key: str, param: str, icon: str):
    """An expander drawn only when open; ``?param=1`` opens it (a shared link), closing removes it."""
    wanted = st.query_params.get(param) == "1"
    if key in st.session_state and st.session_state[key] != wanted:
        st.session_state[key] = wanted

    def toggled() -> None:
        set_query_param(param, "1" if st.session_state.get(key) else None)

    box = st.expander(label, expanded=wanted, key=key, on_change=toggled, icon=icon)
    return box if box.open else None


def drift_summary(d: dict) -> None:
    c = st.columns(3)
    c[0].metric("Attribution shift", f"{d['attribution_shift']:.1%}",
                help="Half the sum of |share b − share a| over the features: 0 % the same use of features, "
                     "100 % disjoint")
    rho = d["rank_correlation"]
    c[1].metric("Rank correlation", "—" if rho is None else f"{rho:.2f}",
                help=f"Spearman over the {d['common_features']} features both use")
    c[2].metric("Rows", f"{d['b']['row_count']:,}")
    if not d["same_output_space"]:
        st.caption(f"The outputs differ ({d['a']['output_label']} vs {d['b']['output_label']}): compare the shares "
                   "(each feature's part of the total), not the raw mean |SHAP|.")


def production_section(model: str, version: str) -> None:
    """One version on its held-out reference against the rows it answered on an endpoint."""
    box = _lazy_expander("Explanation drift: reference vs production traffic", DRIFT_OPEN, "drift",
                         ":material/compare_arrows:")
    if box is None:
        return
    with box:
        try:
            eps = [v.endpoint.name for v in data.serving_overview() if v.endpoint.model == model]
        except ConsoleError as exc:
            show_error(exc)
            return
        if not eps:
            st.info(f"{model} serves on no endpoint: there is no production traffic to compare with.")
            return
        cols = st.columns([2, 1])
        _sync(DRIFT_ENDPOINT, st.query_params.get("traffic") if st.query_params.get("traffic") in eps else eps[0])
        endpoint = cols[0].selectbox("Endpoint", eps, key=DRIFT_ENDPOINT)
        set_query_param("traffic", endpoint)
        _sync(DRIFT_WINDOW, st.query_params.get("window") if st.query_params.get("window") in WINDOWS else "-24h")
        window = cols[1].selectbox("Window", list(WINDOWS), key=DRIFT_WINDOW, format_func=WINDOWS.get)
        set_query_param("window", window)
        now = container().clock()
        start = now - (timedelta(days=7) if window == "-7d" else timedelta(hours=24))
        try:
            d = _progress_run(f"Explaining v{version}'s traffic on {endpoint}", lambda p: explainer().production_drift(
                container().predictions, endpoint, model, version, start, now, progress=p))
        except ConsoleError as exc:
            show_error(exc)
            return
        st.caption(f"Reference: {d['a']['sample']}. Production: {d['b']['sample']}.")
        drift_summary(d)
        st.plotly_chart(drift_chart(d, "reference", "production"), key="explain-prod-drift", width="stretch")
        frame = drift_frame(d, "reference", "production")
        table(clean_frame(frame), key="explain-prod-table", csv=lambda: frame,
              file_name=f"{safe_name(model)}-v{version}-explanation-drift-{safe_name(endpoint)}.csv")


def compare_section(name: str, versions: list[str], base: str) -> None:
    """Explanation drift of each version against the baseline on the same held-out rows (compare page)."""
    box = _lazy_expander("Explanation drift (SHAP) against the baseline", COMPARE_OPEN, "explain",
                         ":material/psychology:")
    if box is None:
        return
    with box:
        results, rows = {}, []
        others = [v for v in versions if v != base]
        for i, v in enumerate(others):
            try:
                results[v] = d = _progress_run(f"Explaining v{base} and v{v} ({i + 1} of {len(others)})",
                                               lambda p, v=v: explainer().version_drift(name, base, v, progress=p))
            except ConsoleError as exc:
                show_error(exc)
                continue
            top = [r["feature"] for r in d["features"][:3]]
            rows.append({"version": f"v{v}", "against": f"v{base}", "attribution shift": d["attribution_shift"],
                         "rank correlation": d["rank_correlation"], "rows": d["b"]["row_count"],
                         "most shifted": ", ".join(top), "explainers": f"{d['a']['kind']} / {d['b']['kind']}"})
        if not results:
            return
        st.caption("Each pair is explained on the same held-out rows; a feature's share is its part of the "
                   "version's total mean |SHAP|, so versions with different output spaces still compare.")
        st.dataframe(pd.DataFrame(rows), hide_index=True, key="compare-explain-summary",
                     column_config={"attribution shift": st.column_config.NumberColumn(format="percent"),
                                    "rank correlation": st.column_config.NumberColumn(format="%.2f")})
        picked = st.selectbox("Per feature", list(results), key=COMPARE_PICK, format_func=lambda v: f"v{v} vs v{base}")
        d = results[picked]
        st.plotly_chart(drift_chart(d, f"v{base}", f"v{picked}"), key="compare-explain-chart", width="stretch")
        frame = drift_frame(d, f"v{base}", f"v{picked}")
        table(clean_frame(frame), key="compare-explain-table", csv=lambda: frame,
              file_name=f"{safe_name(name)}-explanation-drift-v{base}-v{picked}.csv")

