"""Promotion requests: pending ones to decide, and the record of approved, rejected, expired and void ones.
``/approvals?status=pending`` filters."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import state
from dashboard.actions_ui import resume, start_decision
from dashboard.approvals_view import render_freshness, render_request_plan
from dashboard.bootstrap import container, current_actor
from dashboard.components import flash, fmt_time, guard, table
from dashboard.nav import link

STATUSES = ["pending", "approved", "rejected", "expired", "void", "failed", "all"]


def main() -> None:
    st.title("Approvals")
    flash()
    st.caption("A promotion needs a second person: the requester cannot approve their own request. A request is "
               "bound to the exact change it shows and is void once the endpoint or the champion changes; it "
               f"expires after {_duration(container().settings.approval_ttl_minutes)}.")
    current = st.query_params.get("status", "pending")
    status = st.segmented_control("Status", STATUSES, default=current if current in STATUSES else "pending",
                                  key=state.APPROVALS_STATUS) or "pending"
    if status != current:
        st.query_params["status"] = status
    with st.spinner("Reading requests…"):
        reqs = container().actions.requests(status=None if status == "all" else status)
    actor = current_actor()
    if not reqs:
        st.info(f"No {status if status != 'all' else ''} requests.")
    if status == "pending":
        for r in reqs:
            with st.container(border=True, key=f"request-{r['id']}"):
                top = st.columns([4, 1, 1])
                top[0].markdown(f"**#{r['id']}** · `{r['endpoint']}` · {r['action'].replace('_', ' ')} "
                                f"{', '.join(f'{k} {v}' for k, v in r['params'].items())} · by **{r['requester']}** "
                                f"· expires {fmt_time(_dt(r['expires_at']))}")
                top[0].markdown(f"> {r['reason']}")
                mine = r["requester"] == actor.name
                help_ = "You cannot approve your own request." if mine else None
                if top[1].button("Approve", key=f"action-approve-{r['id']}", type="primary", help=help_,
                                 icon=":material/check:"):
                    start_decision("approve", r)
                if top[2].button("Reject", key=f"action-reject-{r['id']}", icon=":material/close:"):
                    start_decision("reject", r)
                with st.expander("Evidence: the change and its gates", expanded=True):
                    render_request_plan(r)
                    render_freshness(r)
                    link("deployments", f"Endpoint {r['endpoint']}", endpoint=r["endpoint"])
    elif reqs:
        df = pd.DataFrame([{"id": r["id"], "status": r["status"], "endpoint": r["endpoint"], "action": r["action"],
                            "params": ", ".join(f"{k}={v}" for k, v in r["params"].items()),
                            "requester": r["requester"], "reason": r["reason"], "created": r["created_at"],
                            "decided by": r["decided_by"], "decided": r["decided_at"],
                            "decision reason": r["decision_reason"]} for r in reqs])
        event = table(df, key="requests-table", file_name=f"requests-{status}.csv", on_select="rerun",
                      selection_mode="single-row")
        rows = event.selection.rows if event else []
        st.caption("Select a request to see its evidence.")
        if rows:
            r = reqs[rows[0]]
            with st.container(border=True):
                st.markdown(f"**#{r['id']}** · {r['status']} · `{r['endpoint']}` · by **{r['requester']}**"
                            + (f" · decided by **{r['decided_by']}**: {r['decision_reason']}" if r["decided_by"]
                               else ""))
                render_request_plan(r)


def _duration(minutes: int) -> str:
    if minutes % (24 * 60) == 0:
        return f"{minutes // (24 * 60)} d" if minutes > 24 * 60 else "24 h"
    return f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{minutes} min"


def _dt(text):
    from services.clock import parse_iso

    return parse_iso(text) if text else None


with guard("Approvals"):
    main()
    resume()
