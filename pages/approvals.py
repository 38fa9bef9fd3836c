"""Promotion requests: pending ones to decide, and the record of approved, rejected, expired and void ones.
``/approvals?status=pending`` filters; ``/approvals?request=7`` opens one request whatever its status."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import streamlit as st

from dashboard import state
from dashboard.actions_ui import resume, start_decision
from dashboard.approvals_view import render_request_plan, request_line, show_freshness
from dashboard.bootstrap import container, current_actor
from dashboard.components import MISSING, flash, fmt_time, guard, table
from dashboard.nav import link
from dashboard.repair_view import findings, section
from services.clock import parse_iso

STATUSES = ["pending", "applying", "approved", "rejected", "expired", "void", "failed", "all"]


def card(r: dict, actor, *, expanded: bool = True) -> None:
    acts = container().actions
    with st.container(border=True, key=f"request-{r['id']}"):
        top = st.columns([4, 1, 1])
        top[0].markdown(request_line(r) + ("" if r["status"] == "pending" else f" · **{r['status']}**"))
        top[0].markdown(f"> {r['reason']}")
        for i, decision in ((1, "approve"), (2, "reject")):
            refusal = acts.decision_refusal(actor, r, decision)
            with top[i]:
                if st.button(decision.title(), key=f"action-{decision}-{r['id']}", disabled=refusal is not None,
                             help=refusal, type="primary" if decision == "approve" else "secondary",
                             icon=":material/check:" if decision == "approve" else ":material/close:"):
                    start_decision(decision, r)
        if r["status"] == "pending":
            worse = sum(1 for g in (r.get("plan") or {}).get("gates") or [] if g.get("worse"))
            show_freshness(True, "", r.get("failing_gates") or [], r.get("freshness_unknown"), worse)
        elif r.get("needs_repair"):
            st.error(f"**Needs repair** — {r['needs_repair']}", icon=":material/build:")
        elif r.get("applying_now"):
            st.info(r["applying_now"].capitalize() + ".", icon=":material/hourglass_top:")
        else:
            st.warning(f"{r['status'].title()} — {r.get('decision_reason') or 'no longer approvable'} "
                       f"(by {r.get('decided_by') or MISSING}, {fmt_time(r.get('decided_at'))}).",
                       icon=":material/block:")
        with st.expander("Evidence: the change and its gates", expanded=expanded):
            render_request_plan(r)
            link("deployments", f"Endpoint {r['endpoint']}", endpoint=r["endpoint"])


def main() -> None:
    c = container()
    st.title("Approvals")
    flash()
    st.caption("A promotion needs a second person: the requester cannot approve their own request. A request is "
               "bound to the exact change it shows and is void once the endpoint or the champion changes; it "
               f"expires after {_duration(c.settings.approval_ttl_minutes)}.")
    actor = current_actor()
    wanted = st.query_params.get("request", "").lstrip("#")
    current = st.query_params.get("status", "pending")
    status = st.segmented_control("Status", STATUSES, default=current if current in STATUSES else "pending",
                                  key=state.APPROVALS_STATUS) or "pending"
    if status != current:
        st.query_params["status"] = status
    with st.spinner("Reading requests (and checking that pending ones still apply)…"):
        reqs = c.actions.requests()
    if any(r.get("needs_repair") for r in reqs):
        with guard("repairs"):
            section([f for f in findings() if any(s.request_id for s in f.items)], key="approvals",
                    title="Needs repair: a request left applying")
    if wanted.isdigit():
        one = [r for r in reqs if r["id"] == int(wanted)]
        if one:
            st.subheader(f"Request #{wanted}", anchor=False)
            card(one[0], actor)
        else:
            st.warning(f"No request #{wanted} among the latest requests.", icon=":material/search_off:")
    shown = [r for r in reqs if status == "all" or r["status"] == status]
    if status == "pending":
        for r in shown:
            if str(r["id"]) != wanted:
                card(r, actor)
        if not shown:
            st.info("No pending requests.")
        since = c.clock() - timedelta(minutes=c.settings.approval_ttl_minutes)
        stale = [r for r in reqs if r["status"] in ("void", "expired") and r.get("decided_at")
                 and parse_iso(r["decided_at"]) >= since and str(r["id"]) != wanted]
        if stale:
            st.subheader("No longer approvable", anchor=False)
            st.caption("Requests that were pending recently but can no longer apply.")
            for r in stale:
                card(r, actor, expanded=False)
    elif shown:
        df = pd.DataFrame([{"id": r["id"], "status": r["status"], "endpoint": r["endpoint"],
                            "action": r["action"].replace("_", " "),
                            "params": ", ".join(f"{k} {v}" for k, v in r["params"].items()) or MISSING,
                            "requester": r["requester"], "reason": r["reason"], "filed": fmt_time(r["created_at"]),
                            "decided by": r["decided_by"] or MISSING, "decided": fmt_time(r["decided_at"]),
                            "decision reason": r["decision_reason"] or MISSING} for r in shown])
        event = table(df, key="requests-table", file_name=f"requests-{status}.csv", on_select="rerun",
                      selection_mode="single-row")
        rows = event.selection.rows if event else []
        st.caption("Select a request to see its evidence.")
        if rows:
            card(shown[rows[0]], actor)
    else:
        st.info(f"No {status if status != 'all' else ''} requests.")


def _duration(minutes: int) -> str:
    if minutes % (24 * 60) == 0:
        return f"{minutes // (24 * 60)} d" if minutes > 24 * 60 else "24 h"
    return f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{minutes} min"


with guard("Approvals"):
    main()
    resume()
