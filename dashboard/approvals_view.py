"""Rendering of approval requests and their evidence (shared by the Approvals page, the Deployments page
and the confirmation dialog)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard.components import MISSING, fmt_num, fmt_time

FAIL_BG, WORSE_BG = "background-color: #ffebe9; color: #82071e", "background-color: #fff8c5"


def gate_status(g: dict) -> str:
    """pass, worse (passes within tolerance but is worse than the champion), FAIL or n/a."""
    if g.get("passed") is None:
        return "n/a"
    if g.get("passed") is False:
        return "FAIL"
    return "worse" if g.get("worse") else "pass"


def gates_table(gates: list[dict], *, key: str) -> None:
    """Gates with their numbers: failing rows red, passes that are worse than the champion amber."""
    df = pd.DataFrame([{"result": gate_status(g), "gate": g["name"], "candidate": fmt_num(g.get("candidate")),
                        "champion": fmt_num(g.get("baseline")), "threshold": fmt_num(g.get("threshold")),
                        "detail": g.get("detail") or MISSING} for g in gates])

    def colour(row):
        bg = {"FAIL": FAIL_BG, "worse": WORSE_BG}.get(row["result"], "")
        return [bg] * len(row)

    st.dataframe(df.style.apply(colour, axis=1), hide_index=True, key=key,
                 column_config={"detail": st.column_config.TextColumn(width="large")})


def render_freshness(req: dict) -> None:
    """For a pending request, in the dialog: does it still apply to the endpoint as it is now? (reads again)"""
    from dashboard.bootstrap import container
    from dashboard.components import show_error
    from services.errors import ConsoleError

    try:
        f = container().actions.request_freshness(req["id"])
    except ConsoleError as exc:
        show_error(exc)
        return
    show_freshness(f["fresh"], f.get("why", ""), f.get("failing_gates") or [])


def show_freshness(fresh: bool, why: str, failing: list[str], unknown: str | None = None, worse: int = 0) -> None:
    if unknown:
        st.warning(f"Cannot tell whether it still applies: {unknown}.", icon=":material/cloud_off:")
    elif fresh and not failing:
        extra = (f" ({worse} within tolerance but worse than the champion: see the amber rows)" if worse else "")
        st.success(f"Still applies to the endpoint as it is now; gates pass{extra}.", icon=":material/verified:")
    elif fresh:
        st.warning("Still applies, but gates fail now: " + "; ".join(failing), icon=":material/block:")
    else:
        st.warning(f"Approving will be refused: {why}.", icon=":material/sync_problem:")


def render_request_plan(req: dict) -> None:
    plan = req.get("plan") or {}
    diff = [r for r in plan.get("endpoint_diff", []) if r.get("changed")]
    if diff:
        st.dataframe(pd.DataFrame([{"field": r["field"], "before": _s(r["before"]), "after": _s(r["after"])}
                                   for r in diff]), hide_index=True, key=f"req-diff-{req['id']}")
    for rc in plan.get("registry_changes", []):
        st.markdown(f"- `{rc['model']}` **@{rc['alias']}**: v{rc['from'] or MISSING} → **v{rc['to']}**")
    for w in plan.get("warnings") or []:
        st.warning(w, icon=":material/warning:")
    gates = plan.get("gates") or []
    if gates:
        gates_table(gates, key=f"req-gates-{req['id']}")
    retraining = plan.get("retraining")
    if retraining:  # nothing on the endpoint changes: what would be retrained, on which window, by which pipeline
        window = retraining.get("window") or {}
        st.dataframe(pd.DataFrame([
            {"field": "retrain", "value": f"{retraining.get('model')} v{retraining.get('parent_version')} "
                                          f"(what {retraining.get('endpoint')} serves as stable)"},
            {"field": "labelled window", "value": f"{window.get('start', MISSING)} → {window.get('end', MISSING)}"},
            {"field": "retrainer", "value": _s(retraining.get("retrainer"))},
            {"field": "champion", "value": f"v{retraining['champion']}" if retraining.get("champion") else MISSING},
        ]), hide_index=True, key=f"req-retrain-{req['id']}")
        st.caption(f"Bound to plan `{req['plan_hash'][:16]}…` made while v{retraining.get('parent_version')} was "
                   "stable; it is void if the stable version changes.")
        return
    st.caption(f"Bound to plan `{req['plan_hash'][:16]}…` made on endpoint state version "
               f"{plan.get('before', {}).get('resource_version')}; it is void if that state changes.")


def request_line(r: dict) -> str:
    params = ", ".join(f"{k} {v}" for k, v in r["params"].items())
    return (f"**#{r['id']}** · `{r['endpoint']}` · {r['action'].replace('_', ' ')} {params} · by "
            f"**{r['requester']}** · filed {fmt_time(r['created_at'])} · expires {fmt_time(r['expires_at'])}")


def _s(v) -> str:
    return MISSING if v is None else str(v)
