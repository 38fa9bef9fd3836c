"""Evidence-gate policy: which actions need approval, who may do what, and the gates.

Loaded from a YAML file (``MLOPS_POLICY_FILE``); ``endpoints.<name>`` overrides
``defaults`` key by key. Gate evaluation is pure: it gets the numbers and
returns results, it fetches nothing.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

import yaml

from services.alerts import AlertRule, parse_rules
from services.errors import Invalid
from services.policy_scaling import ScalingPolicy, parse_scaling

SOURCE = "policy"


@dataclass(frozen=True)
class PolicyVocabulary:
    """What a policy may name: the actions with their default roles, and the approval kinds. The actions'
    catalog (``services.actions.catalog.VOCABULARY``) is the one source; the policy only reads it."""

    default_roles: dict[str, tuple[str, ...]]
    kinds: tuple[str, ...]

    @property
    def actions(self) -> tuple[str, ...]:
        return tuple(self.default_roles)


DEFAULT_LIVE_GATE_ACTIONS = ("promote_canary", "request_promotion")


@dataclass(frozen=True)
class OfflineGate:
    """Candidate's run metric vs the champion's: higher is better unless direction is lower."""

    metric: str
    direction: str = "higher"  # higher | lower
    max_regression: float = 0.0  # allowed worsening, absolute
    min_value: float | None = None  # absolute floor (ceiling for "lower")


@dataclass(frozen=True)
class LiveGate:
    """A live metric of the candidate on this endpoint, read from the metrics source.

    Absolute: ``max_value`` (a ceiling, e.g. a p95 latency SLO) and/or ``min_value`` (a floor, e.g.
    ``minutes_at_weight``). Relative: ``compare: stable`` compares the candidate with the stable version on the
    same window; it fails when the candidate is worse by more than ``max_increase`` (absolute) and, when
    ``alpha`` is set, only if the difference is also significant (the test's p-value ≤ ``alpha``; with
    ``alpha`` alone any significant worsening fails). ``min_samples``: fewer candidate requests than this
    fail the gate (not enough evidence); no requests at all count as missing data (``on_missing``).

    ``applies_to`` names the actions it gates: by default promoting (a canary that has served, with live
    data), not starting a canary, which has no live data yet."""

    metric: str  # error_rate, p95_latency_ms, requests, minutes_at_weight, accuracy, ...
    max_value: float | None = None
    on_missing: str = "fail"  # fail | pass: what to do when no live data is available
    applies_to: tuple[str, ...] = DEFAULT_LIVE_GATE_ACTIONS
    min_value: float | None = None
    compare: str | None = None  # stable
    max_increase: float | None = None  # with compare: tolerated worsening vs stable (absolute)
    alpha: float | None = None  # with compare: significance level of the canary-vs-stable test
    min_samples: int = 0

    @property
    def name(self) -> str:
        parts = []
        if self.compare:
            tol = f"+{self.max_increase:g}" if self.max_increase is not None else "no worse"
            parts.append(f"vs {self.compare} {tol}" + (f" (α {self.alpha:g})" if self.alpha is not None else ""))
        if self.max_value is not None:
            parts.append(f"≤ {self.max_value:g}")
        if self.min_value is not None:
            parts.append(f"≥ {self.min_value:g}")
        if self.min_samples:
            parts.append(f"n ≥ {self.min_samples}")
        return f"live {self.metric} " + ", ".join(parts)


@dataclass(frozen=True)
class LiveEvidence:
    """What the metrics source says about one metric: the candidate's value, the stable version's on the same
    window (for ``compare``), the test's p-value, and the candidate's sample size (requests)."""

    value: float | None
    baseline: float | None = None
    p_value: float | None = None
    samples: float | None = None


HIGHER_IS_BETTER = ("accuracy", "requests", "minutes_at_weight")


DRIFT_METHODS = ("psi", "jensenshannon", "hellinger")  # on the versions' fixed bins (services.drift.stats)


@dataclass(frozen=True)
class DriftPolicy:
    """How logged traffic is compared with a version's reference: a method on the fixed bins and its threshold
    (None: the method's default), per feature where set; a dataset drifts when ``share`` of its features do."""

    method: str = "psi"
    threshold: float | None = None
    share: float = 0.5
    features: dict[str, tuple[str, float | None]] = field(default_factory=dict)

    def for_feature(self, name: str) -> tuple[str, float | None]:
        return self.features.get(name, (self.method, self.threshold))


@dataclass(frozen=True)
class EndpointPolicy:
    require_approval: tuple[str, ...] = ("promote",)
    roles: dict[str, tuple[str, ...]] = field(default_factory=dict)
    offline_gates: tuple[OfflineGate, ...] = ()
    live_gates: tuple[LiveGate, ...] = ()
    gate_actions: tuple[str, ...] = ("promote", "start_canary")
    drift: DriftPolicy = field(default_factory=DriftPolicy)
    alerts: tuple[AlertRule, ...] = ()  # services.alerts: the rules the evaluator watches
    scaling: ScalingPolicy = field(default_factory=ScalingPolicy)  # services.policy_scaling: the floor

    def roles_for(self, action: str) -> tuple[str, ...]:
        """Roles that may do ``action`` here (admin always may); the catalog's defaults where not set."""
        return tuple(self.roles.get(action, ()))

    def needs_approval(self, kind: str) -> bool:
        return kind in self.require_approval


@dataclass(frozen=True)
class GateResult:
    name: str
    kind: str  # offline | live
    passed: bool | None  # None: not evaluated
    candidate: float | None
    baseline: float | None
    threshold: float | None
    detail: str
    worse: bool = False  # passes (within tolerance) but is worse than the champion: flag it

    @property
    def status(self) -> str:
        """One word for tables: pass, worse (passes within tolerance), FAIL, n/a."""
        if self.passed is None:
            return "n/a"
        if self.passed is False:
            return "FAIL"
        return "worse" if self.worse else "pass"

    def as_dict(self) -> dict:
        return asdict(self)


class Policy:
    """Loaded with the vocabulary of the actions' catalog: ``Policy.load(path, VOCABULARY)``."""

    def __init__(self, defaults: EndpointPolicy, endpoints: dict[str, EndpointPolicy], source_file: str = ""):
        self.defaults = defaults
        self.endpoints = endpoints
        self.source_file = source_file

    def for_endpoint(self, name: str) -> EndpointPolicy:
        return self.endpoints.get(name, self.defaults)

    @classmethod
    def load(cls, path: Path | str, vocabulary: PolicyVocabulary) -> Policy:
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except FileNotFoundError as exc:
            raise Invalid(f"policy file {path} does not exist", source=SOURCE) from exc
        except (OSError, yaml.YAMLError) as exc:
            raise Invalid(f"policy file {path} cannot be read: {exc}", source=SOURCE) from exc
        return cls.from_dict(data, vocabulary, str(path))

    @classmethod
    def from_dict(cls, data: dict, vocabulary: PolicyVocabulary, source_file: str = "") -> Policy:
        if not isinstance(data, dict):
            raise Invalid("policy must be a mapping", source=SOURCE)
        raw_defaults = data.get("defaults", {}) or {}
        defaults = _endpoint_policy(raw_defaults, vocabulary, "defaults")
        eps = {}
        for name, raw in (data.get("endpoints", {}) or {}).items():
            eps[str(name)] = _endpoint_policy({**raw_defaults, **(raw or {})}, vocabulary, f"endpoints.{name}")
        return cls(defaults, eps, source_file)


def _opt_float(raw: dict, key: str) -> float | None:
    return None if raw.get(key) is None else float(raw[key])


def _endpoint_policy(raw: dict, vocab: PolicyVocabulary, where: str) -> EndpointPolicy:
    if not isinstance(raw, dict):
        raise Invalid(f"{where} must be a mapping", source=SOURCE)
    approval = tuple(raw.get("require_approval", ["promote"]) or ())
    for a in approval:
        if a not in vocab.kinds:
            raise Invalid(f"{where}.require_approval: unknown action {a!r} (one of {', '.join(vocab.kinds)})",
                          source=SOURCE)
    roles = dict(vocab.default_roles)
    for action, rs in (raw.get("roles", {}) or {}).items():
        if action not in vocab.actions:
            raise Invalid(f"{where}.roles: unknown action {action!r} (one of {', '.join(vocab.actions)})",
                          source=SOURCE)
        roles[action] = tuple(rs or ())
    gates = raw.get("gates", {}) or {}
    offline = []
    for g in gates.get("offline", []) or []:
        try:
            gate = OfflineGate(metric=str(g["metric"]), direction=str(g.get("direction", "higher")),
                               max_regression=float(g.get("max_regression", 0.0)),
                               min_value=None if g.get("min_value") is None else float(g["min_value"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise Invalid(f"{where}.gates.offline: bad gate {g!r}: {exc}", source=SOURCE) from exc
        if gate.direction not in ("higher", "lower"):
            raise Invalid(f"{where}.gates.offline: direction must be higher or lower", source=SOURCE)
        offline.append(gate)
    live = []
    for g in gates.get("live", []) or []:
        try:
            applies = g.get("applies_to", list(DEFAULT_LIVE_GATE_ACTIONS))
            num = partial(_opt_float, g)
            gate = LiveGate(metric=str(g["metric"]), max_value=num("max_value"),
                            on_missing=str(g.get("on_missing", "fail")),
                            applies_to=tuple(str(a) for a in ([applies] if isinstance(applies, str) else applies)),
                            min_value=num("min_value"),
                            compare=None if g.get("compare") is None else str(g["compare"]),
                            max_increase=num("max_increase"), alpha=num("alpha"),
                            min_samples=int(g.get("min_samples", 0) or 0))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise Invalid(f"{where}.gates.live: bad gate {g!r}: {exc}", source=SOURCE) from exc
        if gate.compare not in (None, "stable"):
            raise Invalid(f"{where}.gates.live: {gate.metric}: compare must be stable", source=SOURCE)
        if gate.compare and gate.max_increase is None and gate.alpha is None:
            raise Invalid(f"{where}.gates.live: {gate.metric}: compare needs max_increase and/or alpha",
                          source=SOURCE)
        if gate.alpha is not None and not 0 < gate.alpha < 1:
            raise Invalid(f"{where}.gates.live: {gate.metric}: alpha must be between 0 and 1", source=SOURCE)
        if gate.max_value is None and gate.min_value is None and not gate.compare and not gate.min_samples:
            raise Invalid(f"{where}.gates.live: {gate.metric}: say max_value, min_value, compare or min_samples",
                          source=SOURCE)
        if gate.min_samples < 0:
            raise Invalid(f"{where}.gates.live: {gate.metric}: min_samples must be ≥ 0", source=SOURCE)
        unknown = [a for a in gate.applies_to if a not in vocab.actions]
        if unknown:
            raise Invalid(f"{where}.gates.live: {gate.metric} applies to unknown action(s) {', '.join(unknown)}",
                          source=SOURCE)
        if gate.on_missing not in ("fail", "pass"):
            raise Invalid(f"{where}.gates.live: on_missing must be fail or pass", source=SOURCE)
        live.append(gate)
    gate_kinds = tuple(raw.get("gate_actions", ["promote", "start_canary"]) or ())
    for k in gate_kinds:
        if k not in vocab.kinds:
            raise Invalid(f"{where}.gate_actions: unknown kind {k!r} (one of {', '.join(vocab.kinds)})",
                          source=SOURCE)
    return EndpointPolicy(
        require_approval=approval,
        roles=roles,
        offline_gates=tuple(offline),
        live_gates=tuple(live),
        gate_actions=gate_kinds,
        drift=_drift_policy(raw.get("drift") or {}, f"{where}.drift"),
        alerts=parse_rules(raw.get("alerts"), f"{where}.alerts"),
        scaling=parse_scaling(raw.get("scaling"), f"{where}.scaling"))


def _drift_method(raw: dict, where: str, default: str = "psi") -> tuple[str, float | None]:
    method = str(raw.get("method", default))
    if method not in DRIFT_METHODS:
        raise Invalid(f"{where}: unknown drift method {method!r} (one of {', '.join(DRIFT_METHODS)})", source=SOURCE)
    try:
        threshold = _opt_float(raw, "threshold")
    except (TypeError, ValueError):
        raise Invalid(f"{where}: threshold must be a number", source=SOURCE) from None
    if threshold is not None and not (math.isfinite(threshold) and threshold > 0):
        raise Invalid(f"{where}: threshold must be a positive number", source=SOURCE)
    return method, threshold


def _drift_policy(raw: dict, where: str) -> DriftPolicy:
    if not isinstance(raw, dict):
        raise Invalid(f"{where} must be a mapping", source=SOURCE)
    method, threshold = _drift_method(raw, where)
    try:
        share = float(raw.get("share", 0.5))
    except (TypeError, ValueError):
        raise Invalid(f"{where}.share must be a number", source=SOURCE) from None
    if not 0 < share <= 1:
        raise Invalid(f"{where}.share must be in (0, 1]", source=SOURCE)
    features = raw.get("features") or {}
    if not isinstance(features, dict):
        raise Invalid(f"{where}.features must map feature names to {{method, threshold}}", source=SOURCE)
    per = {str(name): _drift_method(f or {}, f"{where}.features.{name}", method) for name, f in features.items()}
    return DriftPolicy(method=method, threshold=threshold, share=share, features=per)


def evaluate_offline(gates: tuple[OfflineGate, ...], candidate: dict[str, float],
                     champion: dict[str, float] | None) -> list[GateResult]:
    """Pure: compare the candidate's offline metrics with the champion's."""
    out = []
    for g in gates:
        cand = candidate.get(g.metric)
        base = (champion or {}).get(g.metric)
        name = f"{g.metric} ({g.direction} is better)"
        if cand is None or (isinstance(cand, float) and math.isnan(cand)):
            out.append(GateResult(name, "offline", False, None, base, None,
                                  f"candidate has no metric {g.metric!r}"))
            continue
        problems = []
        threshold = None
        if base is not None:
            if g.direction == "higher":
                threshold = base - g.max_regression
                if cand < threshold:
                    problems.append(f"{cand:.4f} < champion {base:.4f} − {g.max_regression:g}")
            else:
                threshold = base + g.max_regression
                if cand > threshold:
                    problems.append(f"{cand:.4f} > champion {base:.4f} + {g.max_regression:g}")
        if g.min_value is not None:
            bad = cand < g.min_value if g.direction == "higher" else cand > g.min_value
            if bad:
                word = "floor" if g.direction == "higher" else "ceiling"
                problems.append(f"{cand:.4f} beyond the {word} {g.min_value:g}")
        if problems:
            out.append(GateResult(name, "offline", False, cand, base, threshold, "; ".join(problems)))
        else:
            worse = base is not None and (cand < base if g.direction == "higher" else cand > base)
            if base is None:
                detail = f"{cand:.4f}; no champion to compare with"
            elif worse:
                detail = (f"{cand:.4f} is worse than champion {base:.4f} by {abs(cand - base):.4f}, within the "
                          f"tolerance {g.max_regression:g}")
            else:
                detail = f"{cand:.4f} vs champion {base:.4f} (tolerance {g.max_regression:g})"
            out.append(GateResult(name, "offline", True, cand, base, threshold, detail, worse=worse))
    return out


def evaluate_live(gates: tuple[LiveGate, ...], values: dict[str, float | LiveEvidence | None]
                  ) -> list[GateResult]:
    """Pure: live evidence per metric (a number, a :class:`LiveEvidence`, or None when the source has no data)
    against each gate's bounds, the stable version's value and the test's p-value."""
    return [_live(g, _evidence(values.get(g.metric))) for g in gates]


def _evidence(v) -> LiveEvidence:
    if isinstance(v, LiveEvidence):
        return v
    return LiveEvidence(None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v))


def _live(g: LiveGate, ev: LiveEvidence) -> GateResult:
    name, v = g.name, ev.value

    def missing(why: str) -> GateResult:
        return GateResult(name, "live", g.on_missing == "pass", v, ev.baseline, g.max_value,
                          f"{why} (on_missing: {g.on_missing})")

    if v is None or ev.samples == 0:
        return missing(f"no live data for {g.metric}")
    if g.min_samples and (ev.samples or 0) < g.min_samples:
        return GateResult(name, "live", False, v, ev.baseline, g.max_value,
                          f"only {ev.samples or 0:g} requests, needs ≥ {g.min_samples} before judging")
    problems, notes, threshold = [], [f"{v:.4g}"], g.max_value
    if g.max_value is not None:
        bad = v > g.max_value
        (problems if bad else notes).append(f"{v:.4g} {'>' if bad else '≤'} {g.max_value:g}")
    if g.min_value is not None:
        bad = v < g.min_value
        (problems if bad else notes).append(f"{v:.4g} {'<' if bad else '≥'} {g.min_value:g}")
    if g.compare:
        if ev.baseline is None:
            return missing(f"no live data for the {g.compare} version's {g.metric}")
        if g.alpha is not None and ev.p_value is None and g.max_increase is None:
            return missing(f"no significance test for {g.metric}")
        worse = (ev.baseline - v) if g.metric in HIGHER_IS_BETTER else (v - ev.baseline)
        sign = -1 if g.metric in HIGHER_IS_BETTER else 1
        if g.max_increase is not None:
            threshold = ev.baseline + sign * g.max_increase
        over = g.max_increase is None or worse > g.max_increase
        significant = g.alpha is None or (ev.p_value is not None and ev.p_value <= g.alpha and worse > 0)
        p = f", p = {ev.p_value:.3g}" if ev.p_value is not None else ""
        text = f"{v:.4g} vs {g.compare} {ev.baseline:.4g} ({'+' if worse >= 0 else '−'}{abs(worse):.4g} worse{p})"
        (problems if over and significant and worse > 0 else notes).append(text)
    if ev.samples is not None:
        notes.append(f"n = {ev.samples:g}")
    if problems:
        return GateResult(name, "live", False, v, ev.baseline, threshold, "; ".join(problems))
    return GateResult(name, "live", True, v, ev.baseline, threshold, "; ".join(notes[1:] or notes))
