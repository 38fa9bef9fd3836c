"""Build the service container once per process and hand it to pages.

The container is cached with ``st.cache_resource`` keyed on the settings
that shape it, so changing the environment (tests) gets a fresh one.
"""

from __future__ import annotations

import gc
import importlib
import os

import streamlit as st

from dashboard import housekeeping
from services.composition import Container, build
from services.errors import Invalid
from services.identity import Actor
from services.settings import Settings

SETTINGS_PREFIXES = ("MLOPS_", "MLFLOW_TRACKING_URI", "KUBECONFIG")


def settings_key() -> str:
    return "|".join(f"{k}={v}" for k, v in sorted(os.environ.items()) if k.startswith(SETTINGS_PREFIXES))


@st.cache_resource(show_spinner=False)
def _container(key: str) -> Container:  # noqa: ARG001 - the key selects the cache entry
    c = build(Settings.from_env(for_people=True))  # people act here: dev identities on local data only
    try:
        every = housekeeping.interval_seconds()
    except ValueError as exc:
        raise Invalid(str(exc), source="settings") from None
    for heavy in ("mlflow", "mlflow.tracking", "plotly.graph_objects", "pandas"):
        importlib.import_module(heavy)
    # These imports (MLflow, pandas, plotly…) leave ~300k long-lived objects; move them out of the
    # collector's way once, so a page render does not pay a ~200 ms full collection (bench/registry_pages.py).
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    housekeeping.start(every)  # and a full collection once a minute, so garbage cannot pile up between them
    return c


# The collector's thresholds for the console process (CPython's default: 700, 10, 10). With the defaults, and the
# frozen imports no longer counted as long-lived, nearly every 10th young collection became a FULL one over the
# shared caches and every session's state: ~200 ms each, 622 of them in 6 minutes of bench/load.py (125 s of the
# console's CPU, most of what a run cost under load). Collecting the young generation after 20k allocations
# (not 700) and the oldest after 100 middle ones (not 10) makes full collections ~100x rarer; memory still
# settles (bench/load.py reports RSS), as reference counting frees everything that is not a cycle at once.
GC_THRESHOLDS = (20_000, 20, 100)


def container() -> Container:
    """The composition root for this process. Raises Invalid for a bad setting."""
    return _container(settings_key())


def current_actor() -> Actor:
    """The acting identity of this session (see :mod:`dashboard.identity`)."""
    from dashboard.identity import current_actor as actor

    return actor()
