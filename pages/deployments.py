"""What serves where: endpoints, traffic split, readiness, revisions, registry agreement, guarded actions.
``/deployments?endpoint=NAME`` opens one endpoint."""

from __future__ import annotations

import streamlit as st

from dashboard import data, state
from dashboard.actions_ui import resume
from dashboard.components import flash, guard, show_error
from dashboard.deployments_view import endpoint_detail, overview_table
from dashboard.repair_view import findings
from services.errors import ConsoleError


def main() -> None:
    st.title("Deployments")
    flash()
    with st.spinner("Reading endpoints…"):
        views = data.serving_views(data.key())
    if not views:
        st.info("No serving endpoint found. With the local backend, `python -m services seed-demo` creates the "
                "demo's endpoints; with KServe, check MLOPS_KSERVE_NAMESPACES.")
        return
    found = None
    with guard("repairs"):
        found = findings()
    repairs = {f.endpoint: f for f in found or []}
    overview_table(views, repairs)
    names = [v.endpoint.name for v in views]
    wanted = st.query_params.get("endpoint")
    prefetched = None
    if wanted and wanted not in names:  # e.g. an endpoint outside the listed namespaces: read it once
        try:
            prefetched = data.endpoint_view(wanted)
        except ConsoleError as exc:
            show_error(exc)
            return
        names.append(wanted)
    index = names.index(wanted) if wanted in names else 0
    picked = st.selectbox("Endpoint", names, index=index, key=state.ENDPOINT_PICKER)
    if picked != wanted:
        st.query_params["endpoint"] = picked
    with guard("endpoint"):
        endpoint_detail(picked, prefetched if prefetched and prefetched.endpoint.name == picked else None, found)


with guard("Deployments"):
    main()
    resume()
