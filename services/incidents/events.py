"""The incident timeline's event, and how each source's records become events (pure).

Every event names the system it came from (``source``) and carries a ``link``: a page key of the dashboard
and its query parameters (``{"page": "models", "model": M, "version": V}``), which the dashboard turns into
a URL with ``dashboard.nav.href``. Details are plain data (times as ISO strings), so an event is JSON as is.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from services.actions.catalog import label as action_label
from services.clock import iso, parse_iso
from services.history.serving import ServedState
from services.history.views import alias_moves
from services.registry import VersionSummary

# what happened
SERVING_CHANGE = "serving_change"  # the endpoint's stable/canary/weight changed (serving history)
ACTION = "action"  # an audited guarded action, or a refused / failed attempt
APPROVAL = "approval"  # a promotion request filed, approved or rejected
REGISTRATION = "registration"  # a version of the endpoint's model registered in the registry
ALIAS_MOVE = "alias_move"  # @champion moved by the console (the audit trail has its time; MLflow has none)
ALERT_FIRED = "alert_fired"
ALERT_RESOLVED = "alert_resolved"
DRIFT_ALARM = "drift_alarm"
SOURCE_UNAVAILABLE = "source_unavailable"  # a marker: this source could not be read, the rest is shown
KINDS = (SERVING_CHANGE, ACTION, APPROVAL, REGISTRATION, ALIAS_MOVE, ALERT_FIRED, ALERT_RESOLVED, DRIFT_ALARM,
         SOURCE_UNAVAILABLE)
CHANGE_KINDS = (SERVING_CHANGE, ACTION, REGISTRATION, ALIAS_MOVE)  # what can cause an incident

# where it came from
HISTORY, AUDIT, REGISTRY, ALERTS, DRIFT, SERVING = ("serving history", "audit trail", "MLflow registry", "alerts",
                                                    "drift", "serving")

# Order of events at the same instant (a change is recorded before the audit entry that reports it; an alert is
# a consequence): markers, registrations, serving changes, alias moves, actions, approvals, drift, alerts.
RANK = {SOURCE_UNAVAILABLE: 0, REGISTRATION: 1, SERVING_CHANGE: 2, ALIAS_MOVE: 3, ACTION: 4, APPROVAL: 5,
        DRIFT_ALARM: 6, ALERT_FIRED: 7, ALERT_RESOLVED: 8}
APPROVAL_ACTIONS = ("request_promotion", "approve", "reject")


@dataclass(frozen=True)
class Event:
    at: datetime  # UTC
    kind: str  # one of KINDS
    source: str  # the system it came from
    title: str  # one line a person reads
    actor: str | None = None
    endpoint: str = ""
    versions: tuple[str, ...] = ()
    details: dict = field(default_factory=dict)
    link: dict = field(default_factory=dict)  # {"page": KEY, **query}

    def as_dict(self) -> dict:
        return {"at": iso(self.at), "kind": self.kind, "source": self.source, "title": self.title,
                "actor": self.actor, "endpoint": self.endpoint, "versions": list(self.versions),
                "details": plain(self.details), "link": plain(self.link)}


def sort_events(events: Iterable[Event]) -> list[Event]:
    """Oldest first; at the same instant by :data:`RANK`, then in each source's own order (the sort is stable
    and the sources are read in one fixed order), so equal times always come out the same way."""
    return sorted(events, key=lambda e: (e.at, RANK.get(e.kind, 9)))


def plain(value: Any) -> Any:
    """Dicts, lists and scalars only; datetimes as ISO strings."""
    if isinstance(value, datetime):
        return iso(utc(value))
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [plain(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def utc(dt: datetime) -> datetime:
    """Aware UTC (a naive time is taken as UTC)."""
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def url_time(dt: datetime) -> str:
    """A time for a page's ``from``/``to`` query parameter (ISO, seconds, UTC)."""
    return utc(dt).strftime("%Y-%m-%dT%H:%M:%SZ")


def _v(version: Any) -> str:
    return f"v{version}" if version not in (None, "") else "none"


def _versions(*values: Any) -> tuple[str, ...]:
    return tuple(dict.fromkeys(str(v) for v in values if v not in (None, "")))


# -- serving history ------------------------------------------------------------------------------------------
def state_dict(s: ServedState | None) -> dict | None:
    if s is None:
        return None
    return {"stable_version": s.stable_version, "canary_version": s.canary_version,
            "canary_weight": s.canary_weight}


