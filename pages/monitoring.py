"""Monitoring: how each version of an endpoint behaves live — request rate, errors, latency, live quality —
stable and canary side by side with the significance tests. ``/monitoring?endpoint=E&from=-1h&to=now``."""

from __future__ import annotations

from datetime import timedelta

import streamlit as st

from dashboard import data
from dashboard.components import guard
from dashboard.data import page_now
from dashboard.monitoring_view import render, time_range

REFRESH_SECONDS = 15


def main() -> None:
    st.title("Monitoring")
    top = st.columns([2, 1])
    picked = data.endpoint_picker(top[0], key="mon-endpoint", nothing="No serving endpoint found: nothing to "
                                                                      "monitor yet.")
    if picked is None:
        return
    auto = top[1].toggle(f"Auto-refresh every {REFRESH_SECONDS} s", key="mon-auto")
    with guard("time range"):
        start, end = time_range(page_now())
        live_to_now = st.query_params.get("to", "now") == "now"

        @st.fragment(run_every=timedelta(seconds=REFRESH_SECONDS) if auto else None)
        def body() -> None:
            now = page_now()  # rounded up to 10 s as on a page load: auto-refreshing sessions share their reads
            # a range ending now slides with the refresh; a fixed range stays as it is
            s, e = (start + (now - end), now) if live_to_now and auto else (start, end)
            with guard("metrics"):
                render(picked, s, e)

        body()


with guard("Monitoring"):
    main()
