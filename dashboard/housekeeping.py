"""Memory housekeeping of the console process: a full garbage collection and a heap trim on a timer.

Streamlit's own full collection after every script run is off (``.streamlit/config.toml``: it cost ~200 ms of
CPU per run under load) and the collector's thresholds are raised (:data:`dashboard.bootstrap.GC_THRESHOLDS`),
so a full collection now comes rarely and at no predictable time: cycles left by finished sessions and script
runs (frames, exceptions, pandas objects) could wait a long while, and ``bench/load.py`` saw the console's RSS
still rising after 30 minutes. One collection every ``MLOPS_GC_SECONDS`` (default 60; ``0``: off) bounds how
long garbage lives, for ~0.2 s of CPU a minute. After it, glibc's ``malloc_trim`` hands freed heap pages back
to the system, so RSS follows what the process holds rather than its peak (no-op elsewhere).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os
import threading
import time
from dataclasses import dataclass

ENV, DEFAULT_SECONDS = "MLOPS_GC_SECONDS", 60.0

_lock = threading.Lock()
_thread: threading.Thread | None = None


@dataclass(frozen=True)
class Tick:
    collected: int  # unreachable objects the collection found
    seconds: float  # the collection's and the trim's wall time
    trimmed: bool  # malloc_trim ran (glibc) and released memory


def interval_seconds() -> float:
    """``MLOPS_GC_SECONDS``: seconds between housekeeping passes; 0 turns them off. Raises ValueError when it
    is not a number >= 0 (the console refuses to start on a bad setting)."""
    raw = os.environ.get(ENV, "").strip()
    if not raw:
        return DEFAULT_SECONDS
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{ENV} must be a number of seconds (0 turns it off), not {raw!r}") from None
    if not (value >= 0 and value != float("inf")):
        raise ValueError(f"{ENV} must be 0 or more seconds, not {raw!r}")
    return value


def _libc_trim():
    """glibc's ``malloc_trim`` or None (musl, macOS…)."""
    name = ctypes.util.find_library("c")
    try:
        fn = ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        return None
    if fn is not None:
        fn.argtypes, fn.restype = [ctypes.c_size_t], ctypes.c_int
    return fn


_trim = _libc_trim()


def tick() -> Tick:
    """One pass: a full collection, then the heap trimmed."""
    t0 = time.perf_counter()
    found = gc.collect()
    trimmed = bool(_trim(0)) if _trim is not None else False
    return Tick(found, time.perf_counter() - t0, trimmed)


def _run(every: float, stop: threading.Event) -> None:
    while not stop.wait(every):
        try:
            tick()
        except Exception:  # noqa: BLE001 - a failed pass must not end the timer; the next one tries again
            continue


def start(every: float | None = None, stop: threading.Event | None = None) -> threading.Thread | None:
    """Start the timer thread once per process (later calls return the same thread); None when turned off."""
    global _thread
    every = interval_seconds() if every is None else every
    if every <= 0:
        return None
    with _lock:
        if _thread is None or not _thread.is_alive():
            _thread = threading.Thread(target=_run, args=(every, stop or threading.Event()),
                                       name="console-housekeeping", daemon=True)
            _thread.start()
        return _thread
