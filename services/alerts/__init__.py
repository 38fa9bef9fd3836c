"""Alerts: rules from the policy file, their firing → resolved lifecycle, and the store that keeps them.

A rule (:class:`AlertRule`) watches one metric of one endpoint over a window ending now (the evaluator,
:mod:`services.alerts.evaluate`); while its condition holds it *fires* an :class:`Alert`, which stays firing
(one per endpoint and rule) until the condition no longer holds, or its series has no data any more, and it
*resolves*. People acknowledge alerts (recorded in the audit trail: :mod:`services.alerts.usecases`).
Alertmanager's alerts (:mod:`services.alerts.alertmanager`) are the same :class:`Alert` with
``source="alertmanager"``, read-only.

``parse_rules`` is pure: the policy loader (:mod:`services.policy`) calls it for each ``alerts:`` list.
"""

from __future__ import annotations

import math
import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from services.errors import Invalid

SOURCE = "policy"

# what a rule may watch (services.alerts.evaluate reads each)
METRICS = ("error_rate", "p95_latency_ms", "accuracy", "mae", "rmse", "requests", "rate_change",
           "drift_share", "feature_alarm")
ROLES = ("stable", "canary")
SEVERITIES = ("page", "ticket", "info")
STATES = ("firing", "resolved")
ALERT_SOURCES = ("console", "alertmanager")
_WINDOW = re.compile(r"^\s*(\d+)\s*([smhd])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
_RULE_KEYS = {"name", "metric", "window", "above", "below", "role", "severity", "min_samples", "feature"}


@dataclass(frozen=True)
class AlertRule:
    """Fires while ``metric`` over the last ``window`` is above ``above`` (or below ``below``: exactly one is
    set), on the ``role``'s traffic (None: the endpoint's whole traffic). ``min_samples``: fewer requests in the
    window than this and the rule does not judge (noise). ``feature``: for ``feature_alarm``, the one feature
    watched (None: any feature's Page–Hinkley alarm in the window)."""

    name: str
    metric: str
    window: timedelta
    above: float | None = None
    below: float | None = None
    role: str | None = None
    severity: str = "ticket"
    min_samples: int = 0
    feature: str | None = None

    @property
    def condition(self) -> str:
        """``error_rate > 0.1 over 1m (canary)`` — for summaries and tables."""
        op, bound = (">", self.above) if self.above is not None else ("<", self.below)
        what = f"{self.metric}[{self.feature}]" if self.feature else self.metric
        return f"{what} {op} {bound:g} over {format_window(self.window)}" + (f" ({self.role})" if self.role else "")

    def breached(self, value: float) -> bool:
        return value > self.above if self.above is not None else value < self.below  # type: ignore[operator]


@dataclass(frozen=True)
class Alert:
    """One firing (or resolved) occurrence of a rule on an endpoint. ``value``: what it fired on;
    ``last_value``: the latest evaluation's while it fired (the resolving one is not kept)."""

    id: str
    endpoint: str
    rule: str
    severity: str
    state: str  # firing | resolved
    started_at: datetime
    resolved_at: datetime | None = None
    value: float | None = None
    last_value: float | None = None
    summary: str = ""
    acknowledged_by: str | None = None
    acknowledged_at: datetime | None = None
    source: str = "console"  # console | alertmanager

    @property
    def firing(self) -> bool:
        return self.state == "firing"

    def as_dict(self) -> dict:
        from services.clock import iso

        def t(d):
            return None if d is None else iso(d)

        return {"id": self.id, "endpoint": self.endpoint, "rule": self.rule, "severity": self.severity,
                "state": self.state, "started_at": t(self.started_at), "resolved_at": t(self.resolved_at),
                "value": self.value, "last_value": self.last_value, "summary": self.summary,
                "acknowledged_by": self.acknowledged_by, "acknowledged_at": t(self.acknowledged_at),
                "source": self.source}


class AlertStore(ABC):
    """Where the console keeps its alerts. At most one firing alert per endpoint and rule, even when two
    evaluators fire it at the same moment."""

    source = "alert store"

    @abstractmethod
    def fire(self, endpoint: str, rule: AlertRule, at: datetime, value: float | None, summary: str) -> Alert:
        """Open an alert for ``endpoint`` + ``rule`` at ``at``; idempotent: an already-firing one is returned with
        its ``last_value`` (and summary) updated, its ``started_at`` and ``value`` kept."""

    @abstractmethod
    def resolve(self, endpoint: str, rule_name: str, at: datetime) -> Alert | None:
        """Resolve the firing alert of ``endpoint`` + ``rule_name`` at ``at`` (None: none was firing)."""

    @abstractmethod
    def alerts(self, *, endpoint: str | None = None, state: str | None = None, start: datetime | None = None,
               end: datetime | None = None, limit: int | None = 500) -> list[Alert]:
        """Alerts active at some moment of [start, end) — started before ``end`` and not resolved before
        ``start`` — newest ``started_at`` first."""

    @abstractmethod
    def get(self, alert_id: str) -> Alert | None:
        """One alert by id (None: no such alert)."""

    @abstractmethod
    def acknowledge(self, alert_id: str, actor_subject: str, at: datetime) -> Alert:
        """Record who acknowledged it; a second acknowledgement keeps the first. ``NotFound`` for an unknown id."""


# -- rules ---------------------------------------------------------------------------------------------------
def parse_window(text, where: str = "window") -> timedelta:
    """``"30s"``, ``"1m"``, ``"5m"``, ``"1h"``, ``"1d"`` → a positive timedelta."""
    m = _WINDOW.match(str(text)) if isinstance(text, str | int) and not isinstance(text, bool) else None
    if not m or int(m.group(1)) <= 0:
        raise Invalid(f"{where}: window must look like 30s, 1m, 5m, 1h or 1d, not {text!r}", source=SOURCE)
    return timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})


