"""What people do with alerts: list them (the console's own beside Alertmanager's) and acknowledge one, which
is recorded in the audit trail (action ``acknowledge_alert``), refusals included, like every other action.

Any known identity may acknowledge (it says "I am on it", it changes nothing that serves). Acknowledging an
alert someone already acknowledged keeps the first person and time; the attempt is recorded all the same.
Alertmanager's alerts are read-only here: they are silenced in Alertmanager.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from services.alerts import Alert, AlertStore
from services.alerts.alertmanager import PREFIX as ALERTMANAGER_PREFIX
from services.audit import AuditTrail
from services.clock import utcnow
from services.errors import Conflict, ConsoleError, Invalid, NotFound, PermissionDenied, PreconditionFailed
from services.identity import Actor

ACTION = "acknowledge_alert"
SOURCE = "alerts"
MAX_NOTE = 2000


@dataclass(frozen=True)
class AlertList:
    """Alerts newest first (firing before resolved where asked), and what could not be read."""

    alerts: list[Alert]
    problems: list[ConsoleError] = field(default_factory=list)


def list_alerts(store: AlertStore, external=None, *, endpoint: str | None = None, state: str | None = None,
                start: datetime | None = None, end: datetime | None = None, limit: int | None = 500,
                firing_first: bool = False) -> AlertList:
    """The console's alerts and, when configured, Alertmanager's; a failing Alertmanager is a problem named in
    the result, not a failure of the whole list (the console store failing is)."""
    if state not in (None, "firing", "resolved"):
        raise Invalid(f"state must be firing or resolved, not {state!r}", source=SOURCE)
    if start and end and start >= end:
        raise Invalid(f"the window starts ({start:%Y-%m-%d %H:%M}) after it ends ({end:%Y-%m-%d %H:%M})",
                      source=SOURCE)
    kw = {"endpoint": endpoint, "state": state, "start": start, "end": end, "limit": limit}
    found = list(store.alerts(**kw))
    problems: list[ConsoleError] = []
    if external is not None:
        try:
            found += external.alerts(**kw)
        except ConsoleError as exc:
            problems.append(exc)
    found.sort(key=lambda a: (a.started_at, a.id), reverse=True)
    if firing_first:
        found.sort(key=lambda a: not a.firing)  # stable: newest first within each
    return AlertList(found[:limit] if limit else found, problems)


def acknowledge(store: AlertStore, audit: AuditTrail, actor: Actor, alert_id: str, note: str = "", *,
                clock: Callable[[], datetime] = utcnow) -> Alert:
    """``actor`` acknowledges the alert; one audit entry per attempt. NotFound for an unknown id (audited)."""
    alert_id = str(alert_id or "").strip()
    note = (note or "").strip()
    try:
        if not alert_id:
            raise Invalid("say which alert: its id (python -m services alerts lists them)", source=SOURCE)
        if not set(actor.roles) - {"viewer"}:
            raise PermissionDenied(f"{actor.name} is a viewer: acknowledging an alert says you are on it, which "
                                   "takes a role (requester, operator, approver or admin)", source="policy")
        if len(note) > MAX_NOTE:
            raise Invalid(f"the note is longer than {MAX_NOTE} characters", source=SOURCE)
        if alert_id.startswith(ALERTMANAGER_PREFIX):
            raise PreconditionFailed(f"alert {alert_id} is Alertmanager's: acknowledge (silence) it in "
                                     "Alertmanager", source=SOURCE)
        before = store.get(alert_id)
        if before is None:
            raise NotFound(f"no alert {alert_id!r} (python -m services alerts lists them)", source=store.source)
        after = store.acknowledge(alert_id, actor.subject, clock())
    except ConsoleError as exc:
        record_refusal(audit, actor.subject, alert_id, exc, note=note)
        raise
    details = {"alert_id": after.id, "rule": after.rule, "severity": after.severity, "state": after.state,
               "started_at": after.started_at.isoformat(), "summary": after.summary}
    if before.acknowledged_by is not None:
        details["already_acknowledged_by"] = before.acknowledged_by
    if actor.name != actor.subject:
        details["actor_name"] = actor.name
    if actor.authenticated_by != "dev":
        details["authenticated_by"] = actor.authenticated_by
    audit.append(actor=actor.subject, action=ACTION, target=after.endpoint, result="ok", reason=note,
                 before={"acknowledged_by": before.acknowledged_by},
                 after={"acknowledged_by": after.acknowledged_by}, details=details)
    return after


def record_refusal(audit: AuditTrail, actor_name: str, alert_id: str, exc: ConsoleError, *, note: str = "") -> None:
    """Audit an acknowledgement that was refused (unknown alert, unknown identity, bad input)."""
    result = "conflict" if isinstance(exc, Conflict) else (
        "refused" if isinstance(exc, Invalid | NotFound | PreconditionFailed) or exc.kind == "permission_denied"
        else "failed")
    try:
        audit.append(actor=actor_name or "(nobody)", action=ACTION, target=f"alert #{alert_id}"[:512],
                     result=result, reason=note, error=f"{exc.kind}: {exc.source}: {exc.message}",
                     details={"alert_id": alert_id})
    except ConsoleError:
        pass  # the refusal itself is the error that matters
