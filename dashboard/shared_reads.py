"""Reads shared by every session of this process, kept fresh in the background (stale-while-revalidate).

``st.cache_data`` with a TTL makes the first session after the TTL pay the read: under load, with 20 people over
a dozen pages and their variants, a variant recurs less often than its TTL, so nearly every run paid its reads
(``bench/load.py``). :func:`shared_read` keeps each entry:

- **fresh** for ``fresh`` seconds: returned as it is;
- **stale** up to ``stale`` seconds: still returned at once, and ONE background read replaces it (the args of the
  call that found it stale: a window ending "now" is read up to the new now);
- older, or never read: read now, once — sessions asking for the same key meanwhile wait for that one read.

With ``MLOPS_KEEP_WARM_SECONDS`` (default 0: off) a background thread also re-reads, as soon as it turns
stale, every entry someone asked for within that many seconds — with the last asker's arguments, a window ending
"now" slid to the new now (``slide``) — so a page people keep opening is read off their path, whatever the mix of
pages and variants, and no more often than every ``fresh`` seconds however many people open it.

A failed read is never kept: in the foreground it raises (the page's renderer names the source); in the
background it drops the entry, so the next run reads in the foreground and shows the error. Each hit returns its
own copy (pickled, as ``st.cache_data``: a page may change what it gets). Entries are bounded per function
(least recently used out) and :func:`clear_all` (the sidebar's Refresh, every action) empties them all.

Windows ending "now" are keyed by their length, not their end (:func:`window_key`): a "last hour" read is one
entry that slides, not a new one every few seconds. This is display only: an action reads what it acts on
itself, in the service layer, and applies with compare-and-set.
"""

from __future__ import annotations

import functools
import logging
import pickle
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Hashable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

log = logging.getLogger(__name__)
_registry: list[SharedRead] = []
_pool = ThreadPoolExecutor(2, thread_name_prefix="shared-read")
NOW_SLACK = timedelta(minutes=1)  # an end within this of now (pages round now up) is "now"
KEEP_WARM_ENV, KEEP_WARM_DEFAULT = "MLOPS_KEEP_WARM_SECONDS", 0.0
_warmer: threading.Thread | None = None
_warmer_lock = threading.Lock()


@dataclass
class _Entry:
    at: float = 0.0  # monotonic time of the read, 0 while the first read runs
    blob: bytes | None = None  # the pickled value
    ready: threading.Event = field(default_factory=threading.Event)  # the first read is over (value or error)
    error: BaseException | None = None  # the first read failed: its waiters raise it
    refreshing: bool = False
    asked: float = 0.0  # when someone last asked for it
    call: tuple = ((), {}, None)  # the last asker's (args, kwargs, Streamlit context): what a refresh reads with