def describe_change(before: ServedState | None, after: ServedState) -> str:
    """What one change did, in words: ``canary v2 started at 20 %``, ``stable v1 → v2``, …"""
    if before is None:
        text = f"stable {_v(after.stable_version)}"
        if after.canary_version:
            text += f", canary {_v(after.canary_version)} at {after.canary_weight} %"
        return f"serving {text} (first recorded state)"
    parts = []
    bs, bc, bw = before.stable_version, before.canary_version, before.canary_weight
    s, c, w = after.stable_version, after.canary_version, after.canary_weight
    promoted = bc and not c and s == bc
    if promoted:
        parts.append(f"canary {_v(bc)} promoted to stable (was {_v(bs)})")
    elif s != bs:
        parts.append(f"stable {_v(bs)} → {_v(s)}")
    if c and c != bc:
        parts.append(f"canary {_v(c)} started at {w} %" if not bc else f"canary {_v(bc)} → {_v(c)} at {w} %")
    elif c and w != bw:
        parts.append(f"canary {_v(c)} {bw} % → {w} %")
    elif bc and not c and not promoted:
        parts.append(f"canary {_v(bc)} removed")
    return "; ".join(parts) or f"recorded again: stable {_v(s)}" + (f", canary {_v(c)} at {w} %" if c else "")


def serving_change_event(before: ServedState | None, after: ServedState, model: str | None) -> Event:
    who = f" by {after.actor}" if after.actor else ""
    who += f", approved by {after.approved_by}" if after.approved_by else ""
    old = [v for v in (before.stable_version, before.canary_version) if v] if before else []
    new = [v for v in (after.stable_version, after.canary_version) if v]
    introduced = [v for v in new if v not in old]
    link: dict = {"page": "deployments", "endpoint": after.endpoint}
    if model and introduced:
        base = (before.stable_version if before else None) or next((v for v in new if v not in introduced), None)
        pair = _versions(base, introduced[-1])
        link = ({"page": "models", "model": model, "compare": ",".join(pair)} if len(pair) == 2 else
                {"page": "models", "model": model, "version": introduced[-1]})
    return Event(utc(after.at), SERVING_CHANGE, HISTORY, describe_change(before, after) + who, after.actor,
                 after.endpoint, _versions(*old, *new),
                 {"before": state_dict(before), "after": state_dict(after), "approved_by": after.approved_by,
                  "note": after.note, "recorded_by": after.source, "introduced": introduced},
                 link)


def serving_events(before: ServedState | None, changes: Iterable[ServedState], model: str | None) -> list[Event]:
    out, prev = [], before
    for ch in changes:
        out.append(serving_change_event(prev, ch, model))
        prev = ch
    return out


# -- audit trail ------------------------------------------------------------------------------------------------
def _what(action: str, params: Mapping) -> str:
    version = params.get("version") or params.get("to_version")
    text = action_label(action)
    if version not in (None, ""):
        text += f" {_v(version)}"
    weight = params.get("weight")
    if weight not in (None, ""):
        text += f" at {weight} %"
    return text


def audit_event(entry, endpoint: str, model: str | None) -> Event:
    """An audited attempt: ``approval`` for a request filed, approved or rejected; ``action`` otherwise
    (refusals, conflicts and failures of any action included, marked as such)."""
    details = entry.details if isinstance(entry.details, dict) else {}
    params = details.get("params") if isinstance(details.get("params"), dict) else {}
    before = entry.before if isinstance(entry.before, dict) else {}
    after = entry.after if isinstance(entry.after, dict) else {}
    rid = details.get("request_id")
    ok = entry.result in ("ok", "requested")
    kind = APPROVAL if entry.action in APPROVAL_ACTIONS and ok else ACTION
    if entry.action == "acknowledge_alert" and ok:
        title = f"alert {details.get('rule') or details.get('alert_id') or ''} acknowledged".replace("  ", " ")
    elif entry.action == "retrain" and ok:  # services.retraining: the run it started and what it made
        title = (f"retraining of {_v(before.get('version'))} {after.get('state') or 'started'} (run "
                 f"{after.get('run_id')})" + (f": {_v(after['new_version'])} is the challenger"
                                              if after.get("new_version") else ""))
    elif entry.action == "request_promotion" and entry.result == "requested":
        title = f"{_what(entry.action, params)} requested" + (f" (request #{rid})" if rid else "")
    elif entry.action in ("approve", "reject") and ok:
        what = _what(details.get("request_action") or "", params) if details.get("request_action") else ""
        title = f"request #{rid} {'approved' if entry.action == 'approve' else 'rejected'}" + (
            f": {what}" if what else "")
    else:
        title = _what(entry.action, params)
        if entry.action in ("approve", "reject") and rid:
            title += f" request #{rid}"
        if entry.result == "requested":
            title += " requested" + (f" (request #{rid})" if rid else "")
        elif not ok:
            title = f"{entry.result.upper()}: {title}" + (f" — {entry.error}" if entry.error else "")
    title += f" by {entry.actor}"
    if entry.reason:
        title += f": “{entry.reason}”"
    at = parse_iso(entry.ts)
    if kind == APPROVAL and rid:
        link = {"page": "approvals", "request": rid}
    else:
        day = at.date().isoformat()
        link = {"page": "audit", "endpoint": endpoint, "actor": entry.actor, "action": entry.action,
                "from": day, "to": day}
    _, versions = _subjects(entry)
    return Event(at, kind, AUDIT, title, entry.actor, endpoint, versions,
                 {"seq": entry.seq, "action": entry.action, "result": entry.result, "reason": entry.reason,
                  "error": entry.error, "refused": not ok, "request_id": rid, "params": params,
                  "before": before or None, "after": after or None, "model": details.get("model") or model},
                 link)


