"""Suspects: the changes shortly before an alert, ranked.

The score of a change that happened ``Δ`` before the alert started, in a window ``W`` (default 2 h)::

    closeness = 1 − Δ / W                         (1 at the alert, 0 at the window's start)
    evidence  = 1 − p   when the version the change introduced is worse than the one it is compared with
                        on the alert's metric (two-proportion z-test on errors, Mann–Whitney U on latency)
              = 0       when it is not worse
              = ½ × closeness   when there is nothing to test (no metrics source, no data, or a change that
                        introduced no version): half credit, so a change the metrics incriminate ranks above
                        an untested one that merely came later
    score     = weight(kind) × (closeness + evidence) / 2
    weight    = 1 for serving changes and actions (they change what serves), 0.6 for alias moves (the champion
                moves; serving follows only through an endpoint change), 0.3 for registrations (nothing serves
                a new version until someone deploys it)

The comparison for a change that left a canary running is canary vs stable over ``[change, alert + 5 min)``
(the requests the alert was about); for a change of the stable version without a canary, the new stable
version after the change against the old one over as long a period before it. An action and the serving
change it made (same resulting state, within a minute) are one suspect: the serving change, with the action's
actor and reason attached. Refused attempts and actions that change nothing that serves (an alert
acknowledged) are no suspects, nor is the first recorded state (what served already).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from services.actions.catalog import ACTIONS
from services.errors import ConsoleError
from services.incidents.events import ACTION, ALIAS_MOVE, CHANGE_KINDS, REGISTRATION, SERVING_CHANGE, Event, utc
from services.metrics import compare

WINDOW = timedelta(hours=2)
AFTER_ALERT = timedelta(minutes=5)
SAME_CHANGE = timedelta(minutes=1)
WEIGHTS = {SERVING_CHANGE: 1.0, ACTION: 1.0, ALIAS_MOVE: 0.6, REGISTRATION: 0.3}
UNTESTED = 0.5  # the evidence of a change with nothing to test, as a share of its closeness
ERROR_WORDS = ("error", "errors", "5xx", "failure", "fail")
LATENCY_WORDS = ("latency", "p50", "p95", "p99", "slow")


def alert_metric(alert: Any) -> str | None:
    """``error_rate`` or ``latency`` for an alert (its ``metric`` if it has one, else words in its rule and
    summary); None when it says neither."""
    if isinstance(alert, datetime):
        return None
    details = alert.details if isinstance(alert, Event) else {}
    text = " ".join(str(x) for x in (getattr(alert, "metric", None), details.get("metric"),
                                     getattr(alert, "rule", None) or details.get("rule"),
                                     getattr(alert, "summary", None) or details.get("summary")) if x).lower()
    if any(w in text for w in LATENCY_WORDS):
        return "latency"
    if any(w in text for w in ERROR_WORDS):
        return "error_rate"
    return None


def _start(alert_or_time: Any) -> datetime:
    if isinstance(alert_or_time, datetime):
        return utc(alert_or_time)
    if isinstance(alert_or_time, Event):
        return alert_or_time.at
    return utc(alert_or_time.started_at)


def _endpoint(alert_or_time: Any, events: list[Event]) -> str | None:
    ep = getattr(alert_or_time, "endpoint", None)
    return ep or next((e.endpoint for e in events if e.endpoint), None)


def _changed(e: Event) -> bool:
    """Actions that changed what serves (a guarded action of the catalog that went through); refusals and
    bookkeeping (an alert acknowledged) changed nothing."""
    if e.kind == SERVING_CHANGE and e.details.get("before") is None:
        return False  # the first recorded state: what served already, not a change
    return e.kind != ACTION or (not e.details.get("refused") and e.details.get("action") in ACTIONS)


def _merge_actions(candidates: list[Event]) -> tuple[list[Event], dict[int, Event]]:
    """Drop the actions whose serving change is also a candidate; return the action of each serving change."""
    changes = [e for e in candidates if e.kind == SERVING_CHANGE]
    via: dict[int, Event] = {}
    keep = []
    for e in candidates:
        if e.kind == ACTION:
            twin = next((c for c in changes if abs(c.at - e.at) <= SAME_CHANGE and e.details.get("after")
                         and _same_state(c.details.get("after"), e.details["after"])), None)
            if twin is not None:
                via[id(twin)] = e
                continue
        keep.append(e)
    return keep, via


def _same_state(a: dict | None, b: dict) -> bool:
    keys = ("stable_version", "canary_version", "canary_weight")
    return bool(a) and all(str(a.get(k) or "") == str(b.get(k) or "") for k in keys)


def _test(metrics, endpoint: str, change: Event, until: datetime, metric: str | None) -> dict | None:
    """The test of the alert's metric between the versions that served after ``change`` (see the module doc)."""
    after = change.details.get("after") or {}
    before = change.details.get("before") or {}
    stable, canary = after.get("stable_version"), after.get("canary_version")
    if change.kind not in (SERVING_CHANGE, ACTION) or not stable:
        return None
    if canary:
        tests = compare(metrics.aggregates(endpoint, change.at, until))
    elif before.get("stable_version") and str(before["stable_version"]) != str(stable):
        old = str(before["stable_version"])
        span = until - change.at
        aggs = [a for a in metrics.aggregates(endpoint, change.at, until) if a.version == str(stable)]
        aggs += [a for a in metrics.aggregates(endpoint, change.at - span, change.at) if a.version == old]
        tests = compare(aggs, candidate=str(stable), baseline=old)
    else:
        return None
    wanted = [t for t in tests if metric in (None, t.metric) and t.p_value is not None]
    if not wanted:
        return None
    worse = [t for t in wanted if t.candidate_value is not None and t.baseline_value is not None
             and t.candidate_value > t.baseline_value]
    best = min(worse or wanted, key=lambda t: t.p_value)
    return {**best.as_dict(), "worse": bool(worse)}