class SharedRead:
    """A function's shared entries (see the module docs); made by :func:`shared_read`."""

    def __init__(self, fn: Callable, fresh: float, stale: float, max_entries: int,
                 key: Callable[..., Hashable] | None, clock: Callable[[], float],
                 slide: Callable[[tuple], tuple] | None = None, kind: str = "state",
                 fresh_of: Callable[[Hashable], float] | None = None):
        if not 0 < fresh <= stale:
            raise ValueError("shared_read: 0 < fresh <= stale")
        self.fn, self.fresh, self.stale, self.max_entries = fn, fresh, stale, max_entries
        self.key_of, self.clock = key or (lambda *a, **kw: (a, tuple(sorted(kw.items())))), clock
        self.slide = slide  # the last asker's args -> the args to re-read with now (a window ending now slides)
        self.kind = kind  # "state" (what an action can change) or "telemetry" (what it cannot): see clear_all
        self.fresh_of = fresh_of  # key -> seconds fresh, for keys that may stay fresh longer (a long window)
        self.entries: OrderedDict[Hashable, _Entry] = OrderedDict()
        self.lock = threading.Lock()
        self.counts: Counter = Counter()  # why each read happened, and background failures (:func:`stats`)
        self.pending: list[Future] = []  # background reads not yet over (:meth:`settle`)
        functools.update_wrapper(self, fn)

    def __call__(self, *args, **kwargs):
        key = self.key_of(*args, **kwargs)
        now = self.clock()
        fresh, stale = self.lifetimes(key)
        with self.lock:
            e = self.entries.get(key)
            if e is not None and e.ready.is_set() and (e.blob is None or now - e.at > stale):
                e = None  # failed, or too old to show: read again
                self.entries.pop(key, None)
                self.counts["foreground: too old"] += 1
            elif e is None:
                self.counts["foreground: never read or dropped"] += 1
            ctx = _context()
            if e is None:
                e = self.entries[key] = _Entry()
                self._bound()
                mine = True
            else:
                self.entries.move_to_end(key)
                mine = False
                if e.ready.is_set() and now - e.at > fresh and not e.refreshing:
                    self._start_refresh(key, e, args, kwargs, ctx)
            e.asked, e.call = now, (args, kwargs, ctx)
        _ensure_warmer()
        if mine:
            return self._first(key, e, args, kwargs)
        self.counts["hit"] += 1
        e.ready.wait()  # another session's read of the same key (its source calls have their own timeouts)
        if e.error is not None:
            raise e.error
        return pickle.loads(e.blob)

    def _first(self, key, e: _Entry, args, kwargs):
        try:
            value = self._read(args, kwargs)
        except BaseException as exc:
            with self.lock:
                e.error = exc
                if self.entries.get(key) is e:
                    del self.entries[key]
            e.ready.set()
            raise
        e.blob, e.at = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL), self.clock()
        e.ready.set()
        return value  # the caller's own object: nobody else holds it

    def lifetimes(self, key) -> tuple[float, float]:
        """(fresh, stale) seconds of ``key``: the decorator's, or longer where ``fresh_of`` says so (stale: at
        least 2 × fresh — a first look after a pause shows data at most that old, and the next look the new)."""
        if self.fresh_of is None:
            return self.fresh, self.stale
        fresh = max(self.fresh, self.fresh_of(key))
        return fresh, max(self.stale, 2 * fresh)

    def _start_refresh(self, key, e: _Entry, args, kwargs, ctx) -> None:  # under self.lock
        self.counts["background"] += 1
        e.refreshing = True
        self.pending = [f for f in self.pending if not f.done()]
        self.pending.append(_pool.submit(self._refresh, key, e, args, kwargs, ctx))

    def warm(self, keep: float) -> int:
        """Start a background re-read of every stale entry asked for within ``keep`` seconds; how many."""
        now, n = self.clock(), 0
        with self.lock:
            for key, e in list(self.entries.items()):
                if (e.ready.is_set() and e.blob is not None and not e.refreshing
                        and now - e.at > self.lifetimes(key)[0] and now - e.asked <= keep):
                    args, kwargs, ctx = e.call
                    self._start_refresh(key, e, self.slide(args) if self.slide else args, kwargs, ctx)
                    n += 1
        return n

    def _refresh(self, key, e: _Entry, args, kwargs, ctx) -> None:
        _attach(ctx)
        try:
            blob = pickle.dumps(self._read(args, kwargs), protocol=pickle.HIGHEST_PROTOCOL)
        except BaseException as exc:  # noqa: BLE001 - dropped: the next run reads in the foreground and shows it
            self.counts["background failed"] += 1
            log.warning("background re-read of %s failed (dropped; the next page run reads it): %s: %s",
                        self.fn.__qualname__, type(exc).__name__, exc)
            with self.lock:
                if self.entries.get(key) is e:
                    del self.entries[key]
            return
        with self.lock:
            if self.entries.get(key) is e:  # not cleared meanwhile
                new = self.entries[key] = _Entry(at=self.clock(), blob=blob, asked=e.asked, call=e.call)
                new.ready.set()

    def _read(self, args, kwargs):
        return self.fn(*args, **kwargs)

    def _bound(self) -> None:
        while len(self.entries) > self.max_entries:
            self.entries.popitem(last=False)

    def settle(self, timeout: float = 30.0) -> None:
        """Wait until the background reads started so far are over (tests, benchmarks)."""
        wait(list(self.pending), timeout=timeout)

    def clear(self) -> None:
        with self.lock:
            self.entries.clear()


