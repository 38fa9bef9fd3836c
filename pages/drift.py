"""Drift: whether an endpoint's traffic still looks like the data a version was trained on, since when, and in
which features. ``/drift?endpoint=E&version=V&from=-7d&to=now&feature=F``."""

from __future__ import annotations

from datetime import timedelta

import streamlit as st

from dashboard import data
from dashboard.components import guard
from dashboard.data import page_now
from dashboard.drift_view import DEFAULT_FROM, PRESETS, TTL, pick_version, render
from dashboard.monitoring_view import time_range


def main() -> None:
    st.title("Drift")
    top = st.columns([2, 2])
    picked = data.endpoint_picker(top[0], key="drift-endpoint", clears=("version", "feature"),
                                  nothing="No serving endpoint found: no traffic to compare yet.")
    if picked is None:
        return
    with guard("time range"):
        # now rounded up to the reads' TTL (30 s): sessions share a window's read for as long as it is cached
        start, end = time_range(page_now(timedelta(seconds=TTL)), default=DEFAULT_FROM, key="drift", presets=PRESETS)
        with top[1]:
            version = pick_version(picked, start, end)
        if version is None:
            st.info(f"No request of a known version on **{picked}** in this window.")
            return
        with guard("drift"):
            render(picked, version, start, end)


with guard("Drift"):
    main()
