"""The pages, their stable URL paths, and links between them.

``st.Page`` objects are built afresh for every script run and never kept: ``st.navigation`` marks the
page it returns as "may be called" on the ``Page`` object itself (and ``Page.run`` clears the mark), so one
set of objects shared by the sessions of a process lets a concurrent session consume another's mark
("This page cannot be called directly…"). Only the immutable specs below are module-level.
"""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType

import streamlit as st

ROOT = Path(__file__).resolve().parent.parent
PAGES_DIR = ROOT / "pages"
DEFAULT = "overview"

# key -> (file, title, icon, url_path); read-only: it is shared by every session
PAGE_SPECS = MappingProxyType({
    "overview": ("overview.py", "Overview", ":material/dashboard:", "overview"),
    "models": ("models.py", "Models", ":material/history:", "models"),
    "deployments": ("deployments.py", "Deployments", ":material/rocket_launch:", "deployments"),
    "monitoring": ("monitoring.py", "Monitoring", ":material/monitoring:", "monitoring"),
    "incidents": ("incidents.py", "Incidents", ":material/crisis_alert:", "incidents"),
    "drift": ("drift.py", "Drift", ":material/query_stats:", "drift"),
    "explain": ("explain.py", "Explanations", ":material/psychology:", "explain"),
    "approvals": ("approvals.py", "Approvals", ":material/how_to_reg:", "approvals"),
    "audit": ("audit.py", "Audit trail", ":material/receipt_long:", "audit"),
})


def _page(key: str) -> st.Page:
    """A new ``st.Page`` for ``key`` (the caller's run owns it)."""
    file, title, icon, url = PAGE_SPECS[key]
    return st.Page(PAGES_DIR / file, title=title, icon=icon, url_path=url, default=key == DEFAULT)


def pages() -> dict[str, st.Page]:
    """New ``st.Page`` objects for this script run, for ``st.navigation``. Do not cache them across runs."""
    return {key: _page(key) for key in PAGE_SPECS}


def link(page: str, label: str, *, icon: str | None = None, **query) -> None:
    """``st.page_link`` to ``page`` (a key of PAGE_SPECS) with query parameters (empty ones dropped).

    The link gets its own ``Page`` (same file and URL path as the one registered with ``st.navigation``, which
    is all ``st.page_link`` reads), so no ``Page`` object is shared with another run or session."""
    params = {k: str(v) for k, v in query.items() if v not in (None, "")}
    st.page_link(_page(page), label=label, icon=icon, query_params=params or None)


def href(page: str, **query) -> str:
    """A relative URL for tables' link columns (the default page is served at /)."""
    from urllib.parse import urlencode

    path = "" if page == DEFAULT else PAGE_SPECS[page][3]
    q = urlencode({k: str(v) for k, v in query.items() if v not in (None, "")})
    return f"/{path}" + (f"?{q}" if q else "")
