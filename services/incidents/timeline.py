"""One endpoint's timeline over a window: serving changes, audited actions and approvals, registrations and
alias moves, alerts and drift alarms, oldest first.

Each source is read with its own window filter, a fixed number of times per call (never once per event):
the serving backend once (which model the endpoint serves), the serving history twice (one indexed read of
the state in force at ``start``, so the first change in the window can say what it changed, and the changes
in the window), the audit trail once (``endpoint`` and time filters, indexed), the registry once (the model's
versions, without metrics), the alerts once and the drift alarms once. A source that fails is one
``source_unavailable`` marker event naming it; the rest of the timeline is still given.

Windows are half-open: an event at ``start`` is in, one at ``end`` is not.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from services.audit import AuditTrail
from services.clock import iso
from services.errors import Invalid, NotFound
from services.history.serving import ServingHistory
from services.incidents.events import (
    ALERTS,
    AUDIT,
    DRIFT,
    HISTORY,
    REGISTRY,
    SERVING,
    Event,
    alert_events,
    alias_move_events,
    audit_event,
    drift_event,
    registration_event,
    serving_events,
    sort_events,
    unavailable_event,
    utc,
)
from services.registry import ModelRegistry
from services.serving import ServingBackend

SOURCE = "incident timeline"
AUDIT_LIMIT = 10_000  # entries of one endpoint in one window; more is said in a marker
ALERT_LIMIT = 5_000
TICK = timedelta(microseconds=1)  # the stores keep microseconds: the instant just before another

DriftAlarms = Callable[[str, datetime, datetime], list[dict]]


def check_window(start: datetime, end: datetime) -> tuple[datetime, datetime]:
    start, end = utc(start), utc(end)
    if start >= end:
        raise Invalid(f"the window starts ({start:%Y-%m-%d %H:%M:%S}) at or after its end ({end:%Y-%m-%d %H:%M:%S})",
                      source=SOURCE)
    return start, end


def timeline(endpoint: str, start: datetime, end: datetime, *, history: ServingHistory, audit: AuditTrail,
             registry: ModelRegistry, serving: ServingBackend, alerts: Any = None,
             drift: DriftAlarms | None = None) -> list[Event]:
    """The events of ``endpoint`` with ``start <= at < end``, oldest first (see :func:`~.events.sort_events`).

    ``alerts`` is an object with ``alerts(*, endpoint, state, start, end, limit)`` (the alert store) and
    ``drift`` a callable ``(endpoint, start, end) -> alarms`` (the Drift view's alarms); either may be None.
    Raises NotFound when neither the serving backend nor the history nor the audit trail knows the endpoint.
    """
    start, end = check_window(start, end)
    markers: list[Event] = []

    def read(label: str, fn: Callable[[], Any], default: Any) -> Any:
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - one broken source must not hide the others from the on-call
            markers.append(unavailable_event(start, label, exc, endpoint))
            return default

    model, unknown = None, False
    try:
        model = serving.get_endpoint(endpoint).model
    except NotFound:
        unknown = True
    except Exception as exc:  # noqa: BLE001 - see read()
        markers.append(unavailable_event(start, SERVING, exc, endpoint))

    before, changes = read(HISTORY, lambda: (history.served_at(endpoint, start - TICK),
                                             history.changes(endpoint, start, end)), (None, []))
    changes = [c for c in changes if start <= utc(c.at) < end]
    entries = read(AUDIT, lambda: audit.entries(limit=AUDIT_LIMIT, endpoint=endpoint, since=iso(start),
                                                until=iso(end)), [])
    if len(entries) >= AUDIT_LIMIT:
        markers.append(unavailable_event(start, AUDIT, Invalid(
            f"more than {AUDIT_LIMIT} audit entries in the window: only the newest are shown", source=AUDIT),
            endpoint))
    entries = sorted((e for e in entries if iso(start) <= e.ts < iso(end)), key=lambda e: e.seq)
    if unknown and before is None and not changes and not entries:
        raise NotFound(f"no endpoint named {endpoint!r} (nothing serves, was served or was audited under that name)",
                       source=SOURCE)
    if model is None:  # the backend could not say: the audit entries name the model they were about
        model = next((e.details.get("model") for e in entries if isinstance(e.details, dict)
                      and e.details.get("model")), None)

    events = serving_events(before, changes, model)
    for e in entries:
        events.append(audit_event(e, endpoint, model))
        events += alias_move_events(e, endpoint, model)
    if model:
        versions = read(REGISTRY, lambda: registry.list_versions(model, with_metrics=False), [])
        events += [registration_event(v, endpoint) for v in versions
                   if (v.created or v.last_updated) and start <= utc(v.created or v.last_updated) < end]
    if alerts is not None:
        found = read(ALERTS, lambda: alerts.alerts(endpoint=endpoint, start=start, end=end, limit=ALERT_LIMIT), [])
        for a in sorted(found, key=lambda a: (utc(a.started_at), str(a.id))):
            events += [ev for ev in alert_events(a, endpoint) if start <= ev.at < end]
    if drift is not None:
        events += [drift_event(a, endpoint) for a in read(DRIFT, lambda: _alarms(drift, endpoint, start, end), [])
                   if start <= utc(a["at"]) < end]
    return sort_events([*markers, *events])


def _alarms(drift: DriftAlarms, endpoint: str, start: datetime, end: datetime) -> list[dict]:
    """The drift alarms of the window; none (not a failure) when the endpoint has no traffic or no reference."""
    try:
        return list(drift(endpoint, start, end))
    except NotFound:
        return []


def unavailable(events: list[Event]) -> list[Event]:
    """The markers of the sources that could not be read."""
    return [e for e in events if e.kind == "source_unavailable"]

