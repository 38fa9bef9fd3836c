"""The Incidents facade: the timeline, "what served at T", suspects and the report over the ports the
composition root gives it, so the page and the CLI call the same thing.

The ports are given as zero-argument providers (the container's lazy properties): a port that cannot even be
built (a broken KServe configuration, an unreadable policy for the drift alarms) is then one source marked
unavailable on the timeline, not an error for the whole page.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from services.clock import Clock, iso, utcnow
from services.errors import ConsoleError
from services.incidents.events import ALERT_FIRED, Event
from services.incidents.report import report
from services.incidents.served import served_at
from services.incidents.suspects import WINDOW, suspects
from services.incidents.timeline import check_window, timeline

Provider = Callable[[], Any]


class _Broken:
    """Stands in for a port that could not be built: every use raises the error that prevented it."""

    def __init__(self, exc: BaseException):
        self._exc = exc

    def __getattr__(self, name: str):
        raise self._exc

    def __call__(self, *args, **kwargs):
        raise self._exc


def _get(provider: Provider | None) -> Any:
    if provider is None:
        return None
    try:
        return provider()
    except ConsoleError as exc:
        return _Broken(exc)


@dataclass
class Incidents:
    history: Provider
    audit: Provider
    registry: Provider
    serving: Provider
    alerts: Provider | None = None  # -> an alert store (``alerts(endpoint=, state=, start=, end=, limit=)``) or None
    drift: Provider | None = None  # -> a callable (endpoint, start, end) -> drift alarms, or None
    predictions: Provider | None = None
    metrics: Provider | None = None
    clock: Clock = utcnow

    def timeline(self, endpoint: str, start: datetime, end: datetime) -> list[Event]:
        return timeline(endpoint, start, end, history=_get(self.history), audit=_get(self.audit),
                        registry=_get(self.registry), serving=_get(self.serving), alerts=_get(self.alerts),
                        drift=_get(self.drift))

    def served_at(self, endpoint: str, at: datetime, *, around: timedelta | None = None) -> dict:
        kw = {"around": around} if around else {}
        return served_at(_get(self.history), _get(self.serving), endpoint, at, predictions=_get(self.predictions),
                         **kw)

    def suspects(self, events: list[Event], alert_or_time: Any, *, window: timedelta = WINDOW) -> list[dict]:
        return suspects(events, alert_or_time, metrics=_get(self.metrics), window=window)

    def report(self, endpoint: str, start: datetime, end: datetime, *, at: datetime | None = None
               ) -> tuple[str, dict]:
        """The report of a window; "what served" at ``at`` (default: when the first alert fired, else the end)."""
        start, end = check_window(start, end)
        events = self.timeline(endpoint, start, end)
        if at is None:
            at = next((e.at for e in events if e.kind == ALERT_FIRED), end)
        served = None
        try:
            served = self.served_at(endpoint, at)
        except ConsoleError as exc:
            served = {"at": iso(at), "known": False, "note": f"{exc.source}: {exc.message}"}
        window = None
        if self.metrics is not None:
            from services.metrics.report import window_report

            try:
                window = window_report(_get(self.metrics), endpoint, start, end)
            except ConsoleError:
                window = None
        return report(endpoint, start, end, events, served, window)
