"""Cached reads for pages, shared by every session of the process and refreshed in the background
(:mod:`dashboard.shared_reads`); the sidebar's Refresh and every action clear them (:func:`clear_caches`).

Each function takes the settings key first so caches never mix two
configurations in one process. Errors are not cached.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import streamlit as st

from dashboard.bootstrap import container, settings_key
from dashboard.shared_reads import shared_read
from services import deployments, history

TTL = 60  # seconds a registry read is fresh
STALE = 300  # ... and shown while a newer one is read in the background (dashboard.shared_reads)


def clear_caches(after_action: bool = False) -> None:
    """Forget cached reads: all of them on Refresh; after an action, what an action can change (what serves, the
    registry, alerts, the timeline: ``st.cache_data`` and the "state" shared reads), not the telemetry."""
    from dashboard.shared_reads import clear_all

    st.cache_data.clear()
    clear_all(("state",) if after_action else ("state", "telemetry"))


GRAIN = timedelta(seconds=10)


def page_now(grain: timedelta = GRAIN) -> datetime:
    """Now, rounded up to ``grain`` (10 s): every session that opens a window ending "now" within the same 10 s
    asks for the same window, so they share its cached reads (an exact now is a new cache key per run, read again
    each time). A page whose reads are cached longer passes its TTL (Drift: 30 s)."""
    now = container().clock()
    step = int(grain.total_seconds())
    floor = now.replace(microsecond=0) - timedelta(seconds=(now.minute * 60 + now.second) % step)
    return now if floor == now else floor + grain


def slide_end(args: tuple) -> tuple:
    """The args of a read of "the last minutes before ``end``" (its last argument), moved to now."""
    return (*args[:-1], page_now())


def slide_window(args: tuple) -> tuple:
    """The args of a read of a window (its last two arguments): one ending now moves to the new now; a fixed
    one stays."""
    from dashboard.shared_reads import NOW_SLACK

    *head, start, end = args
    if abs(end - container().clock()) > NOW_SLACK:
        return args
    now = page_now()
    return (*head, start + (now - end), now)


def windowed(*, fresh: float, stale: float, max_entries: int = 128, kind: str = "telemetry"):
    """:func:`shared_read` for a read whose last two arguments are a window's start and end: a window ending now
    is keyed by its length (one entry that slides, re-read in the background), any other by its ends; a long
    window stays fresh longer (:func:`dashboard.shared_reads.window_fresh`)."""
    from dashboard.shared_reads import window_fresh, window_key

    def key_of(*args):
        *head, start, end = args
        return (*head, *window_key(start, end, container().clock()))

    return shared_read(fresh=fresh, stale=stale, max_entries=max_entries, key=key_of, slide=slide_window, kind=kind,
                       fresh_of=window_fresh)


def key() -> str:
    """The settings key: part of every cache key so two configurations never share entries."""
    return settings_key()


@shared_read(fresh=TTL, stale=STALE)
def models(k: str, search: str = ""):
    return history.list_models(container().registry, search)


@shared_read(fresh=TTL, stale=STALE)
def model_view(k: str, name: str):
    return history.model_view(container().registry, name)


@shared_read(fresh=TTL, stale=STALE)
def version_detail(k: str, name: str, version: str):
    return container().registry.get_version_detail(name, version)


@shared_read(fresh=300, stale=1800, kind="telemetry")  # a run's logged history: only grows while the run runs
def metric_history(k: str, run_id: str, metric: str):
    return container().registry.metric_history(run_id, metric)


@shared_read(fresh=TTL, stale=STALE)
def comparison(k: str, name: str, versions: tuple[str, ...]):
    return history.compare_versions(container().registry, name, list(versions))


@shared_read(fresh=TTL, stale=STALE)
def recent(k: str, limit: int = 10):
    return history.recent_activity(container().registry, limit)


def serving_overview():
    """Not cached: what serves must be current when someone is about to act on it."""
    c = container()
    return deployments.serving_overview(c.serving, c.registry)


SERVING_TTL = 5


SERVING_STALE = 30


@shared_read(fresh=SERVING_TTL, stale=SERVING_STALE)
def serving_views(k: str):
    """What serves, as pages show it (Overview, Models, a version, Deployments): shared for 5 s across sessions,
    then re-read in the background (served at most 30 s old) — it asks the registry for each endpoint model's
    aliases, 2 MLflow calls on the demo, on every run otherwise. A change made here clears it (actions clear the
    data caches); one made elsewhere shows within seconds. What an action is planned and applied on is read
    afresh by the service layer (the dry run shows it; Confirm compares and sets), never taken from here."""
    return serving_overview()


@shared_read(fresh=SERVING_TTL, stale=SERVING_STALE)
def _endpoint_view(k: str, name: str):
    c = container()
    return deployments.endpoint_view(c.serving, c.registry, name)


def endpoint_view(name: str):
    """One endpoint as the Deployments page shows it (shared as :func:`serving_views`)."""
    return _endpoint_view(key(), name)


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
