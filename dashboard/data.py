"""Cached reads for pages (``st.cache_data`` with a TTL; the sidebar's Refresh clears them).

Each function takes the settings key first so caches never mix two
configurations in one process. Errors are not cached.
"""

from __future__ import annotations

import streamlit as st

from dashboard.bootstrap import container, settings_key
from services import deployments, history

TTL = 30


def key() -> str:
    """The settings key: part of every cache key so two configurations never share entries."""
    return settings_key()


@st.cache_data(ttl=TTL, show_spinner=False)
def models(k: str, search: str = ""):
    return history.list_models(container().registry, search)


@st.cache_data(ttl=TTL, show_spinner=False)
def model_view(k: str, name: str):
    return history.model_view(container().registry, name)


@st.cache_data(ttl=TTL, show_spinner=False)
def version_detail(k: str, name: str, version: str):
    return container().registry.get_version_detail(name, version)


@st.cache_data(ttl=TTL, show_spinner=False)
def metric_history(k: str, run_id: str, metric: str):
    return container().registry.metric_history(run_id, metric)


@st.cache_data(ttl=TTL, show_spinner=False)
def comparison(k: str, name: str, versions: tuple[str, ...]):
    return history.compare_versions(container().registry, name, list(versions))


@st.cache_data(ttl=TTL, show_spinner=False)
def recent(k: str, limit: int = 10):
    return history.recent_activity(container().registry, limit)


def serving_overview():
    """Not cached: what serves must be current when someone is about to act on it."""
    c = container()
    return deployments.serving_overview(c.serving, c.registry)


SERVING_TTL = 5


@st.cache_data(ttl=SERVING_TTL, show_spinner=False)
def serving_views(k: str):
    """What serves, for pages that only show it (Overview, Models, a version): cached for 5 s across sessions —
    it asks the registry for each endpoint model's aliases, 2 MLflow calls on the demo, on every run otherwise.
    A change made here clears it (actions clear the data caches); one made elsewhere shows within 5 s. Pages
    that act on what serves (Deployments) read :func:`serving_overview`, live."""
    return serving_overview()


def endpoint_view(name: str):
    c = container()
    return deployments.endpoint_view(c.serving, c.registry, name)


def endpoint_picker(where, *, key: str, nothing: str, clears: tuple[str, ...] = ()) -> str | None:
    """The endpoint selectbox of pages about one endpoint (``endpoint`` in the URL, kept even when it no longer
    serves, so a shared link says what it was about); None, with ``nothing`` said, when there is none.
    Choosing another endpoint drops the URL's ``clears`` (what belonged to the old one)."""
    from dashboard.components import guard

    names: list[str] = []
    with guard("serving"):  # names only: a registry that is down or hung does not hold the picker
        names = [ep.name for ep in container().serving.list_endpoints()]
    wanted = st.query_params.get("endpoint")
    if wanted and wanted not in names:
        names.append(wanted)
    if not names:
        st.info(nothing)
        return None
    picked = where.selectbox("Endpoint", names, index=names.index(wanted) if wanted in names else 0, key=key)
    if picked != wanted:
        st.query_params["endpoint"] = picked
        for name in clears if wanted else ():
            st.query_params.pop(name, None)
    return picked
