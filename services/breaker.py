"""A source that did not answer is not asked again at once: one timeout per source, not one per call.

A page asks the same source several times (models, then each endpoint's aliases, then recent versions…). When
that source hangs (accepts connections, never answers), each call would wait its full timeout and the page
would take minutes. An adapter keeps one :class:`Breaker`: after a call timed out, the calls of the next
``cooldown`` seconds fail at once with :class:`~services.errors.Unavailable` naming the source and when it
last failed; the first call after the cooldown asks again (and a success closes the breaker). Only timeouts
trip it (and an adapter that knows better, with :meth:`Breaker.trip`: a database lock held past its wait): a
refused connection or an HTTP error answers at once anyway, and the next call should see the source come back.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from services.errors import Unavailable

COOLDOWN = 15.0  # seconds without asking a source that timed out


def is_timeout(exc: BaseException | None) -> bool:
    """True when ``exc`` or one of its causes is a timeout (requests, urllib3, aiohttp, sockets, or a message
    that says so: MLflow wraps requests' Timeout in its own exception)."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, TimeoutError):  # socket.timeout is one
            return True
        name = type(exc).__name__
        if "Timeout" in name:  # requests' Timeout/ReadTimeout/ConnectTimeout, urllib3's ReadTimeoutError …
            return True
        text = str(exc).lower()
        if "timed out" in text or "timeout exception" in text:
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


class Breaker:
    """Per-source memory of the last timeout. Thread-safe; ``clock`` is monotonic seconds (tests move it)."""

    def __init__(self, source: str, *, cooldown: float = COOLDOWN, clock: Callable[[], float] = time.monotonic):
        self.source = source
        self.cooldown = cooldown
        self.clock = clock
        self._lock = threading.Lock()
        self._tripped_at: float | None = None
        self._reason = ""  # what happened, e.g. "did not answer in time"

    @property
    def open(self) -> bool:
        with self._lock:
            return self._tripped_at is not None and self.clock() - self._tripped_at < self.cooldown

    def check(self) -> None:
        """Raise Unavailable at once while the source is resting after a timeout."""
        with self._lock:
            if self._tripped_at is None:
                return
            ago = self.clock() - self._tripped_at
            if ago >= self.cooldown:
                return
            reason = self._reason
        when = "just now" if ago < 1 else f"{ago:.0f} s ago"
        raise Unavailable(f"{self.source} {reason} {when}; it is not asked again for another "
                          f"{max(1.0, self.cooldown - ago):.0f} s", source=self.source)

    @contextmanager
    def guard(self) -> Iterator[None]:
        """Around one call to the source: refused at once while resting; a timeout trips, a success closes."""
        self.check()
        try:
            yield
        except BaseException as exc:
            self.failed(exc)
            raise
        self.succeeded()

    def failed(self, exc: BaseException) -> None:
        """Record a failed call: a timeout trips the breaker, anything else leaves it as it is."""
        if is_timeout(exc):
            self.trip("did not answer in time")

    def trip(self, reason: str) -> None:
        """Rest the source from now on; ``reason`` completes "<source> … just now" in the refusals."""
        with self._lock:
            self._tripped_at = self.clock()
            self._reason = reason

    def succeeded(self) -> None:
        with self._lock:
            self._tripped_at = None
            self._reason = ""
