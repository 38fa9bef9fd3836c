"""Model history use cases: browse the registry and compare versions.

The ``*_diff`` functions are pure and take plain data, so the pages, the CLI
and the tests share one definition of "what differs".
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from services.clock import parse_iso
from services.errors import Invalid, NotFound
from services.policy import GateResult, OfflineGate, evaluate_offline
from services.registry import CHAMPION, ModelRegistry, ModelSummary, Signature, VersionDetail, VersionSummary
from services.serving import Endpoint

SOURCE = "model history"
LOWER_IS_BETTER = re.compile(r"(loss|error|mae|mse|rmse|mape|latency|time|brier|deviance|wape)", re.I)
MAX_COMPARE = 8


def metric_direction(name: str) -> str:
    """"lower" when a smaller value is better (losses, errors, latency), else "higher"."""
    return "lower" if LOWER_IS_BETTER.search(name) else "higher"


# -- list / detail -------------------------------------------------------------
def list_models(registry: ModelRegistry, search: str = "") -> list[ModelSummary]:
    """All registered models, newest activity first; ``search`` is a plain case-insensitive substring."""
    models = registry.list_models()
    needle = (search or "").strip().casefold()
    if needle:
        models = [m for m in models if needle in m.name.casefold()]
    return sorted(models, key=lambda m: (m.last_updated is None, -(m.last_updated.timestamp() if m.last_updated
                                                                    else 0), m.name.casefold()))


@dataclass(frozen=True)
class ModelView:
    model: ModelSummary
    versions: list[VersionSummary]
    metric_names: list[str]

    @property
    def champion(self) -> str | None:
        return self.model.aliases.get(CHAMPION)


def model_view(registry: ModelRegistry, name: str) -> ModelView:
    model, versions = registry.model_with_versions(name)
    names = sorted({k for v in versions for k in v.metrics})
    return ModelView(model, versions, names)


def parse_compare(text: str | Sequence[str] | None) -> list[str]:
    """"3,5" or ["3","5"] -> ["3","5"]; refuses junk, duplicates and fewer than two."""
    if text is None:
        return []
    items = text.split(",") if isinstance(text, str) else list(text)
    out: list[str] = []
    for item in items:
        s = str(item).strip().lstrip("vV")
        if not s:
            continue
        if not s.isascii() or not s.isdigit() or int(s) < 1:
            raise Invalid(f"compare takes version numbers separated by commas, got {item!r}", source=SOURCE)
        s = str(int(s))
        if s not in out:
            out.append(s)
    if len(out) > MAX_COMPARE:
        raise Invalid(f"compare at most {MAX_COMPARE} versions at once", source=SOURCE)
    return out


def compare_versions(registry: ModelRegistry, name: str, versions: Sequence[str]) -> Comparison:
    if len(versions) < 2:
        raise Invalid("choose at least two versions to compare", source=SOURCE)
    details: dict[str, VersionDetail] = {}
    for v in versions:
        try:
            details[v] = registry.get_version_detail(name, v)
        except NotFound as exc:
            raise NotFound(f"model {name!r} has no version {v}", source=exc.source) from exc
    return Comparison(name, details)


@dataclass(frozen=True)
class Comparison:
    model: str
    details: dict[str, VersionDetail]

    @property
    def versions(self) -> list[str]:
        return list(self.details)

    def params(self, differences_only: bool = False) -> list[dict]:
        return param_diff({v: (d.run.params if d.run else {}) for v, d in self.details.items()}, differences_only)

    def metrics(self, baseline: str | None = None) -> list[dict]:
        return metric_diff({v: (d.run.metrics if d.run else {}) for v, d in self.details.items()}, baseline)

    def signature(self, baseline: str | None = None) -> list[dict]:
        return signature_diff({v: d.signature for v, d in self.details.items()}, baseline)

    def dependencies(self, baseline: str | None = None) -> list[dict]:
        return dependency_diff({v: d.requirements for v, d in self.details.items()}, baseline)

    def tags(self, differences_only: bool = True) -> list[dict]:
        return param_diff({v: _user_tags(d) for v, d in self.details.items()}, differences_only)


def _user_tags(d: VersionDetail) -> dict[str, str]:
    return {k: v for k, v in d.summary.tags.items() if not k.startswith("mlflow.")}


# -- pure diffs ---------------------------------------------------------------------
def param_diff(by_version: Mapping[str, Mapping[str, str]], differences_only: bool = False) -> list[dict]:
    """One row per key: {"key", <version>: value or None, "differs": bool}."""
    keys = sorted({k for d in by_version.values() for k in d})
    rows = []
    for k in keys:
        values = {v: d.get(k) for v, d in by_version.items()}
        differs = len({str(x) for x in values.values()}) > 1
        if differences_only and not differs:
            continue
        rows.append({"key": k, **values, "differs": differs})
    return rows


def metric_diff(by_version: Mapping[str, Mapping[str, float]], baseline: str | None = None) -> list[dict]:
    """Rows per metric with each version's value and its delta against the baseline
    (``baseline`` when it is one of the versions, else the first version).

    ``better``: per version, True/False/None whether it beats the baseline in
    the metric's direction.
    """
    versions = list(by_version)
    base_v = pick_baseline(versions, baseline)
    keys = sorted({k for d in by_version.values() for k in d})
    rows = []
    for k in keys:
        direction = metric_direction(k)
        base = by_version[base_v].get(k) if base_v else None
        row: dict = {"metric": k, "direction": direction, "values": {}, "deltas": {}, "better": {}}
        for v in versions:
            val = by_version[v].get(k)
            row["values"][v] = val
            if val is None or base is None or v == base_v:
                row["deltas"][v] = None
                row["better"][v] = None
                continue
            delta = val - base
            row["deltas"][v] = delta
            row["better"][v] = None if delta == 0 else ((delta > 0) == (direction == "higher"))
        rows.append(row)
    return rows


def _status(base, others: list, changed: str) -> str:
    """same | added (not in the baseline) | removed (gone where it differs) | ``changed``."""
    if all(x == base for x in others):
        return "same"
    if base is None:
        return "added"
    if all(x is None or x == base for x in others):
        return "removed"
    return changed


def signature_diff(by_version: Mapping[str, Signature | None], baseline: str | None = None) -> list[dict]:
    """Rows per (section, column): type per version and a status.

    status: same | added | removed | type changed, relative to ``baseline`` (default: the first version).
    """
    versions = list(by_version)
    base_v = pick_baseline(versions, baseline)
    others = [v for v in versions if v != base_v]
    rows = []
    for section in ("inputs", "outputs", "params"):
        cols: list[str] = []
        per: dict[str, dict[str, str]] = {}
        for v in versions:
            sig = by_version[v]
            items = getattr(sig, section) if sig else ()
            per[v] = dict(items)
            for name, _t in items:
                if name not in cols:
                    cols.append(name)
        for c in cols:
            types = {v: per[v].get(c) for v in versions}
            status = _status(types[base_v], [types[v] for v in others], "type changed")
            rows.append({"section": section, "column": c, **types, "status": status})
    return rows


_REQ = re.compile(r"^\s*([A-Za-z0-9_.\-\[\]]+)\s*(.*)$")


def _parse_requirement(line: str) -> tuple[str, str]:
    m = _REQ.match(line)
    if not m:
        return line.strip(), ""
    name = re.sub(r"\[.*\]", "", m.group(1)).lower().replace("_", "-")
    return name, m.group(2).strip()


def dependency_diff(by_version: Mapping[str, Sequence[str]], baseline: str | None = None) -> list[dict]:
    """Rows per package: its specifier per version and added/removed/changed/same
    relative to ``baseline`` (default: the first version)."""
    versions = list(by_version)
    base_v = pick_baseline(versions, baseline)
    others = [v for v in versions if v != base_v]
    parsed = {v: dict(_parse_requirement(r) for r in reqs) for v, reqs in by_version.items()}
    names = sorted({n for d in parsed.values() for n in d})
    rows = []
    for n in names:
        specs = {v: parsed[v].get(n) for v in versions}
        status = _status(specs[base_v], [specs[v] for v in others], "changed")
        rows.append({"package": n, **specs, "status": status})
    return rows


def recent_activity(registry: ModelRegistry, limit: int = 10) -> list[VersionSummary]:
    return registry.recent_versions(limit)


# -- where versions serve, which pass the policy's gates, what happened lately (pure) -------------------------------
@dataclass(frozen=True)
class ServingSlot:
    """One place a version serves: an endpoint, as stable or canary, with its share of traffic."""

    endpoint: str
    role: str  # stable | canary
    weight: int

    def __str__(self) -> str:
        return f"{self.endpoint}: {self.role} {self.weight}%"


def serving_slots(endpoints: Iterable[Endpoint], model: str) -> dict[str, list[ServingSlot]]:
    """version -> where it serves, for the endpoints that serve ``model`` (endpoints in the given order)."""
    out: dict[str, list[ServingSlot]] = {}
    for ep in endpoints:
        if ep.model != model:
            continue
        if ep.stable_version:
            out.setdefault(str(ep.stable_version), []).append(ServingSlot(ep.name, "stable", ep.stable_weight))
        if ep.canary_version:
            out.setdefault(str(ep.canary_version), []).append(ServingSlot(ep.name, "canary", ep.canary_weight))
    return out


def gate_rule(gate: OfflineGate) -> str:
    """The gate as a rule a person reads: ``roc_auc ≥ champion − 0.05``, ``rmse ≤ champion + 10 and ≤ 60``."""
    op, sign = ("≥", "−") if gate.direction == "higher" else ("≤", "+")
    rule = f"{gate.metric} {op} champion" + (f" {sign} {gate.max_regression:g}" if gate.max_regression else "")
    if gate.min_value is not None:
        rule += f" and {op} {gate.min_value:g}"
    return rule


def gate_verdicts(gates: Sequence[OfflineGate], metrics_by_version: Mapping[str, Mapping[str, float]],
                  champion: str | None) -> dict[str, list[GateResult]]:
    """Each version's offline-gate results against ``champion``'s metrics, as a promotion would evaluate them.

    Like the actions use case, the champion is not compared with itself (its baseline is empty), and a
    champion missing from ``metrics_by_version`` leaves every version without a baseline.
    """
    champ = metrics_by_version.get(champion) if champion else None
    return {v: evaluate_offline(tuple(gates), dict(m), dict(champ) if champ is not None and v != champion else None)
            for v, m in metrics_by_version.items()}


def verdict_label(results: Sequence[GateResult], gates: Sequence[OfflineGate] = ()) -> str:
    """"pass", "FAIL: accuracy, roc_auc" (the failing gates' metrics), or "—" when no gate applies."""
    if not results:
        return "—"
    failing = []
    for i, r in enumerate(results):
        if r.passed is False:
            failing.append(gates[i].metric if i < len(gates) else r.name.split(" (", 1)[0])
    return f"FAIL: {', '.join(failing)}" if failing else "pass"


@dataclass(frozen=True)
class Activity:
    """One line of recent activity: a version registered, or the champion alias moved by the console."""

    when: datetime | None
    kind: str  # registered | alias
    model: str | None
    version: str | None
    text: str
    actor: str = ""
    endpoint: str = ""
    action: str = ""


def alias_moves(audit_entries: Iterable, endpoint_models: Mapping[str, str] | None = None) -> list[Activity]:
    """The champion moves the console made: audit entries with result ``ok`` whose champion changed."""
    out = []
    for e in audit_entries:
        before, after = getattr(e, "before", None), getattr(e, "after", None)
        if getattr(e, "result", None) != "ok" or not isinstance(before, dict) or not isinstance(after, dict):
            continue
        old, new = before.get("champion"), after.get("champion")
        if old == new or new is None:
            continue
        try:
            when = parse_iso(e.ts)
        except (TypeError, ValueError):
            when = None
        details = e.details if isinstance(e.details, dict) else {}
        action = e.action.replace("_", " ")
        if details.get("request_action"):
            action = f"{details['request_action'].replace('_', ' ')}, approved"
        model = details.get("model") or (endpoint_models or {}).get(e.target)
        text = f"@{CHAMPION} {f'v{old}' if old else '(none)'} → v{new}, by {e.actor}"
        out.append(Activity(when, "alias", model, str(new), text, e.actor, e.target, action))
    return out


def activity_feed(versions: Iterable[VersionSummary], audit_entries: Iterable = (),
                  endpoint_models: Mapping[str, str] | None = None, limit: int | None = None) -> list[Activity]:
    """Version registrations and the console's champion moves, newest first (undated last).

    MLflow does not timestamp alias moves; the audit trail does, for every move the console made.
    ``endpoint_models`` names the model an endpoint serves (audit entries name the endpoint only).
    """
    items = [Activity(v.created or v.last_updated, "registered", v.model, v.version, "registered")
             for v in versions]
    items += alias_moves(audit_entries, endpoint_models)
    items.sort(key=lambda a: (a.when is None, -(a.when.timestamp() if a.when else 0)))
    return items[:limit] if limit else items


def dataset_source(source_type: str, source: str) -> str:
    """A dataset's MLflow source (a JSON document) as text: its URI or path, else its tags, else as given."""
    text = (source or "").strip()
    if not text:
        return ""
    try:
        doc = json.loads(text)
    except ValueError:
        return text
    if not isinstance(doc, dict):
        return text
    for k in ("uri", "url", "path", "file", "location", "table_name", "hf_dataset_name", "dataset_name"):
        if doc.get(k):
            return str(doc[k])
    tags = doc.get("tags")
    if isinstance(tags, dict) and tags:
        return ", ".join(f"{k}={v}" for k, v in tags.items())
    return ", ".join(f"{k}={v}" for k, v in doc.items()) or text


def dataset_shape(schema: str, profile: str) -> str:
    """``426 rows × 32 columns`` from MLflow's schema and profile documents, as far as they tell."""
    parts = []
    try:
        rows = json.loads(profile or "null")
        if isinstance(rows, dict) and rows.get("num_rows") is not None:
            parts.append(f"{int(rows['num_rows']):,} rows")
    except (TypeError, ValueError):
        pass
    try:
        doc = json.loads(schema or "null")
        cols = doc.get("mlflow_colspec") or doc.get("mlflow_tensorspec") if isinstance(doc, dict) else None
        if isinstance(cols, list):
            parts.append(f"{len(cols)} columns")
    except (TypeError, ValueError, AttributeError):
        pass
    return " × ".join(parts)


def default_compare(versions: Iterable[VersionSummary], champion: str | None) -> list[str]:
    """What the compare picker starts with: the champion and the newest version (champion first, as the
    baseline); the two newest when there is no champion or the champion is the newest."""
    ordered = sorted(versions, key=lambda v: v.version_int, reverse=True)
    newest = [v.version for v in ordered]
    if champion in newest and newest and newest[0] != champion:
        return [champion, newest[0]]
    return newest[:2]


def pick_baseline(versions: Sequence[str], wanted: str | None) -> str | None:
    """The baseline of a comparison: ``wanted`` when it is one of the versions, else the first."""
    w = str(wanted).strip().lstrip("vV") if wanted is not None else ""
    return w if w in versions else (versions[0] if versions else None)


_STATED_GATE = re.compile(r"^\s*(quality|promotion|acceptance)\s+gates?\s*:", re.I)


def split_stated_gate(description: str) -> tuple[str, list[str]]:
    """A description without the lines that state a gate of their own ("Quality gate: …"), and those lines.

    Such a line is the authors' note, not what the console checks (that is the policy's offline gates), so
    pages show it as such instead of as the model's gate.
    """
    keep, stated = [], []
    for line in (description or "").splitlines():
        (stated if _STATED_GATE.match(line) else keep).append(line)
    return "\n".join(keep).strip(), [s.strip() for s in stated]


# The serving-history port lives beside the model history (what served where, and when): see .serving.
from services.history.serving import ServedState, ServingHistory  # noqa: E402,F401
