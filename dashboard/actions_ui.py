"""Action buttons → dry-run plan → confirmation dialog (``st.dialog``) → execute.

Nothing changes until the user presses *Confirm* inside the dialog with a
reason. The dialog shows exactly what will change on the endpoint and in the
registry, the gates with their numbers, and the backend's own patch body.
"""

from __future__ import annotations

import json

import pandas as pd
import streamlit as st

from dashboard import state
from dashboard.bootstrap import container, current_actor
from dashboard.components import show_error
from services.errors import ConsoleError

PENDING = "pending-action"
DIALOG_ERROR = "pending-action-error"


def render_plan(plan) -> None:
    st.markdown(f"**{plan.label}** on `{plan.endpoint}` · model `{plan.model}` · backend `{plan.backend}`")
    rows = [r for r in plan.endpoint_diff]
    df = pd.DataFrame([{"": "●" if r["changed"] else "", "field": r["field"], "before": _s(r["before"]),
                        "after": _s(r["after"])} for r in rows])
    st.markdown("**Endpoint**")
    st.dataframe(df.style.apply(lambda row: ["background-color: #fff3cd" if row[""] else ""] * len(row), axis=1),
                 hide_index=True, key="plan-endpoint-diff",
                 column_config={"": st.column_config.TextColumn("", width=24, help="changes")})
    st.markdown("**Registry**")
    if plan.registry_changes:
        for rc in plan.registry_changes:
            st.markdown(f"- `{rc['model']}` alias **@{rc['alias']}**: v{rc['from'] or '—'} → **v{rc['to']}**")
    else:
        st.caption("No registry change.")
    if plan.gates:
        st.markdown("**Evidence gates**")
        st.dataframe(pd.DataFrame([{"result": {True: "pass", False: "FAIL", None: "n/a"}[g.passed], "gate": g.name,
                                    "candidate": g.candidate, "baseline": g.baseline, "threshold": g.threshold,
                                    "detail": g.detail} for g in plan.gates]), hide_index=True, key="plan-gates")
    for w in plan.warnings:
        st.warning(w, icon=":material/warning:")
    if plan.needs_approval:
        st.info("The policy requires another person's approval: confirming files a request bound to exactly this "
                "change.", icon=":material/how_to_reg:")
    if plan.backend_preview is not None:
        with st.expander("What will be sent to the serving backend"):
            st.code(json.dumps(plan.backend_preview, indent=2, default=str), language="json")


def _s(v) -> str:
    return "—" if v is None else str(v)


def _reset_dialog() -> None:
    for key in (DIALOG_ERROR, state.REASON, state.OVERRIDE):
        st.session_state.pop(key, None)


def start(action: str, endpoint: str, **params) -> None:
    """Plan an action (dry run); the confirmation dialog opens at the end of the page run (:func:`resume`).
    Refusals while planning are shown at once."""
    try:
        plan = container().actions.plan(current_actor(), action, endpoint, **params)
    except ConsoleError as exc:
        show_error(exc)
        return
    _reset_dialog()
    st.session_state[PENDING] = {"kind": "plan", "plan": plan}


def start_decision(kind: str, request: dict) -> None:
    _reset_dialog()
    st.session_state[PENDING] = {"kind": kind, "request": request}


def resume() -> None:
    """Call last on a page with actions: (re)opens the dialog while a confirmation is pending, so a full
    rerun does not lose it; closing the dialog drops the pending action."""
    if st.session_state.get(PENDING):
        confirm_dialog()


def _dismiss() -> None:
    st.session_state.pop(PENDING, None)
    st.session_state.pop(DIALOG_ERROR, None)


@st.dialog("Confirm", width="large", on_dismiss=_dismiss)
def confirm_dialog() -> None:
    pending = st.session_state.get(PENDING)
    if not pending:
        st.info("Nothing to confirm.")
        return
    actor = current_actor()
    if pending["kind"] == "plan":
        plan = pending["plan"]
        render_plan(plan)
        button = "File request" if plan.needs_approval else "Confirm"
    else:
        req = pending["request"]
        verb = "Approve" if pending["kind"] == "approve" else "Reject"
        st.markdown(f"**{verb} request #{req['id']}** by `{req['requester']}` on `{req['endpoint']}`")
        st.markdown(f"> {req['reason']}")
        from dashboard.approvals_view import render_freshness, render_request_plan

        render_request_plan(req)
        render_freshness(req)
        plan = None
        button = verb
    reason = st.text_area("Reason (required, recorded in the audit trail)", key=state.REASON, max_chars=2000)
    override = None
    failing = plan.failing_gates if plan is not None else []
    if pending["kind"] == "approve" or failing:
        if actor.is_admin:
            override = st.text_input("Override failing gates (admin): reason", key=state.OVERRIDE) or None
        elif failing:
            st.error("Evidence gates fail: only an admin can override them, with a reason.", icon=":material/block:")
    if st.button(button, key=state.CONFIRM, type="primary"):
        c = container()
        try:
            if plan is not None:
                out = c.actions.execute(plan, actor, reason, override_reason=override)
            elif pending["kind"] == "approve":
                out = c.actions.approve(actor, pending["request"]["id"], reason, override_reason=override)
            else:
                out = c.actions.reject(actor, pending["request"]["id"], reason)
        except ConsoleError as exc:
            st.session_state[DIALOG_ERROR] = exc
        else:
            st.session_state.pop(PENDING, None)
            st.session_state.pop(DIALOG_ERROR, None)
            st.session_state.pop("actions-endpoint", None)  # the state moved: action inputs start afresh
            st.session_state[state.FLASH] = ("ok" if out.status in ("applied", "rejected") else "info", out.message)
            st.cache_data.clear()
            st.rerun()
    err = st.session_state.get(DIALOG_ERROR)
    if err is not None:
        show_error(err)
        if err.kind in ("conflict", "precondition_failed"):
            st.caption("Nothing was changed. Re-read the current state and decide again.")
            if st.button("Re-read and close", key="reread", icon=":material/refresh:"):
                st.session_state.pop(PENDING, None)
                st.session_state.pop(DIALOG_ERROR, None)
                st.cache_data.clear()
                st.rerun()