def suspects(events: Iterable[Event], alert_or_time: Any, *, metrics=None, window: timedelta = WINDOW,
             metric: str | None = None) -> list[dict]:
    """The changes in ``[alert start − window, alert start]``, best suspect first (see the module doc).

    ``alert_or_time``: an alert (anything with ``started_at``, and ``endpoint``/``rule``/``summary``), an
    ``alert_fired`` event of the timeline, or a time. ``metrics`` is a MetricsSource (optional)."""
    events = list(events)
    t0 = _start(alert_or_time)
    metric = metric or alert_metric(alert_or_time)
    endpoint = _endpoint(alert_or_time, events)
    candidates = [e for e in events if e.kind in CHANGE_KINDS and t0 - window <= e.at <= t0 and _changed(e)]
    candidates, via = _merge_actions(candidates)
    until = t0 + AFTER_ALERT
    out = []
    for e in candidates:
        closeness = max(0.0, 1 - (t0 - e.at) / window)
        test, problem = None, None
        if metrics is not None and endpoint:
            try:
                test = _test(metrics, endpoint, e, max(until, e.at + AFTER_ALERT), metric)
            except ConsoleError as exc:
                problem = f"{exc.source}: {exc.message}"
        evidence = UNTESTED * closeness if test is None else ((1 - test["p_value"]) if test["worse"] else 0.0)
        score = WEIGHTS.get(e.kind, 0.3) * (closeness + evidence) / 2
        action = via.get(id(e))
        out.append({"score": round(score, 4), "closeness": round(closeness, 4),
                    "evidence": None if test is None else round(evidence, 4),
                    "minutes_before": round((t0 - e.at).total_seconds() / 60, 2), "event": e.as_dict(),
                    "action": action.as_dict() if action else None, "test": test, "problem": problem,
                    "why": _why(e, t0, test, action)})
    out.sort(key=lambda s: (-s["score"], s["minutes_before"]))
    for i, s in enumerate(out, 1):
        s["rank"] = i
    return out


def _why(e: Event, t0: datetime, test: dict | None, action: Event | None) -> str:
    mins = (t0 - e.at).total_seconds() / 60
    text = f"{e.title}, {mins:.0f} min before the alert"
    if action is not None:
        text += f" (through {action.details.get('action')} by {action.actor})"
    if test:
        cand, base = test.get("candidate"), test.get("baseline")
        if test["worse"]:
            text += (f"; v{cand} is worse than v{base} on {test['metric'].replace('_', ' ')} "
                     f"(p = {test['p_value']:.3g})")
        else:
            text += f"; v{cand} is not worse than v{base} on {test['metric'].replace('_', ' ')}"
    return text
