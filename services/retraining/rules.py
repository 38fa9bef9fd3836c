"""Retraining by rule: when the evidence says so, never silently, at most one open retraining per endpoint, and
not again within a cool-down.

Rules live in the policy file's ``retraining:`` section (``defaults`` for every endpoint, ``endpoints.NAME`` to
replace them for one)::

    retraining:
      defaults:
        - {name: quality-low, metric: accuracy, below: 0.9, window_minutes: 1440, min_labelled: 200,
           cooldown_minutes: 1440}
      endpoints:
        cancer-screening:
          - {name: drifted, metric: drift_share, above: 0.5, window_minutes: 360}

Metrics: ``accuracy`` and ``mae`` of the labelled requests the stable version answered in the window (from the
rollups; fewer than ``min_labelled`` labels decide nothing), ``drift_share`` (share of the stable version's
features drifted over the window, on its fixed bins, by the policy's drift method). :func:`check_endpoint`
measures each rule; the first one past its threshold triggers a retraining through the same use case a person
uses, as the actor ``rule:<name>`` — so the trigger, its evidence and the run it started are in the audit trail
and on the endpoint's timeline — unless a retraining of the endpoint is still open (queued or running, asked of
the retrainer) or the last one started within the rule's cool-down. A rule with ``request_promotion: true``
then requests the new version's promotion (a retrainer that registers it at once: ``local``) — the usual guarded
action with its gates, filed only where the policy has another person approve it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path

from services.errors import Conflict, ConsoleError, Invalid
from services.identity import Actor
from services.retraining import Retrainer, RetrainRun
from services.retraining.usecases import last_entry, open_run, request_retraining

SOURCE = "retraining rules"
METRICS = ("accuracy", "mae", "drift_share")


@dataclass(frozen=True)
class RetrainRule:
    name: str
    metric: str
    above: float | None = None
    below: float | None = None
    window_minutes: int = 1440
    min_labelled: int = 100
    cooldown_minutes: int = 1440
    request_promotion: bool = False  # then request the new version's promotion (a person approves it)

    def breached(self, value: float | None) -> bool:
        if value is None:
            return False
        return (self.above is not None and value > self.above) or (self.below is not None and value < self.below)

    @property
    def threshold(self) -> str:
        return f"> {self.above:g}" if self.above is not None else f"< {self.below:g}"


def _rule(raw, where: str) -> RetrainRule:
    if not isinstance(raw, dict) or not raw.get("name"):
        raise Invalid(f"{where}: each rule is a mapping with a name", source=SOURCE)
    where = f"{where} {raw['name']!r}"
    unknown = set(raw) - {f for f in RetrainRule.__dataclass_fields__}
    if unknown:
        raise Invalid(f"{where}: unknown key(s) {', '.join(sorted(unknown))}", source=SOURCE)
    if raw.get("metric") not in METRICS:
        raise Invalid(f"{where}: metric must be one of {', '.join(METRICS)}", source=SOURCE)
    if (raw.get("above") is None) == (raw.get("below") is None):
        raise Invalid(f"{where}: give exactly one of above or below", source=SOURCE)
    try:
        rule = RetrainRule(name=str(raw["name"]), metric=raw["metric"],
                           above=None if raw.get("above") is None else float(raw["above"]),
                           below=None if raw.get("below") is None else float(raw["below"]),
                           **{k: int(raw[k]) for k in ("window_minutes", "min_labelled", "cooldown_minutes")
                              if k in raw}, request_promotion=raw.get("request_promotion", False))
    except (TypeError, ValueError) as exc:
        raise Invalid(f"{where}: {exc}", source=SOURCE) from exc
    if not isinstance(rule.request_promotion, bool):
        raise Invalid(f"{where}: request_promotion must be true or false", source=SOURCE)
    if rule.window_minutes < 1 or rule.cooldown_minutes < 0 or rule.min_labelled < 1:
        raise Invalid(f"{where}: window_minutes and min_labelled must be ≥ 1, cooldown_minutes ≥ 0", source=SOURCE)
    return rule


@dataclass(frozen=True)
class RetrainRules:
    defaults: tuple[RetrainRule, ...] = ()
    endpoints: tuple[tuple[str, tuple[RetrainRule, ...]], ...] = ()

    def for_endpoint(self, endpoint: str) -> tuple[RetrainRule, ...]:
        return dict(self.endpoints).get(endpoint, self.defaults)

    @classmethod
    def from_dict(cls, section) -> RetrainRules:
        section = section or {}
        if not isinstance(section, dict):
            raise Invalid("retraining: must be a mapping (defaults, endpoints)", source=SOURCE)
        defaults = tuple(_rule(r, "retraining.defaults") for r in section.get("defaults") or ())
        eps = tuple((str(ep), tuple(_rule(r, f"retraining.endpoints.{ep}") for r in rules or ()))
                    for ep, rules in (section.get("endpoints") or {}).items())
        return cls(defaults, eps)

    @classmethod
    def load(cls, path: Path | str) -> RetrainRules:
        import yaml

        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise Invalid(f"cannot read the policy file {path}: {exc}", source=SOURCE) from exc
        return cls.from_dict(data.get("retraining") if isinstance(data, dict) else None)


@dataclass(frozen=True)
class Check:
    """One rule on one endpoint: what it measured, and what came of it."""

    endpoint: str
    rule: str
    metric: str
    threshold: str
    value: float | None
    outcome: str  # fired | would fire | ok | no data | skipped
    note: str = ""
    run_id: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def measure(rule: RetrainRule, endpoint: str, version: str, start: datetime, end: datetime, predictions,
            drift: Callable[[str, str, datetime, datetime], float | None]) -> tuple[float | None, str]:
    """The rule's metric over the window for the stable version, or None with the reason."""
    if rule.metric == "drift_share":
        share = drift(endpoint, version, start, end)
        return share, "" if share is not None else "no computable feature drift in the window"
    labelled = correct = 0
    abs_err = 0.0
    for t in predictions.served(endpoint, start, end):
        if t.version == version:
            labelled, correct, abs_err = labelled + t.labelled, correct + t.correct, abs_err + t.abs_error_sum
    if labelled < rule.min_labelled:
        return None, f"only {labelled} labelled requests of v{version} (the rule needs {rule.min_labelled})"
    return (correct / labelled if rule.metric == "accuracy" else abs_err / labelled), f"{labelled} labelled"


