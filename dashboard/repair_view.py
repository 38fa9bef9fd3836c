"""Needs repair: what a stopped process left half-done, shown where it matters (Deployments, Approvals, Overview)
with the exact difference and the Repair button (a guarded action: its dry run in the confirmation dialog,
then compare-and-set; ``services.actions.repair``)."""

from __future__ import annotations

import streamlit as st

from dashboard.bootstrap import container, current_actor
from dashboard.nav import href

REPAIR_HELP = ("Shows exactly what it will do first. Repair finishes the change forward: the endpoint's write won "
               "and served, so @champion is moved to what the endpoint serves and the request is decided by what "
               "happened. The endpoint itself is not changed; to go back, roll back afterwards.")


def findings(endpoint: str | None = None) -> list:
    """Not cached: whether something needs repair must be current when someone is about to act."""
    return container().actions.needs_repair(endpoint)


def repair_box(f, *, key: str, link: bool = False) -> None:
    """One endpoint that needs repair: what differs, what stopped, and the Repair button (``action-repair`` on the
    endpoint's page, ``action-repair-<key>`` elsewhere)."""
    from dashboard.actions_ui import start

    with st.container(border=True, key=f"needs-repair-{key}"):
        st.error(f"**Needs repair** — {f.lines[0]}", icon=":material/build:")
        for line in f.lines[1:]:
            st.markdown(f"- {line}")
        if f.unreadable:
            st.caption("What to repair is decided once the endpoint and the registry can be read again.")
            return
        refusal = container().actions.permissions(current_actor(), f.endpoint)["repair"]
        left, right = st.columns([1, 3], vertical_alignment="center")
        with left:
            if st.button("Repair…", key="action-repair" if key == "endpoint" else f"action-repair-{key}",
                         type="primary", icon=":material/build:", disabled=refusal is not None,
                         help=refusal or REPAIR_HELP, width="stretch"):
                start("repair", f.endpoint)
        with right:
            if link:
                st.markdown(f"[Open {f.endpoint}]({href('deployments', endpoint=f.endpoint)})")
            else:
                st.caption("Repair moves the registry to what the endpoint serves and settles the request; it "
                           "shows exactly what it will do before anything changes.")


def in_progress(endpoint: str) -> None:
    """Actions being applied right now on ``endpoint`` (a live process, within its lease)."""
    for s in container().actions.in_progress(endpoint):
        st.info(f"Being applied right now: {s.what}.", icon=":material/hourglass_top:")


def section(found: list, *, key: str, title: str = "Needs repair") -> None:
    """Every endpoint of ``found`` that needs repair, with its button and a link to the endpoint."""
    if not found:
        return
    st.subheader(title, anchor=False)
    st.caption("A process stopped in the middle of an action: the endpoint and the registry (or a request) do "
               "not say the same thing. Nothing is repaired behind your back.")
    for i, f in enumerate(found):
        repair_box(f, key=f"{key}-{i}", link=True)
