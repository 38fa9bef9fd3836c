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
from dashboard.approvals_view import gates_table
from dashboard.bootstrap import container, current_actor
from dashboard.components import MISSING, fmt_time, show_error
from dashboard.data import clear_caches
from dashboard.nav import href
from services.errors import ConsoleError

PENDING = "pending-action"
DIALOG_ERROR = "pending-action-error"


def render_plan(plan) -> None:
    if plan.retraining is not None:
        render_retrain_plan(plan)
        return
    st.markdown(f"**{plan.label}** on `{plan.endpoint}` · model `{plan.model}` · backend `{plan.backend}`")
    for w in plan.warnings:  # first: the person must see these before anything else
        st.warning(w, icon=":material/warning:")
    if plan.notes:  # a repair: what a stopped process left, exactly
        st.markdown("**What happened**")
        st.error("\n".join(f"- {n}" for n in plan.notes), icon=":material/build:")
    if plan.change is None:  # a repair never writes the endpoint
        traffic = next((r["before"] for r in plan.endpoint_diff if r["field"] == "traffic"), MISSING)
        st.markdown(f"**Endpoint** — not changed (traffic {traffic})")
    else:
        _endpoint_table(plan)
    st.markdown("**Registry**")
    if plan.registry_changes:
        for rc in plan.registry_changes:
            st.markdown(f"- `{rc['model']}` alias **@{rc['alias']}**: v{rc['from'] or '—'} → **v{rc['to']}**")
    else:
        st.caption("No registry change.")
    if plan.steps:
        st.markdown("**Confirming will**")
        st.markdown("\n".join(f"{i}. {step}" for i, step in enumerate(plan.steps, 1)))
    if plan.gates:
        st.markdown("**Evidence gates**")
        gates_table([g.as_dict() for g in plan.gates], key="plan-gates")
    if plan.needs_approval:
        st.info("The policy requires another person's approval: confirming files a request bound to exactly this "
                "change.", icon=":material/how_to_reg:")
    if plan.backend_preview is not None:
        with st.expander("What will be sent to the serving backend"):
            st.code(json.dumps(plan.backend_preview, indent=2, default=str), language="json")


def render_retrain_plan(plan) -> None:
    """A retraining's dry run: what is retrained on which data with which retrainer, the evidence, what is sent."""
    r = plan.retraining
    st.markdown(f"**{plan.label}** on `{plan.endpoint}` · model `{plan.model}` · retrainer `{plan.backend}`")
    for w in plan.warnings:
        st.warning(w, icon=":material/warning:")
    window = r.get("window") or {}
    st.dataframe(pd.DataFrame([
        {"what": "endpoint", "planned": r["endpoint"]}, {"what": "model", "planned": r["model"]},
        {"what": "parent version (serves as stable)", "planned": f"v{r['parent_version']}"},
        {"what": "champion (registry)", "planned": f"v{r['champion']}" if r.get("champion") else MISSING},
        {"what": "data window from", "planned": fmt_time(window.get("start"))},
        {"what": "data window to", "planned": fmt_time(window.get("end"))},
        {"what": "retrainer", "planned": r["retrainer"]}]), hide_index=True, key="retrain-plan")
    st.markdown("**Evidence** — live traffic per version in the window")
    live = (r.get("evidence") or {}).get("live") or []
    if live:
        st.dataframe(pd.DataFrame(live), hide_index=True, key="retrain-evidence")
    else:
        st.caption("No traffic logged in the window.")
    if (r.get("evidence") or {}).get("given"):
        st.json(r["evidence"]["given"], expanded=False)
    st.markdown("**Confirming will**" if not plan.needs_approval else "**Once approved, this will**")
    st.markdown("\n".join(f"{i}. {step}" for i, step in enumerate(plan.steps, 1)))
    if plan.needs_approval:
        st.info("The policy requires another person's approval: confirming files a request bound to exactly this "
                "retraining.", icon=":material/how_to_reg:")
    with st.expander(f"What the retrainer ({plan.backend}) will be sent"):
        st.code(json.dumps(plan.backend_preview, indent=2, default=str), language="json")


def _endpoint_table(plan) -> None:
    rows = [r for r in plan.endpoint_diff]
    df = pd.DataFrame([{"": "●" if r["changed"] else "", "field": r["field"], "before": _s(r["before"]),
                        "after": _s(r["after"])} for r in rows])
    st.markdown("**Endpoint**")
    st.dataframe(df.style.apply(lambda row: ["background-color: #fff3cd" if row[""] else ""] * len(row), axis=1),
                 hide_index=True, key="plan-endpoint-diff",
                 column_config={"": st.column_config.TextColumn("", width=24, help="changes")})


