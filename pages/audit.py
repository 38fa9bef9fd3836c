"""The audit trail: every attempted action, filterable and downloadable, with the hash chain's status.
Filters live in the URL: ``/audit?actor=bob&action=approve&endpoint=cancer-screening&from=2026-11-01&to=2026-11-30``
(also ``result``, ``model``, ``version``; dates are UTC days, ``to`` inclusive)."""

from __future__ import annotations

import json

import pandas as pd
import streamlit as st

from dashboard import audit_view, data
from dashboard.bootstrap import container
from dashboard.components import guard, table

LIMIT = 2000


def main() -> None:
    c = container()
    st.title("Audit trail")
    full = st.button("Verify the whole chain now", key="audit-verify-full", icon=":material/fact_check:")
    with st.spinner("Verifying the hash chain…"):
        res, whole = audit_view.verify_chain(c.audit, data.key(), full=full)
    if res.ok:
        how = "checked in full now" if whole else "new entries checked since the last full check (every 10 min)"
        st.success(f"Hash chain verified: {res.entries} entries, head `{res.head_hash[:16]}…` ({how}). The trail "
                   "is append-only; editing, deleting or reordering any entry breaks the chain.",
                   icon=":material/verified:")
    else:
        st.error(f"Hash chain BROKEN at entry {res.first_bad_seq}: {res.problem}. Entries from there on cannot be "
                 "trusted.", icon=":material/gpp_bad:")
    qp = st.query_params
    filters = audit_view.filter_widgets(qp, actors=c.directory.names(), endpoints=c.audit.targets())
    audit_view.sync_query(qp, filters)
    if filters.start and filters.end and filters.start > filters.end:
        st.warning("*From* is after *To*: no entry can match.", icon=":material/date_range:")
    entries = c.audit.entries(limit=LIMIT, **filters.store_kwargs())
    st.caption(f"{len(entries)} entr{'y' if len(entries) == 1 else 'ies'} shown (newest first, at most {LIMIT}; "
               "times in UTC)")
    if not entries:
        st.info("No audit entry matches." + (" Clear a filter to see more." if filters.active else ""))
        return
    table(pd.DataFrame(audit_view.rows(entries)), key="audit-table", file_name="audit.csv")
    st.download_button("Download JSON (full entries)",
                       json.dumps([e.as_dict() for e in entries], indent=1, ensure_ascii=False).encode(),
                       file_name="audit.json", mime="application/json", key="audit-json-download")


with guard("Audit"):
    main()
