"""Who is acting in this browser session (development identities until a real login exists).

A new session starts as the least-privileged identity (a viewer), never silently as an operator. The
chosen identity is kept across pages (session state) and across reloads of the same browser session (a
session cookie, read back through ``st.context.cookies`` when the next session starts).
"""

from __future__ import annotations

import json

import streamlit as st

from dashboard import state
from dashboard.bootstrap import container
from services.identity import Actor

COOKIE = "mlops-dev-identity"
_WRITTEN = "identity-cookie-written"


def ensure() -> str:
    """The identity of this session, chosen once: the cookie of this browser session, else the least
    privileged one. Call before the sidebar's select box is drawn."""
    directory = container().directory
    name = st.session_state.get(state.IDENTITY)
    if name not in directory.identities:
        remembered = _cookie()
        name = remembered if remembered in directory.identities else directory.least_privileged()
        st.session_state[state.IDENTITY] = name
        st.session_state[_WRITTEN] = remembered
    return name


def remember() -> None:
    """Write the chosen identity into a session cookie when it changed (survives a reload, not the browser)."""
    name = st.session_state.get(state.IDENTITY)
    if not name or st.session_state.get(_WRITTEN) == name:
        return
    st.session_state[_WRITTEN] = name
    value = json.dumps(name)  # a JS string literal; encodeURIComponent keeps the cookie well-formed
    st.html(f"<script>document.cookie = '{COOKIE}=' + encodeURIComponent({value}) + "
            "'; path=/; SameSite=Strict';</script>", unsafe_allow_javascript=True, width="content")


def _cookie() -> str | None:
    try:
        from urllib.parse import unquote

        raw = st.context.cookies.get(COOKIE)
    except Exception:  # noqa: BLE001 - no request context (AppTest): no cookie
        return None
    return unquote(raw) if raw else None


def current_actor() -> Actor:
    return container().directory.get(ensure())
