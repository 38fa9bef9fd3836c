"""Alertmanager's alerts, read-only, as :class:`~services.alerts.Alert` with ``source="alertmanager"``: where
Prometheus is the metrics source, the rules defined there show beside the console's own.

``GET {MLOPS_ALERTMANAGER_URL}/api/v2/alerts`` lists the alerts Alertmanager holds now (firing ones: active,
silenced or inhibited; resolved ones drop out of that list). Each becomes an alert on the endpoint its labels
name: ``endpoint``, else ``namespace``/``inferenceservice`` as ``NS/NAME`` (KServe), else ``inferenceservice``;
alerts that name no endpoint (a node, a disk) are not about a model and are left out. The rule is the
``alertname``, the severity ``critical``/``page``/``error`` → page, ``warning``/``ticket`` → ticket, anything
else → info; the summary the ``summary`` (or ``description``) annotation, marked when silenced or inhibited.
The id is ``am:`` + Alertmanager's fingerprint. Every call has a timeout; a failure is
:class:`~services.errors.Unavailable` naming Alertmanager.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from services.alerts import Alert
from services.breaker import Breaker, is_timeout
from services.errors import Invalid, Unavailable

SOURCE = "Alertmanager"
PREFIX = "am:"
_SEVERITY = {"critical": "page", "page": "page", "error": "page", "warning": "ticket", "ticket": "ticket"}
_FRACTION = re.compile(r"\.(\d+)")


def parse_time(text: str) -> datetime:
    """RFC 3339 with up to nanoseconds (Go's format) → an aware UTC datetime."""
    t = str(text).strip().replace("Z", "+00:00")
    t = _FRACTION.sub(lambda m: "." + m.group(1)[:6].ljust(6, "0"), t, count=1)
    dt = datetime.fromisoformat(t)
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).astimezone(UTC)


def endpoint_of(labels: dict) -> str | None:
    if labels.get("endpoint"):
        return str(labels["endpoint"])
    name = labels.get("inferenceservice")
    if not name:
        return None
    return f"{labels['namespace']}/{name}" if labels.get("namespace") else str(name)


def to_alert(raw: dict) -> Alert | None:
    """One entry of ``/api/v2/alerts`` (None: it names no endpoint)."""
    labels = raw.get("labels") or {}
    endpoint = endpoint_of(labels)
    if endpoint is None:
        return None
    notes = raw.get("annotations") or {}
    status = raw.get("status") or {}
    summary = str(notes.get("summary") or notes.get("description") or labels.get("alertname") or "")
    if status.get("silencedBy"):
        summary += " (silenced in Alertmanager)"
    elif status.get("inhibitedBy"):
        summary += " (inhibited in Alertmanager)"
    return Alert(id=PREFIX + str(raw.get("fingerprint", "")), endpoint=endpoint,
                 rule=str(labels.get("alertname", "")), severity=_SEVERITY.get(str(labels.get("severity", "")).lower(),
                                                                               "info"),
                 state="firing", started_at=parse_time(raw["startsAt"]), summary=summary, source="alertmanager")


class AlertmanagerAlerts:
    """Read-only: :meth:`alerts` and :meth:`get` like :class:`~services.alerts.AlertStore`'s."""

    source = SOURCE

    def __init__(self, url: str, *, timeout_s: float = 5.0, session=None):
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self._session = session
        self.breaker = Breaker(SOURCE)  # a hung Alertmanager costs a page one timeout

    @classmethod
    def from_settings(cls, settings) -> AlertmanagerAlerts | None:
        """Alertmanager where Prometheus is the metrics source and MLOPS_ALERTMANAGER_URL is set; else None."""
        if settings.metrics_source != "prometheus" or not settings.alertmanager_url:
            return None
        return cls(settings.alertmanager_url, timeout_s=settings.prometheus_timeout_seconds)

    def _fetch(self) -> list[dict]:
        import requests

        http = self._session or requests
        url = f"{self.url}/api/v2/alerts"
        try:
            with self.breaker.guard():
                resp = http.get(url, params={"active": "true", "silenced": "true", "inhibited": "true"},
                                timeout=self.timeout_s, headers={"Accept": "application/json"})
        except requests.RequestException as exc:
            why = f"no answer within {self.timeout_s:g} s" if is_timeout(exc) else type(exc).__name__
            raise Unavailable(f"cannot read alerts from {url} ({why})", source=SOURCE,
                              detail=" ".join(str(exc).split())[:300]) from exc
        if resp.status_code != 200:
            raise Unavailable(f"{url} answered HTTP {resp.status_code}", source=SOURCE,
                              detail=" ".join(resp.text.split())[:300])
        try:
            data = resp.json()
        except ValueError as exc:
            raise Unavailable(f"{url} did not answer JSON", source=SOURCE) from exc
        if not isinstance(data, list):
            raise Unavailable(f"{url} answered {type(data).__name__}, not a list of alerts", source=SOURCE)
        return data

    def alerts(self, *, endpoint: str | None = None, state: str | None = None, start: datetime | None = None,
               end: datetime | None = None, limit: int | None = 500) -> list[Alert]:
        if state not in (None, "firing", "resolved"):
            raise Invalid(f"state must be firing or resolved, not {state!r}", source=SOURCE)
        if state == "resolved":
            return []  # Alertmanager lists what fires now
        try:
            found = [a for a in (to_alert(r) for r in self._fetch()) if a is not None]
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise Unavailable("an alert in Alertmanager's answer has an unexpected shape", source=SOURCE,
                              detail=str(exc)[:300]) from exc
        out = [a for a in found if (endpoint is None or a.endpoint == endpoint)
               and (end is None or a.started_at < end)]  # firing: active at every moment since it started
        out.sort(key=lambda a: (a.started_at, a.id), reverse=True)
        return out[:limit] if limit else out

    def get(self, alert_id: str) -> Alert | None:
        if not str(alert_id).startswith(PREFIX):
            return None
        return next((a for a in self.alerts(limit=None) if a.id == str(alert_id)), None)
