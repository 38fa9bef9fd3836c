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


def endpoint_view(name: str):
    c = container()
    return deployments.endpoint_view(c.serving, c.registry, name)