def _s(v) -> str:
    return MISSING if v is None else str(v)


ACK = "ack-warnings"


def _reset_dialog() -> None:
    for key in (DIALOG_ERROR, state.REASON, state.OVERRIDE, ACK):
        st.session_state.pop(key, None)


def start(action: str, endpoint: str, *, context: dict | None = None, **params) -> None:
    """Plan an action (dry run); the confirmation dialog opens at the end of the page run (:func:`resume`).
    Refusals while planning are shown at once. ``context`` (e.g. the alert acted on) goes into the audit entry."""
    try:
        plan = container().actions.plan(current_actor(), action, endpoint, **params)
    except ConsoleError as exc:
        show_error(exc)
        return
    _reset_dialog()
    st.session_state[PENDING] = {"kind": "plan", "plan": plan, "context": context}


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
        if (pending.get("context") or {}).get("alert"):
            a = pending["context"]["alert"]
            st.caption(f"In answer to alert **{a.get('rule')}** ({a.get('id')}): linked in the audit entry.")
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
    blocked = None
    if pending["kind"] == "approve" or failing:
        if actor.is_admin:
            override = st.text_input("Override failing gates (admin): reason", key=state.OVERRIDE) or None
        elif failing:
            blocked = "Evidence gates fail: only an admin can override them, with a reason."
            st.error(blocked, icon=":material/block:")
    if plan is not None and plan.warnings and not blocked:
        if not st.checkbox(f"I have read the warning{'s' if len(plan.warnings) > 1 else ''} above", key=ACK):
            blocked = "Tick the box to confirm you have read the warnings."
    if st.button(button, key=state.CONFIRM, type="primary", disabled=blocked is not None, help=blocked):
        c = container()
        try:
            if plan is not None:
                with st.spinner("Retraining…" if plan.retraining is not None and not plan.needs_approval else
                                "Working…"):
                    out = c.actions.execute(plan, actor, reason, override_reason=override,
                                            context=pending.get("context"))
            elif pending["kind"] == "approve":
                out = c.actions.approve(actor, pending["request"]["id"], reason, override_reason=override)
            else:
                out = c.actions.reject(actor, pending["request"]["id"], reason)
        except ConsoleError as exc:
            st.session_state[DIALOG_ERROR] = exc
        else:
            st.session_state.pop(PENDING, None)
            st.session_state.pop(DIALOG_ERROR, None)
            message = out.message
            if out.status == "pending_approval" and out.request_id:
                message += f" — [open request #{out.request_id}]({href('approvals', request=out.request_id)})"
            st.session_state[state.FLASH] = ("ok" if out.status in ("applied", "rejected") else "info", message)
            clear_caches(after_action=True)
            st.rerun()
    err = st.session_state.get(DIALOG_ERROR)
    if err is not None:
        show_error(err)
        if err.kind in ("conflict", "precondition_failed"):
            st.caption("Nothing was changed. Re-read the current state and decide again.")
            if st.button("Re-read and close", key="reread", icon=":material/refresh:"):
                st.session_state.pop(PENDING, None)
                st.session_state.pop(DIALOG_ERROR, None)
                clear_caches(after_action=True)
                st.rerun()


ACTION_INPUTS = ("promote-version", "canary-version", "canary-weight", "rollback-version")


def _fresh_inputs(ep) -> None:
    """Inputs belong to one state of one endpoint: after any change (ours or anyone's) they start afresh."""
    seen = (ep.name, ep.resource_version)
    if st.session_state.get("actions-state") != seen:
        for k in ACTION_INPUTS:
            st.session_state.pop(k, None)
        st.session_state["actions-state"] = seen


