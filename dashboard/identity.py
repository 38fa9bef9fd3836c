"""Who is acting in this browser session (``MLOPS_AUTH_MODE``; the pure logic is in :mod:`services.auth`).

* ``dev``: development identities. A new session starts as the least-privileged one (a viewer), never silently
  as an operator; the choice is kept across pages (session state) and reloads of the same browser session (a
  session cookie, read back through ``st.context.cookies`` when the next session starts).
* ``oidc``: the person signed in with ``st.login`` (Streamlit's identity cookie, ``st.user``): the subject
  (``sub``) acts, the roles come from the groups claim through MLOPS_OIDC_ROLE_MAP.
* ``proxy``: the authenticating reverse proxy's headers (``st.context.headers``), believed only on a
  connection from one of MLOPS_TRUSTED_PROXIES.

:mod:`dashboard.login` keeps everyone out who is not signed in; this module says who they are.
"""

from __future__ import annotations

import json

import streamlit as st

from dashboard import state
from dashboard.bootstrap import container
from services.auth.claims import Principal, principal_from_claims, session_too_old
from services.auth.proxy import ProxyHeaders, parse_trusted_proxies, principal_from_headers
from services.errors import PermissionDenied
from services.identity import Actor

COOKIE = "mlops-dev-identity"
_WRITTEN = "identity-cookie-written"
SIGN_OUT = "sign-out"


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


def _headers() -> dict[str, list[str]]:
    """Every header of the request that opened this session, with all its values."""
    try:
        headers = st.context.headers
        return {k: headers.get_all(k) for k in headers}
    except Exception:  # noqa: BLE001 - no request context (AppTest): no headers
        return {}


def _peer() -> str | None:
    """The address the session's connection came from. Not ``st.context.ip_address``: it turns loopback into
    None, which would make a proxy on the same host indistinguishable from an unknown peer."""
    try:
        from streamlit.runtime import exists, get_instance
        from streamlit.runtime.scriptrunner import get_script_run_ctx

        ctx = get_script_run_ctx()
        client = get_instance().get_client(ctx.session_id) if ctx is not None and exists() else None
        peer = getattr(getattr(client, "client_context", None), "remote_ip", None)
    except Exception:  # noqa: BLE001 - no runtime: unknown
        return None
    return peer if isinstance(peer, str) else None  # AppTest's runtime is a mock: unknown


def principal() -> Principal | None:
    """The signed-in person (``oidc``/``proxy``); None when nobody is signed in (or the sign-in is too old).
    Proxy mode raises PermissionDenied saying why the proxy's word is not taken."""
    s = container().settings
    if s.auth_mode == "oidc":
        if not st.user.is_logged_in or sign_in_too_old():
            return None
        return principal_from_claims(st.user.to_dict(), roles_claim=s.oidc_roles_claim, role_map=s.role_map,
                                     default_role=s.default_role)
    if s.auth_mode == "proxy":
        names = ProxyHeaders(s.proxy_user_header, s.proxy_email_header, s.proxy_groups_header, s.proxy_name_header)
        return principal_from_headers(_headers(), _peer(), trusted=parse_trusted_proxies(",".join(s.trusted_proxies)),
                                      names=names, role_map=s.role_map, default_role=s.default_role)
    return None


def sign_in_too_old() -> str | None:
    """Why this browser's sign-in must be renewed (None: it is fresh, or nobody is signed in)."""
    c = container()
    if c.settings.auth_mode != "oidc" or not st.user.is_logged_in:
        return None
    return session_too_old(st.user.to_dict(), c.clock(), c.settings.oidc_session_hours)


def current_actor() -> Actor:
    c = container()
    if c.settings.auth_mode == "dev":
        return c.directory.get(ensure())
    p = principal()
    if p is None or not p.may_enter:
        raise PermissionDenied("you are not signed in with a console role", source="identity")
    return p.actor


def sidebar() -> None:
    """Who acts, in the sidebar: the development identity picker, or the signed-in person and Sign out."""
    c = container()
    if c.settings.auth_mode == "dev":
        ensure()
        st.selectbox(
            "Acting as", c.directory.names(), key=state.IDENTITY,
            format_func=lambda n: f"{n} · {', '.join(c.directory.identities[n])}",
            help="Development identities from settings (MLOPS_DEV_IDENTITIES). A new session starts as the "
                 "least-privileged one; your choice is kept across pages and reloads of this browser session.")
        remember()
        st.warning("Development mode: there is no login. Anyone can pick any identity.",
                   icon=":material/lock_open:")
        return
    p = principal()
    if p is None:
        return
    with st.container(key="signed-in", border=True):
        st.caption("Signed in as")
        st.markdown(f":material/account_circle: **{p.actor.name}**")
        if p.email and p.email != p.actor.name:
            st.caption(p.email)
        st.markdown("Roles " + (" ".join(f":blue-badge[{r}]" for r in p.actor.roles) or ":gray-badge[none]"))
        if not p.mapped:
            st.caption("None of your groups has a console role (MLOPS_OIDC_ROLE_MAP): you can look, not act.")
        if c.settings.auth_mode == "oidc":
            if st.button("Sign out", key=SIGN_OUT, icon=":material/logout:"):
                st.logout()
        else:
            st.caption("Signed in through the authenticating proxy.")
