"""The evaluator's runs: every endpoint's rules against its sources, the decisions applied to the alert store.

:func:`run_once` reads each endpoint on a few daemon threads with a deadline (a dead source cannot hang the run: that
endpoint is logged and skipped, its alerts stay as they are, the others go on) and writes the store from the
calling thread, so a read that finishes after its deadline changes nothing. A firing alert whose rule left the
policy, or whose endpoint is gone, resolves. :func:`loop` repeats it every ``MLOPS_ALERT_INTERVAL_SECONDS``;
``python -m services up`` runs it beside the gateway and the ingest.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import partial

from services.alerts import Alert, AlertStore
from services.alerts.evaluate import Decision, evaluate, observe
from services.errors import ConsoleError

log = logging.getLogger("services.alerts")
WORKERS = 4


@dataclass(frozen=True)
class AlertChange:
    """``fired`` (a new alert) or ``resolved``."""

    kind: str
    alert: Alert

    def as_dict(self) -> dict:
        return {"change": self.kind, **self.alert.as_dict()}

    def __str__(self) -> str:
        a = self.alert
        return f"alert {self.kind}: {a.endpoint} · {a.rule} ({a.severity}) · {a.summary}"


def bounded(calls: dict[str, Callable[[], object]], timeout_s: float) -> dict[str, object]:
    """Run the calls on at most :data:`WORKERS` daemon threads; what each returned (or raised) by the deadline.
    A call still running then is left behind (a daemon thread never holds up the process's exit) and the calls
    not started yet are dropped."""
    todo: queue.SimpleQueue = queue.SimpleQueue()
    for item in calls.items():
        todo.put(item)
    results: dict[str, object] = {}
    over = threading.Event()

    def work() -> None:
        while not over.is_set():
            try:
                name, fn = todo.get_nowait()
            except queue.Empty:
                return
            try:
                results[name] = fn()
            except Exception as exc:  # noqa: BLE001 - handed to the caller, who says it
                results[name] = exc

    threads = [threading.Thread(target=work, daemon=True, name=f"alerts-{i}") for i in range(min(WORKERS, len(calls)))]
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout_s
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    over.set()
    return dict(results)


def _decide(endpoint, rules, *, metrics, predictions, drift_policy, now: datetime) -> list[Decision]:
    obs = observe(rules, endpoint, metrics=metrics, predictions=predictions, drift_policy=drift_policy, now=now)
    return evaluate(rules, obs)


def run_once(store: AlertStore, policy, metrics, predictions, serving, clock: Callable[[], datetime], *,
             timeout_s: float = 10.0, warn: Callable[[str], None] = log.warning) -> list[AlertChange]:
    """One evaluation of every endpoint's rules; the alerts that fired or resolved. ``warn`` gets one line per
    endpoint that could not be evaluated (failed or over ``timeout_s``)."""
    now = clock()
    endpoints = {ep.name: ep for ep in serving.list_endpoints()}  # fails the run: nothing is resolved blindly
    firing: dict[str, dict[str, Alert]] = {}
    for a in store.alerts(state="firing", limit=None):
        firing.setdefault(a.endpoint, {})[a.rule] = a
    work = {name: policy.for_endpoint(name).alerts for name in endpoints}
    calls = {name: partial(_decide, endpoints[name], rules, metrics=metrics, predictions=predictions,
                           drift_policy=policy.for_endpoint(name).drift, now=now)
             for name, rules in work.items() if rules}
    results = bounded(calls, timeout_s)
    changes: list[AlertChange] = []
    decided: dict[str, list[Decision]] = {}
    for name in calls:
        if name not in results:
            warn(f"alerts: {name}: not evaluated within {timeout_s:g} s (a source hangs?); its alerts stay as "
                 "they are")
        elif isinstance(results[name], BaseException):
            warn(f"alerts: {name}: evaluation failed: {_text(results[name])}; its alerts stay as they are")
        else:
            decided[name] = results[name]
    for name, decisions in decided.items():
        changes += _apply(store, name, decisions, firing.get(name, {}), now, warn)
    for name, open_ in firing.items():  # rules that left the policy, endpoints that are gone
        known = {r.name for r in work.get(name, ())}
        for rule_name in sorted(set(open_) - known):
            try:
                changes += _resolved(store.resolve(name, rule_name, now))
            except ConsoleError as exc:
                warn(f"alerts: {name} {rule_name}: the alert store failed: {_text(exc)}")
    return changes


def _apply(store: AlertStore, endpoint: str, decisions: list[Decision], open_: dict[str, Alert], now: datetime,
           warn: Callable[[str], None]) -> list[AlertChange]:
    out: list[AlertChange] = []
    for d in decisions:
        try:
            if d.action == "fire":
                alert = store.fire(endpoint, d.rule, now, d.value, d.summary)
                if d.rule.name not in open_:
                    out.append(AlertChange("fired", alert))
            elif d.action == "resolve" and d.rule.name in open_:
                out += _resolved(store.resolve(endpoint, d.rule.name, now))
            elif d.verdict == "error":
                warn(f"alerts: {endpoint} {d.rule.name}: {d.summary}")
        except ConsoleError as exc:
            warn(f"alerts: {endpoint} {d.rule.name}: the alert store failed: {_text(exc)}")
    return out


def _resolved(alert: Alert | None) -> list[AlertChange]:
    return [AlertChange("resolved", alert)] if alert is not None else []


def _text(exc: BaseException) -> str:
    return f"{exc.source}: {exc.message}" if isinstance(exc, ConsoleError) else f"{type(exc).__name__}: {exc}"


def run_container(c, **kw) -> list[AlertChange]:
    """:func:`run_once` on a container's parts."""
    return run_once(c.alerts, c.policy, c.metrics, c.predictions, c.serving, c.clock, **kw)


def loop(c, interval_s: float, stop: threading.Event, say: Callable[[str], None] = print) -> None:
    """Evaluate every ``interval_s`` until ``stop`` is set; a failing run is said and retried next time."""
    while not stop.is_set():
        try:
            for change in run_container(c, timeout_s=max(1.0, interval_s * 0.8), warn=say):
                say(str(change))
        except Exception as exc:  # noqa: BLE001 - the evaluator retries next interval; serving goes on
            say(f"alerts: evaluation failed ({_text(exc)}); will retry")
        stop.wait(interval_s)