def _blocker(retrainer: Retrainer, audit, endpoint: str, rule: RetrainRule, now: datetime) -> str | None:
    """Why no retraining may start now: one still open, or the last one within the cool-down."""
    from services.clock import parse_iso

    still = open_run(retrainer, audit, endpoint)
    if still is not None:
        return f"retraining run {still[0]} is still {still[1]}: at most one open retraining per endpoint"
    last = last_entry(audit, endpoint)
    if last is None:
        return None
    run_id = (last.after if isinstance(last.after, dict) else {}).get("run_id")
    started = parse_iso(last.ts)
    if now - started < timedelta(minutes=rule.cooldown_minutes):
        return (f"the last retraining (run {run_id}) started at {started:%Y-%m-%d %H:%M} UTC, within the "
                f"{rule.cooldown_minutes}-minute cool-down")
    return None


def check_endpoint(retrainer: Retrainer, audit, serving, predictions, rules: tuple[RetrainRule, ...], endpoint: str,
                   *, drift: Callable[[str, str, datetime, datetime], float | None],
                   clock: Callable[[], datetime], dry_run: bool = False,
                   promote: Callable[[Actor, RetrainRun], dict] | None = None, leases=None
                   ) -> tuple[list[Check], RetrainRun | None]:
    """Measure each rule; the first past its threshold triggers one retraining (unless blocked or ``dry_run``);
    with the rule's ``request_promotion``, ``promote(actor, run)`` then files the new version's promotion."""
    ep = serving.get_endpoint(endpoint)
    if not rules or not ep.model or not ep.stable_version:
        return [], None
    now = clock()
    checks: list[Check] = []
    run: RetrainRun | None = None
    for rule in rules:
        start = now - timedelta(minutes=rule.window_minutes)
        try:
            value, note = measure(rule, endpoint, ep.stable_version, start, now, predictions, drift)
        except ConsoleError as exc:
            value, note = None, f"{exc.source}: {exc.message}"
        base = dict(endpoint=endpoint, rule=rule.name, metric=rule.metric, threshold=rule.threshold, value=value)
        if not rule.breached(value):
            checks.append(Check(**base, outcome="no data" if value is None else "ok", note=note))
            continue
        blocked = None if run is None else f"run {run.run_id} was started by this check"
        blocked = blocked or _blocker(retrainer, audit, endpoint, rule, now)
        if blocked or dry_run:
            checks.append(Check(**base, outcome="skipped" if blocked else "would fire", note=blocked or note))
            continue
        evidence = {"rule": rule.name, "metric": rule.metric, "value": value, "threshold": rule.threshold,
                    "window_minutes": rule.window_minutes, "measured": note}
        reason = f"rule {rule.name}: {rule.metric} {value:.4g} {rule.threshold} over {rule.window_minutes} min"
        actor = Actor(f"rule:{rule.name}", ("operator",), authenticated_by="rule")  # may request, never approve
        try:
            run = request_retraining(retrainer, audit, serving, actor, endpoint, reason, start=start, end=now,
                                     evidence=evidence, predictions=predictions, clock=clock, leases=leases)
        except Conflict as exc:  # another process started one a moment ago: that one answers this evidence
            checks.append(Check(**base, outcome="skipped", note=exc.message))
            continue
        if rule.request_promotion and promote is not None and run.new_version:
            promo = promote(actor, run)
            note += f"; promotion of v{run.new_version}: {promo['status']} — {promo['message']}"
        checks.append(Check(**base, outcome="fired", note=note, run_id=run.run_id))
    return checks, run