def format_window(w: timedelta) -> str:
    s = int(w.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s % size == 0:
            return f"{s // size}{unit}"
    return f"{s}s"


def _bound(raw: dict, key: str, where: str) -> float | None:
    v = raw.get(key)
    if v is None:
        return None
    try:
        if isinstance(v, bool):
            raise TypeError
        f = float(v)
    except (TypeError, ValueError):
        raise Invalid(f"{where}.{key} must be a number, not {v!r}", source=SOURCE) from None
    if not math.isfinite(f):
        raise Invalid(f"{where}.{key} must be a finite number", source=SOURCE)
    return f


def parse_rule(raw, where: str) -> AlertRule:
    if not isinstance(raw, dict):
        raise Invalid(f"{where} must be a mapping with name, metric, window and above or below", source=SOURCE)
    unknown = sorted(set(map(str, raw)) - _RULE_KEYS)
    if unknown:
        raise Invalid(f"{where}: unknown key(s) {', '.join(unknown)} (one of {', '.join(sorted(_RULE_KEYS))})",
                      source=SOURCE)
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        raise Invalid(f"{where}.name is required (a non-empty text)", source=SOURCE)
    where = f"{where} ({name})"
    metric = raw.get("metric")
    if metric not in METRICS:
        raise Invalid(f"{where}.metric: unknown metric {metric!r} (one of {', '.join(METRICS)})", source=SOURCE)
    if "window" not in raw:
        raise Invalid(f"{where}.window is required (e.g. 1m, 5m, 1h)", source=SOURCE)
    window = parse_window(raw["window"], f"{where}.window")
    above, below = _bound(raw, "above", where), _bound(raw, "below", where)
    if (above is None) == (below is None):
        raise Invalid(f"{where}: say exactly one of above or below", source=SOURCE)
    role = raw.get("role")
    if role is not None and role not in ROLES:
        raise Invalid(f"{where}.role: unknown role {role!r} (stable, canary, or leave it out for any)",
                      source=SOURCE)
    severity = raw.get("severity", "ticket")
    if severity not in SEVERITIES:
        raise Invalid(f"{where}.severity: unknown severity {severity!r} (one of {', '.join(SEVERITIES)})",
                      source=SOURCE)
    ms = raw.get("min_samples", 0)
    if isinstance(ms, bool) or not isinstance(ms, int) or ms < 0:
        raise Invalid(f"{where}.min_samples must be a whole number ≥ 0, not {ms!r}", source=SOURCE)
    feature = raw.get("feature")
    if feature is not None and (metric != "feature_alarm" or not isinstance(feature, str)):
        raise Invalid(f"{where}.feature: only a feature_alarm rule names a feature (a text)", source=SOURCE)
    return AlertRule(name=name.strip(), metric=metric, window=window, above=above, below=below, role=role,
                     severity=severity, min_samples=ms, feature=feature)


def parse_rules(raw_list, where: str) -> tuple[AlertRule, ...]:
    """Pure: the policy's ``alerts:`` list → rules; :class:`Invalid` naming the path (``where[i]``) on bad input."""
    if raw_list is None:
        return ()
    if not isinstance(raw_list, Sequence) or isinstance(raw_list, str | bytes):
        raise Invalid(f"{where} must be a list of rules", source=SOURCE)
    rules = [parse_rule(r, f"{where}[{i}]") for i, r in enumerate(raw_list)]
    seen: set[str] = set()
    for i, r in enumerate(rules):
        if r.name in seen:
            raise Invalid(f"{where}[{i}]: duplicate rule name {r.name!r}", source=SOURCE)
        seen.add(r.name)
    return tuple(rules)


__all__ = ["ALERT_SOURCES", "METRICS", "ROLES", "SEVERITIES", "STATES", "Alert", "AlertRule", "AlertStore",
           "format_window", "parse_rule", "parse_rules", "parse_window"]
