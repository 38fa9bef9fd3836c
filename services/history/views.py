"""Pure views over the model history for the pages: where each version serves, which versions pass an
endpoint's gates, the activity feed (registrations and champion moves), readable dataset lineage, compare
defaults."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from services.clock import parse_iso
from services.policy import GateResult, OfflineGate, evaluate_offline
from services.registry import CHAMPION, VersionSummary
from services.serving import Endpoint


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
