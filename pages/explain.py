"""Explanations: why a model version decides as it does (SHAP). ``/explain?model=M&version=V[&feature=F]``;
one logged prediction with ``&endpoint=E&request_id=R[&row=N]`` (the version that answered it is explained
below its waterfall); ``&drift=1`` opens reference vs production traffic.

Routing only; the views are in :mod:`dashboard.explain_view`."""

from __future__ import annotations

import streamlit as st

from dashboard.components import guard
from dashboard.explain_view import pickers, prediction_section, version_section
from dashboard.nav import link


def main() -> None:
    st.title("Explanations")
    qp = st.query_params
    endpoint, request_id = qp.get("endpoint"), qp.get("request_id")
    answered = None
    if endpoint and request_id:
        try:
            row = int(qp.get("row", "0"))
        except ValueError:
            row = 0
        with guard("one prediction"):
            answered = prediction_section(endpoint, request_id, row)
        link("explain", "Leave this prediction", icon=":material/close:",
             model=qp.get("model") or (answered or (None, None))[0],
             version=qp.get("version") or (answered or (None, None))[1])
        st.divider()
    model, version = pickers(*(answered or (None, None)))
    if model and version:
        version_section(model, version)


with guard("Explanations"):
    main()