def _subjects(entry) -> tuple[str | None, tuple[str, ...]]:
    from services.audit import entry_subjects

    model, versions = entry_subjects(entry)
    return model, tuple(sorted(versions, key=lambda v: (not v.isdigit(), int(v) if v.isdigit() else 0, v)))


def alias_move_events(entry, endpoint: str, model: str | None) -> list[Event]:
    """The champion moves an audit entry records (the Overview's rule: result ok, ``champion`` changed)."""
    out = []
    for m in alias_moves([entry], {endpoint: model} if model else None):
        if m.when is None:
            continue
        old = entry.before.get("champion") if isinstance(entry.before, dict) else None
        link = ({"page": "models", "model": m.model, "version": m.version} if m.model else
                {"page": "deployments", "endpoint": endpoint})
        out.append(Event(utc(m.when), ALIAS_MOVE, AUDIT, f"{m.model or 'model'} {m.text} ({m.action})", m.actor,
                         endpoint, _versions(old, m.version),
                         {"model": m.model, "alias": "champion", "from": old, "to": m.version, "seq": entry.seq,
                          "action": m.action, "note": "MLflow keeps no time for alias moves: the console's "
                                                      "audit trail has it"}, link))
    return out


# -- registry ---------------------------------------------------------------------------------------------------
def registration_event(v: VersionSummary, endpoint: str) -> Event:
    when = v.created or v.last_updated
    return Event(utc(when), REGISTRATION, REGISTRY, f"{v.model} v{v.version} registered", None, endpoint,
                 (str(v.version),), {"model": v.model, "version": v.version, "status": v.status,
                                     "run_id": v.run_id, "description": v.description, "aliases": list(v.aliases)},
                 {"page": "models", "model": v.model, "version": v.version})


# -- alerts and drift -------------------------------------------------------------------------------------------
def alert_events(alert, endpoint: str) -> list[Event]:
    """An alert's firing and (when it resolved) its resolution, each as an event."""
    started, resolved = alert.started_at, getattr(alert, "resolved_at", None)
    base = {"id": alert.id, "rule": alert.rule, "severity": alert.severity, "state": alert.state,
            "value": alert.value, "summary": alert.summary, "alert_source": getattr(alert, "source", None),
            "started_at": started, "resolved_at": resolved,
            "acknowledged_by": getattr(alert, "acknowledged_by", None)}
    margin = timedelta(minutes=30)
    link = {"page": "monitoring", "endpoint": alert.endpoint or endpoint, "from": url_time(utc(started) - margin),
            "to": url_time(utc(resolved or started) + margin)}
    text = f"{alert.severity} alert {alert.rule}"
    out = [Event(utc(started), ALERT_FIRED, ALERTS, f"{text} fired" + (f": {alert.summary}" if alert.summary else ""),
                 None, alert.endpoint or endpoint, (), base, link)]
    if resolved is not None:
        out.append(Event(utc(resolved), ALERT_RESOLVED, ALERTS, f"{text} resolved", None, alert.endpoint or endpoint,
                         (), base, link))
    return out


def drift_event(alarm: Mapping, endpoint: str) -> Event:
    at, since = utc(alarm["at"]), alarm.get("since")
    feature, detector, direction = alarm.get("feature"), alarm.get("detector"), alarm.get("direction")
    what = f"request rate {direction}" if alarm.get("kind") == "rate" else f"{feature} mean {direction}"
    link = {"page": "drift", "endpoint": endpoint, "from": url_time((utc(since) if since else at) - timedelta(hours=6)),
            "to": url_time(at + timedelta(hours=6))}
    if alarm.get("kind") != "rate" and feature:
        link["feature"] = feature
    return Event(at, DRIFT_ALARM, DRIFT, f"drift alarm: {what} ({detector})" + (
        f", since {utc(since):%Y-%m-%d %H:%M}" if since else ""), None, endpoint, (),
        {k: alarm.get(k) for k in ("kind", "feature", "detector", "since", "direction", "statistic")}, link)


def unavailable_event(at: datetime, label: str, exc: BaseException, endpoint: str) -> Event:
    message = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
    return Event(at, SOURCE_UNAVAILABLE, label, f"{label} unavailable: {message}", None, endpoint, (),
                 {"error": getattr(exc, "kind", type(exc).__name__), "from": getattr(exc, "source", label),
                  "message": message, "detail": getattr(exc, "detail", None)}, {})
