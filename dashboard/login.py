"""The gate in front of everything (``MLOPS_AUTH_MODE`` oidc or proxy): until a person is signed in with a
console role, a run shows only a login screen or a refusal page — no navigation, no data — and stops.

Settings that cannot be read stop every run with just the error: without them nobody can tell who may see
what (and ``dev`` on data that is not local is such an error, services/auth/local.py)."""

from __future__ import annotations

import streamlit as st

from dashboard import identity
from dashboard.bootstrap import container
from dashboard.components import show_error
from services.auth.config import auth_section_problems, provider_host
from services.errors import ConsoleError, Invalid

SIGN_IN = "sign-in"


def _header() -> None:
    st.title(":material/monitoring: MLOps Console", anchor=False)


def _auth_section() -> dict:
    try:
        section = st.secrets.get("auth")
    except Exception:  # noqa: BLE001 - no secrets file at all, or an unreadable one: no [auth]
        return {}
    return section.to_dict() if hasattr(section, "to_dict") else dict(section or {})


def login_screen(why: str | None = None) -> None:
    """Sign in with the OpenID Connect provider of Streamlit's ``[auth]`` section."""
    section = _auth_section()
    problems = auth_section_problems(section)
    if problems:
        _header()
        show_error(Invalid("; ".join(problems), source="settings"))
        return
    _, middle, _ = st.columns([1, 2, 1])
    with middle:
        _header()
    with middle.container(border=True, key="login"):
        st.subheader("Sign in")
        st.write("Sign in with your organisation's account to see models, deployments and approvals. What you "
                 "may change follows your groups.")
        if why:
            st.info(why, icon=":material/schedule:")
        if st.button("Sign in", key=SIGN_IN, type="primary", icon=":material/login:"):
            st.login()
        st.caption(f"You will be sent to {provider_host(section)} and back.")


def refusal(exc: ConsoleError) -> None:
    """Proxy mode, when the proxy's word is not taken: why, and nothing else."""
    _header()
    st.error(f"**Not signed in.** {exc.message}", icon=":material/block:")
    st.caption("This console accepts people only through the organisation's sign-in proxy.")


def no_role(p) -> None:
    """Signed in, but no group of theirs has a console role and MLOPS_OIDC_DEFAULT_ROLE=none."""
    _header()
    groups = ", ".join(f"`{g}`" for g in p.groups) or "none"
    st.warning(f"**{p.actor.name}** is signed in, but none of their groups ({groups}) has a role in this console. "
               "Ask to be added to one of: " + ", ".join(f"`{g}`" for g in container().settings.role_map) + ".",
               icon=":material/no_accounts:")
    if container().settings.auth_mode == "oidc" and st.button("Sign out", key=identity.SIGN_OUT):
        st.logout()


def gate() -> None:
    """Call first in every run: returns only when the run may show the console."""
    try:
        c = container()
    except ConsoleError as exc:
        _header()
        show_error(exc)
        st.stop()
    if c.settings.auth_mode == "dev":
        return
    try:
        p = identity.principal()
    except ConsoleError as exc:
        refusal(exc)
        st.stop()
    if p is None:
        login_screen(identity.sign_in_too_old())
        st.stop()
    if not p.may_enter:
        no_role(p)
        st.stop()
