"""The pages, their stable URL paths, and links between them."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

ROOT = Path(__file__).resolve().parent.parent
PAGES_DIR = ROOT / "pages"

# key -> (file, title, icon, url_path)
PAGE_SPECS = {
    "overview": ("overview.py", "Overview", ":material/dashboard:", "overview"),
    "models": ("models.py", "Models", ":material/history:", "models"),
    "deployments": ("deployments.py", "Deployments", ":material/rocket_launch:", "deployments"),
    "approvals": ("approvals.py", "Approvals", ":material/how_to_reg:", "approvals"),
    "audit": ("audit.py", "Audit trail", ":material/receipt_long:", "audit"),
}

_pages: dict[str, st.Page] = {}


def pages() -> dict[str, st.Page]:
    if not _pages:
        for key, (file, title, icon, url) in PAGE_SPECS.items():
            _pages[key] = st.Page(PAGES_DIR / file, title=title, icon=icon, url_path=url, default=key == "overview")
    return _pages


def link(page: str, label: str, *, icon: str | None = None, **query) -> None:
    params = {k: str(v) for k, v in query.items() if v not in (None, "")}
    st.page_link(pages()[page], label=label, icon=icon, query_params=params or None)


def href(page: str, **query) -> str:
    """A relative URL for tables' link columns (the default page is served at /)."""
    from urllib.parse import urlencode

    path = "" if page == "overview" else PAGE_SPECS[page][3]
    q = urlencode({k: str(v) for k, v in query.items() if v not in (None, "")})
    return f"/{path}" + (f"?{q}" if q else "")
