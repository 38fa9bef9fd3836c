"""MLOps Console entrypoint: ``streamlit run dashboard/app.py``."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

from dashboard import identity, login  # noqa: E402
from dashboard.bootstrap import container  # noqa: E402
from dashboard.components import guard, refresh_button  # noqa: E402
from dashboard.nav import pages  # noqa: E402


def tcp_nodelay() -> None:
    """Turn Nagle's algorithm off for this server's TCP connections (once per process).

    Streamlit 1.67 binds its listening socket itself with ``socket.socket(family=…)`` (protocol number 0), and
    asyncio sets ``TCP_NODELAY`` on accepted connections only when the socket's protocol is ``IPPROTO_TCP`` —
    so none of this server's connections has it. Every response on a kept-alive connection (the browser loads
    ~60 script chunks over 6 of them when a page first shows a table, a select box, a metric…) then waits
    ~40 ms for the browser's delayed ACK, and websocket messages queue behind each other the same way. That
    was most of a page load in the browser (``bench/pages_browser.py``): 44 ms per request instead of <1 ms.

    Connections accepted from now on get ``TCP_NODELAY`` (asyncio's helper without the protocol check); the
    ones open already (the browser's first connections) get it set here directly. Only in a process that
    ``streamlit run`` started (not under AppTest)."""
    import asyncio.base_events as base_events

    if getattr(base_events._set_nodelay, "mlops_console", False) or "streamlit.web.bootstrap" not in sys.modules:
        return  # done already, or no server in this process (AppTest)

    def _set_nodelay(sock: socket.socket) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6) and sock.type == socket.SOCK_STREAM:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    _set_nodelay.mlops_console = True
    base_events._set_nodelay = _set_nodelay
    try:
        fds = [int(fd) for fd in os.listdir("/proc/self/fd")]
    except OSError:  # not Linux: only new connections get it
        return
    for fd in fds:
        try:
            with socket.socket(fileno=os.dup(fd)) as sock:  # a duplicate: closing it leaves the fd alone
                _set_nodelay(sock)
        except OSError:  # not a socket, closed meanwhile, or not TCP
            continue


tcp_nodelay()
st.set_page_config(page_title="MLOps Console", page_icon=":material/monitoring:", layout="wide")


def sidebar() -> None:
    with st.sidebar:
        with guard("settings"):
            c = container()
            identity.sidebar()  # who acts: the dev identity picker, or the signed-in person and Sign out
            st.caption(f"Registry: `{_short(c.settings.mlflow_tracking_uri)}`  \n"
                       f"Serving: `{c.settings.serving_backend}`")
        refresh_button()


def _short(uri: str) -> str:
    return uri if len(uri) < 48 else "…" + uri[-46:]


# The query parameters the previous run of this session left in the browser's URL.
URL_LEFT = "query-params-left"

login.gate()  # signed-in people only (MLOPS_AUTH_MODE oidc/proxy): else a login screen or a refusal, and stop
nav = st.navigation(list(pages().values()))
# st.page_link to the *same* page with other query_params does not rewrite the browser URL (Streamlit only
# does that on a page change); the stale URL would then be sent back on the next widget rerun. So when a run
# starts with other parameters than the last run left (a link, back/forward), re-send them. Not otherwise: a
# page load or a widget rerun already matches the URL, and every write is one more message to the browser.
_qp = st.query_params.to_dict()
if st.session_state.get(URL_LEFT, _qp) != _qp:
    st.query_params.from_dict(_qp)
sidebar()
try:
    nav.run()
finally:
    st.session_state[URL_LEFT] = st.query_params.to_dict()
