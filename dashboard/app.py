"""MLOps Console entrypoint: ``streamlit run dashboard/app.py``."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

from dashboard import identity, state  # noqa: E402
from dashboard.bootstrap import container  # noqa: E402
from dashboard.components import guard, refresh_button  # noqa: E402
from dashboard.nav import pages  # noqa: E402

st.set_page_config(page_title="MLOps Console", page_icon=":material/monitoring:", layout="wide")


def sidebar() -> None:
    with st.sidebar:
        with guard("settings"):
            c = container()
            if c.settings.auth_mode == "dev":
                names = c.directory.names()
                identity.ensure()
                st.selectbox(
                    "Acting as", names, key=state.IDENTITY,
                    format_func=lambda n: f"{n} · {', '.join(c.directory.identities[n])}",
                    help="Development identities from settings (MLOPS_DEV_IDENTITIES). A new session starts as "
                         "the least-privileged one; your choice is kept across pages and reloads of this "
                         "browser session.",
                )
                identity.remember()
                st.warning("Development mode: there is no login yet. Anyone can pick any identity.",
                           icon=":material/lock_open:")
            st.caption(f"Registry: `{_short(c.settings.mlflow_tracking_uri)}`  \n"
                       f"Serving: `{c.settings.serving_backend}`")
        refresh_button()


def _short(uri: str) -> str:
    return uri if len(uri) < 48 else "…" + uri[-46:]


nav = st.navigation(list(pages().values()))
# st.page_link to the *same* page with other query_params does not rewrite the browser URL (Streamlit only
# does that on a page change); the stale URL would then be sent back on the next widget rerun. Re-send ours.
_qp = st.query_params.to_dict()
st.query_params.clear()
st.query_params.update(_qp)
sidebar()
nav.run()
