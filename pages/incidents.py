"""Incidents: what is wrong, since when, what changed just before, which version served the bad requests, and
what to do — on one timeline. ``/incidents?endpoint=E&from=-24h&to=now&alert=ID&at=T``."""

from __future__ import annotations

import streamlit as st

from dashboard import actions_ui, data
from dashboard import incidents_view as view
from dashboard.bootstrap import settings_key
from dashboard.components import flash, guard
from dashboard.data import page_now
from dashboard.monitoring_view import time_range


def main() -> None:
    st.title("Incidents")
    flash()
    picked = data.endpoint_picker(st, key="inc-endpoint", clears=("alert", "at"),
                                  nothing="No serving endpoint found: nothing to investigate.")
    if picked is None:
        return
    with guard("time range"):
        start, end = time_range(page_now(), default=view.DEFAULT_FROM, key="inc", presets=view.PRESETS)
        key = settings_key()
        with st.spinner("Reading the timeline…"):
            evs = view.events(key, picked, start, end)
            found, problems = view.alerts(key, picked, start, end)
        alert = None
        with guard("alerts"):
            alert = view.alerts_section(picked, found, problems)
        at = view.moment(start, end)
        with guard("metrics"):
            clicked = view.chart(picked, view.series(key, picked, start, end), evs, found, at,
                                 drift=view.drift_share(key, picked, start, end))
            if clicked is not None and clicked != at:
                st.query_params["at"] = clicked.strftime("%Y-%m-%dT%H:%M:%S")
                st.rerun()
        at = at or (alert.started_at if alert is not None else None)
        left, right = st.columns([3, 2])
        with left:
            if at is not None:
                with guard("serving history"):
                    view.served_section(picked, at)
            else:
                st.caption("Click a moment on the chart (or pick an alert) to see what served then.")
        with right, guard("actions"):
            view.actions(picked, alert)
        if alert is not None:
            with guard("suspects"):
                view.suspects_section(evs, alert)
        with guard("timeline"):
            view.events_section(picked, evs)
            view.report_section(picked, start, end, at)
    actions_ui.resume()


with guard("Incidents"):
    main()
