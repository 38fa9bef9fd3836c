"""Model history use cases: browse the registry and compare versions.

The ``*_diff`` functions are pure and take plain data, so the pages, the CLI
and the tests share one definition of "what differs".
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from services.errors import Invalid, NotFound
from services.registry import CHAMPION, ModelRegistry, ModelSummary, Signature, VersionDetail, VersionSummary

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

    def metrics(self) -> list[dict]:
        return metric_diff({v: (d.run.metrics if d.run else {}) for v, d in self.details.items()})

    def signature(self) -> list[dict]:
        return signature_diff({v: d.signature for v, d in self.details.items()})

    def dependencies(self) -> list[dict]:
        return dependency_diff({v: d.requirements for v, d in self.details.items()})

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


def metric_diff(by_version: Mapping[str, Mapping[str, float]]) -> list[dict]:
    """Rows per metric with each version's value and its delta against the first version.

    ``better``: per version, True/False/None whether it beats the baseline in
    the metric's direction.
    """
    versions = list(by_version)
    base_v = versions[0] if versions else None
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


def signature_diff(by_version: Mapping[str, Signature | None]) -> list[dict]:
    """Rows per (section, column): type per version and a status.

    status: same | added | removed | type changed (first version is the baseline).
    """
    versions = list(by_version)
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
            status = _status(types[versions[0]], [types[v] for v in versions[1:]], "type changed")
            rows.append({"section": section, "column": c, **types, "status": status})
    return rows


_REQ = re.compile(r"^\s*([A-Za-z0-9_.\-\[\]]+)\s*(.*)$")


def _parse_requirement(line: str) -> tuple[str, str]:
    m = _REQ.match(line)
    if not m:
        return line.strip(), ""
    name = re.sub(r"\[.*\]", "", m.group(1)).lower().replace("_", "-")
    return name, m.group(2).strip()


def dependency_diff(by_version: Mapping[str, Sequence[str]]) -> list[dict]:
    """Rows per package: its specifier per version and added/removed/changed/same
    relative to the first version."""
    versions = list(by_version)
    parsed = {v: dict(_parse_requirement(r) for r in reqs) for v, reqs in by_version.items()}
    names = sorted({n for d in parsed.values() for n in d})
    rows = []
    for n in names:
        specs = {v: parsed[v].get(n) for v in versions}
        status = _status(specs[versions[0]], [specs[v] for v in versions[1:]], "changed")
        rows.append({"package": n, **specs, "status": status})
    return rows


def recent_activity(registry: ModelRegistry, limit: int = 10) -> list[VersionSummary]:
    return registry.recent_versions(limit)