def shared_read(*, fresh: float, stale: float, max_entries: int = 128, key: Callable[..., Hashable] | None = None,
                slide: Callable[[tuple], tuple] | None = None, kind: str = "state",
                fresh_of: Callable[[Hashable], float] | None = None,
                clock: Callable[[], float] = time.monotonic) -> Callable[[Callable], SharedRead]:
    """Decorate a read: see the module docs. ``key`` maps the call's arguments to the entry's key (default: all of
    them, which must be hashable); ``slide`` maps the last asker's positional args to those a background re-read
    uses (a window ending now moved to the new now); ``kind``: ``"state"`` (what serves, the registry, alerts,
    the timeline: what an action changes) or ``"telemetry"`` (traffic, metrics, drift, a run's logged history:
    what no action changes, so an action does not throw it away); ``fresh_of`` gives a key a longer freshness (a
    long window); ``clock`` is for tests."""

    def wrap(fn: Callable) -> SharedRead:
        if kind not in ("state", "telemetry"):
            raise ValueError(f"shared_read: kind {kind!r} is not 'state' or 'telemetry'")
        r = SharedRead(fn, fresh, stale, max_entries, key, clock, slide, kind, fresh_of)
        _registry.append(r)
        return r

    return wrap


def keep_warm_seconds() -> float:
    """``MLOPS_KEEP_WARM_SECONDS`` (default 0: off — no background re-reads but those a stale hit starts; under
    ``bench/load.py`` keeping every opened variant warm cost more reads than it saved)."""
    import os

    try:
        return float(os.environ.get(KEEP_WARM_ENV, KEEP_WARM_DEFAULT))
    except ValueError:
        return KEEP_WARM_DEFAULT


def warm_all() -> int:
    """One pass of the keep-warm thread over every shared read; the re-reads it started."""
    keep = keep_warm_seconds()
    return sum(r.warm(keep) for r in list(_registry)) if keep > 0 else 0


def _warm_forever(every: float = 1.0) -> None:
    while True:
        time.sleep(every)  # a ticker: each pass starts re-reads of what went stale meanwhile
        try:
            warm_all()
        except Exception:  # noqa: BLE001 - a bad pass must not stop the ticker; the next one tries again
            pass


def _ensure_warmer() -> None:
    global _warmer
    if _warmer is None and keep_warm_seconds() > 0:
        with _warmer_lock:
            if _warmer is None:
                _warmer = threading.Thread(target=_warm_forever, name="shared-read-warmer", daemon=True)
                _warmer.start()


def stats() -> dict[str, dict[str, int]]:
    """Per shared read (module.function): its reads by cause, hits, and background failures."""
    return {f"{r.fn.__module__}.{r.fn.__qualname__}": dict(r.counts) for r in _registry if r.counts}


def clear_all(kinds: tuple[str, ...] = ("state", "telemetry")) -> None:
    """Empty every shared read of these kinds: all of them on the sidebar's Refresh; ``("state",)`` after an
    action (what it may have changed: with a dozen people acting, emptying the telemetry too made everyone's next
    page read it all again)."""
    for r in _registry:
        if r.kind in kinds:
            r.clear()


WINDOW_FRESH_SHARE, WINDOW_FRESH_MAX, FIXED_FRESH = 1 / 240, 120.0, 300.0


def window_fresh(key: tuple) -> float:
    """How long a window's read stays fresh, from the window's part of its key (:func:`window_key`): a window
    ending now, 1/240 of its length (half of one of the ~120 steps a chart draws), at most 2 minutes — a day's
    chart is not read again every 10 s for a change it cannot show; a fixed window, 5 minutes (only late labels
    change it)."""
    if len(key) >= 2 and key[-2] == "now" and isinstance(key[-1], timedelta):
        return min(WINDOW_FRESH_MAX, key[-1].total_seconds() * WINDOW_FRESH_SHARE)
    return FIXED_FRESH


def window_key(start: datetime, end: datetime, now: datetime) -> tuple[Any, ...]:
    """A window's part of a key: ``("now", length)`` when it ends now (pages round now up), else its two ends."""
    if abs(end - now) <= NOW_SLACK:
        return ("now", end - start)
    return (start, end)


def _context():
    try:
        from streamlit.runtime.scriptrunner import get_script_run_ctx

        return get_script_run_ctx(suppress_warning=True)
    except Exception:  # noqa: BLE001 - outside Streamlit: nothing to carry
        return None


def _attach(ctx) -> None:
    """The background read runs with the asking run's context, as its foreground read would (Streamlit's own
    caches look it up); the read itself draws nothing."""
    if ctx is None:
        return
    from streamlit.runtime.scriptrunner import add_script_run_ctx

    add_script_run_ctx(threading.current_thread(), ctx)
