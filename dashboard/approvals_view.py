"""Rendering of an approval request's evidence (shared by the Approvals page and the dialog)."""

from __future__ import annotations

import pandas as pd
import streamlit as st


def render_freshness(req: dict) -> None:
    """For a pending request: does it still apply to the endpoint as it is now?"""
    from dashboard.bootstrap import container
    from dashboard.components import show_error
    from services.errors import ConsoleError

    try:
        f = container().actions.request_freshness(req["id"])
    except ConsoleError as exc:
        show_error(exc)
        return
    if f["fresh"] and not f.get("failing_gates"):
        st.success("Still applies to the endpoint as it is now; gates pass.", icon=":material/verified:")
    elif f["fresh"]:
        st.warning("Still applies, but gates fail now: " + "; ".join(f["failing_gates"]), icon=":material/block:")
    else:
        st.warning(f"Approving will be refused: {f['why']}.", icon=":material/sync_problem:")


def render_request_plan(req: dict) -> None:
    plan = req.get("plan") or {}
    diff = [r for r in plan.get("endpoint_diff", []) if r.get("changed")]
    if diff:
        st.dataframe(pd.DataFrame([{"field": r["field"], "before": str(r["before"]), "after": str(r["after"])}
                                   for r in diff]), hide_index=True, key=f"req-diff-{req['id']}")
    for rc in plan.get("registry_changes", []):
        st.markdown(f"- `{rc['model']}` **@{rc['alias']}**: v{rc['from'] or '—'} → **v{rc['to']}**")
    gates = plan.get("gates") or []
    if gates:
        mark = {True: "pass", False: "FAIL", None: "n/a"}
        st.dataframe(pd.DataFrame([{"result": mark[g["passed"]], "gate": g["name"],
                                    "candidate": g["candidate"], "baseline": g["baseline"], "detail": g["detail"]}
                                   for g in gates]), hide_index=True, key=f"req-gates-{req['id']}")
    st.caption(f"Bound to plan `{req['plan_hash'][:16]}…` made on endpoint state version "
               f"{plan.get('before', {}).get('resource_version')}; it is void if that state changes.")
