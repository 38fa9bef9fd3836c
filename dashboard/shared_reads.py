"""Reads shared by every session of this process, kept fresh in the background (stale-while-revalidate).

``st.cache_data`` with a TTL makes the first session after the TTL pay the read: under load, with 20 people over
a dozen pages and their variants, a variant recurs less often than its TTL, so nearly every run paid its reads
(``bench/load.py``). :func:`shared_read` keeps each entry:

- **fresh** for ``fresh`` seconds: returned as it is;
- **stale** up to ``stale`` seconds: still returned at once, and ONE background read replaces it (the args of the
  call that found it stale: a window ending "now" is read up to the new now);
- older, or never read: read now, once — sessions asking for the same key meanwhile wait for that one read.

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
import pickle
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

_registry: list[SharedRead] = []
_pool = ThreadPoolExecutor(2, thread_name_prefix="shared-read")
NOW_SLACK = timedelta(minutes=1)  # an end within this of now (pages round now up) is "now"


@dataclass
class _Entry:
    at: float = 0.0  # monotonic time of the read, 0 while the first read runs
    blob: bytes | None = None  # the pickled value
    ready: threading.Event = field(default_factory=threading.Event)  # the first read is over (value or error)
    error: BaseException | None = None  # the first read failed: its waiters raise it
    refreshing: bool = False


class SharedRead:
    """A function's shared entries (see the module docs); made by :func:`shared_read`."""

    def __init__(self, fn: Callable, fresh: float, stale: float, max_entries: int,
                 key: Callable[..., Hashable] | None, clock: Callable[[], float]):
        if not 0 < fresh <= stale:
            raise ValueError("shared_read: 0 < fresh <= stale")
        self.fn, self.fresh, self.stale, self.max_entries = fn, fresh, stale, max_entries
        self.key_of, self.clock = key or (lambda *a, **kw: (a, tuple(sorted(kw.items())))), clock
        self.entries: OrderedDict[Hashable, _Entry] = OrderedDict()
        self.lock = threading.Lock()
        self.reads = 0  # reads of the source (foreground and background): what tests and benchmarks count
        self.pending: list[Future] = []  # background reads not yet over (:meth:`settle`)
        functools.update_wrapper(self, fn)

    def __call__(self, *args, **kwargs):
        key = self.key_of(*args, **kwargs)
        now = self.clock()
        with self.lock:
            e = self.entries.get(key)
            if e is not None and e.ready.is_set() and (e.blob is None or now - e.at > self.stale):
                e = None  # failed, or too old to show: read again
                self.entries.pop(key, None)
            if e is None:
                e = self.entries[key] = _Entry()
                self._bound()
                mine = True
            else:
                self.entries.move_to_end(key)
                mine = False
                if e.ready.is_set() and now - e.at > self.fresh and not e.refreshing:
                    e.refreshing = True
                    self.pending = [f for f in self.pending if not f.done()]
                    self.pending.append(_pool.submit(self._refresh, key, e, args, kwargs, _context()))
        if mine:
            return self._first(key, e, args, kwargs)
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

    def _refresh(self, key, e: _Entry, args, kwargs, ctx) -> None:
        _attach(ctx)
        try:
            blob = pickle.dumps(self._read(args, kwargs), protocol=pickle.HIGHEST_PROTOCOL)
        except BaseException:  # noqa: BLE001 - dropped: the next run reads in the foreground and shows it
            with self.lock:
                if self.entries.get(key) is e:
                    del self.entries[key]
            return
        with self.lock:
            if self.entries.get(key) is e:  # not cleared meanwhile
                self.entries[key] = _Entry(at=self.clock(), blob=blob)
                self.entries[key].ready.set()

    def _read(self, args, kwargs):
        self.reads += 1
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
                clock: Callable[[], float] = time.monotonic) -> Callable[[Callable], SharedRead]:
    """Decorate a read: see the module docs. ``key`` maps the call's arguments to the entry's key (default: all of
    them, which must be hashable); ``clock`` is for tests."""

    def wrap(fn: Callable) -> SharedRead:
        r = SharedRead(fn, fresh, stale, max_entries, key, clock)
        _registry.append(r)
        return r

    return wrap


def clear_all() -> None:
    """Empty every shared read (the sidebar's Refresh; after an action)."""
    for r in _registry:
        r.clear()


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