def actions_panel(view, pending: list[dict]) -> None:
    """The guarded actions of one endpoint. Buttons the acting person may not use are disabled, with the reason
    on hover; the service layer checks everything again."""
    from dashboard import data

    ep = view.endpoint
    actor = current_actor()
    acts = container().actions
    st.subheader("Actions", anchor=False)
    st.caption(f"Acting as **{actor.name}** ({', '.join(actor.roles) or 'no roles'}). Every action shows a dry run "
               "first and is recorded in the audit trail.")
    if not ep.model:
        st.info("This endpoint serves a model the registry does not know; the console cannot act on it.")
        return
    _fresh_inputs(ep)
    may = acts.permissions(actor, ep.name)
    if ep.read_only:
        may = {k: f"the endpoint is read-only: {ep.read_only_reason}" for k in may}
    if all(may[a] for a in ("request_promotion", "start_canary", "rollback")):
        st.info(f"{actor.name} may only look here: " + (may["request_promotion"] or ""), icon=":material/visibility:")
    try:
        versions = [v.version for v in data.model_view(data.key(), ep.model).versions]
    except ConsoleError as exc:  # the registry is down: abort, rollback and re-weighting do not need it
        show_error(exc)
        versions = [v for v in (ep.stable_version, ep.canary_version) if v]
    a, b, cc = st.columns(3)
    with a, st.container(border=True):
        st.markdown("**Promote a version**")
        st.caption("Make a version stable at 100% and move @champion to it.")
        choices = [v for v in versions if v != ep.stable_version or ep.canary_version]
        default = choices.index(ep.canary_version) if ep.canary_version in choices else 0
        ver = st.selectbox("Version", choices, index=default if choices else None, key="promote-version",
                           format_func=lambda x: f"v{x}" + (" (canary)" if x == ep.canary_version else ""))
        waiting = [r for r in pending if r["action"] in ("request_promotion", "promote_canary")]
        if waiting:
            st.caption(f"Request #{waiting[0]['id']} for v{waiting[0]['params'].get('version')} is pending.")
        if _button("Request promotion", "action-request", may["request_promotion"] or (None if choices else
                   "no other version to promote"), ":material/upgrade:"):
            start("request_promotion", ep.name, version=ver)
    with b, st.container(border=True):
        st.markdown("**Canary**")
        if ep.canary_version:
            st.caption(f"v{ep.canary_version} gets {ep.canary_weight}% of the traffic.")
            w = st.number_input("Canary weight (%)", min_value=0, max_value=100, step=5,
                                value=int(ep.canary_weight), key="canary-weight")
            if _button("Set canary weight", "action-canary", may["set_canary_weight"], ":material/tune:"):
                start("set_canary_weight", ep.name, weight=w)
            b1, b2 = st.columns(2)
            with b1:
                if _button("Promote", "action-promote", may["promote_canary"], ":material/done_all:",
                           "Make the canary stable at 100% and move @champion to it"):
                    start("promote_canary", ep.name)
            with b2:
                if _button("Abort", "action-abort", may["abort_canary"], ":material/cancel:",
                           "Send all traffic back to the stable version and remove the canary"):
                    start("abort_canary", ep.name)
        else:
            cands = [v for v in versions if v != ep.stable_version]
            ver = st.selectbox("Canary version", cands, key="canary-version", format_func=lambda x: f"v{x}")
            w = st.number_input("Canary weight (%)", min_value=0, max_value=100, step=5, value=10,
                                key="canary-weight")
            if _button("Start canary", "action-canary", may["start_canary"] or (None if cands else
                       "no other version"), ":material/science:"):
                start("start_canary", ep.name, version=ver, weight=w)
    with cc, st.container(border=True):
        st.markdown("**Roll back**")
        targets = acts.rollback_targets(ep)
        st.caption("Back to a version that was stable here before (the one just before first). Any other "
                   "version is a promotion, with its gates and approval." if targets else
                   "No earlier stable version on record: use a promotion.")
        to = st.selectbox("Roll back to", targets, index=0 if targets else None, key="rollback-version",
                          format_func=lambda x: f"v{x}" + (" (just before)" if targets and x == targets[0] else ""),
                          placeholder="no earlier stable version")
        if _button("Roll back", "action-rollback", may["rollback"] or (None if to else
                   "no earlier stable version on record"), ":material/undo:"):
            start("rollback", ep.name, to_version=to)
    retrain_box(ep, may)


def retrain_box(ep, may: dict) -> None:
    """*Retrain*: what serves as stable, on its training data plus the window's labelled traffic (a dry run first)."""
    with st.container(border=True):
        st.markdown("**Retrain**")
        st.caption(f"Retrain v{ep.stable_version} (what serves as stable) on its training data plus the labelled "
                   "traffic of the window; the result becomes the challenger. Nothing that serves changes."
                   if ep.stable_version else "No stable version to retrain.")
        days = st.number_input("Window (days before now)", min_value=1, max_value=365, step=1, value=7,
                               key="retrain-days")
        if _button("Retrain", "action-retrain", may["retrain"] or (None if ep.stable_version else
                   "no stable version to retrain"), ":material/model_training:"):
            start("retrain", ep.name, days=days)


def _button(label: str, key: str, refusal: str | None, icon: str, help_: str | None = None) -> bool:
    """A button that is disabled, with the reason on hover, when the person may not use it."""
    return st.button(label, key=key, disabled=refusal is not None, icon=icon, help=refusal or help_,
                     width="stretch")
