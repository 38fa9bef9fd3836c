"""The audit trail: every attempted action, filterable and downloadable, with the hash chain's status.
Filters live in the URL: ``/audit?actor=bob&action=approve&result=ok&target=cancer``."""

from __future__ import annotations

import json

import pandas as pd
import streamlit as st

from dashboard import state
from dashboard.bootstrap import container
from dashboard.components import guard, table
from services.clock import parse_iso

RESULTS = ["", "ok", "requested", "refused", "conflict", "failed"]
ACTIONS = ["", "request_promotion", "approve", "reject", "start_canary", "set_canary_weight", "promote_canary",
           "abort_canary", "rollback"]


def main() -> None:
    c = container()
    st.title("Audit trail")
    with st.spinner("Verifying the hash chain…"):
        res = c.audit.verify()
    if res.ok:
        st.success(f"Hash chain verified: {res.entries} entries, head `{res.head_hash[:16]}…`. The trail is "
                   "append-only; editing, deleting or reordering any entry breaks the chain.",
                   icon=":material/verified:")
    else:
        st.error(f"Hash chain BROKEN at entry {res.first_bad_seq}: {res.problem}. Entries from there on cannot be "
                 "trusted.", icon=":material/gpp_bad:")
    qp = st.query_params
    cols = st.columns(4)
    names = [""] + c.directory.names()
    if qp.get("actor") and qp.get("actor") not in names:  # someone no longer configured: still searchable
        names.append(qp.get("actor"))
    actor = cols[0].selectbox("Actor", names, index=_idx(names, qp.get("actor")), key=state.AUDIT_FILTER_ACTOR,
                              format_func=lambda x: x or "anyone")
    action = cols[1].selectbox("Action", ACTIONS, index=_idx(ACTIONS, qp.get("action")),
                               key=state.AUDIT_FILTER_ACTION, format_func=lambda x: x or "any action")
    result = cols[2].selectbox("Result", RESULTS, index=_idx(RESULTS, qp.get("result")),
                               key=state.AUDIT_FILTER_RESULT, format_func=lambda x: x or "any result")
    target = cols[3].text_input("Target contains", value=qp.get("target", ""), key=state.AUDIT_FILTER_TARGET)
    for k, v in (("actor", actor), ("action", action), ("result", result), ("target", target)):
        if v:
            qp[k] = v
        elif k in qp:
            del qp[k]
    entries = c.audit.entries(limit=2000, actor=actor or None, action=action or None, result=result or None,
                              target_contains=target or None)
    st.caption(f"{len(entries)} entr{'y' if len(entries) == 1 else 'ies'} shown (newest first, at most 2000)")
    if not entries:
        st.info("No audit entry matches.")
        return
    df = pd.DataFrame([{
        "seq": e.seq, "time": parse_iso(e.ts), "actor": e.actor, "action": e.action, "target": e.target,
        "result": e.result,
        "reason": e.reason, "error": e.error,
        "change": _change(e.before, e.after),
        "gates": "; ".join(f"{_mark(g.get('passed'))}: {g.get('name')}" for g in (e.gates or [])),
        "details": json.dumps(e.details, ensure_ascii=False) if e.details else "",
        "hash": e.hash[:12],
    } for e in entries])
    table(df, key="audit-table", file_name="audit.csv",
          column_config={"time": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm:ss")})
    st.download_button("Download JSON (full entries)",
                       json.dumps([e.as_dict() for e in entries], indent=1, ensure_ascii=False).encode(),
                       file_name="audit.json", mime="application/json", key="audit-json-download")


def _mark(passed) -> str:
    return "pass" if passed else "FAIL" if passed is False else "n/a"


def _idx(options: list[str], value: str | None) -> int:
    return options.index(value) if value in options else 0


def _change(before, after) -> str:
    if not isinstance(before, dict) or not isinstance(after, dict):
        return ""
    parts = [f"{k}: {before.get(k)} → {after.get(k)}" for k in ("stable_version", "canary_version", "canary_weight",
                                                                "champion") if before.get(k) != after.get(k)]
    return "; ".join(parts)


with guard("Audit"):
    main()
