"""Model history use cases: browse the registry and compare versions.

The use cases are here; the pure diffs are in :mod:`.diffs`, the pure views the pages use in
:mod:`.views`, and the serving-history port (what served where, and when) in :mod:`.serving`. Everything
is re-exported here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from services.errors import Invalid, NotFound
from services.history.diffs import (
    LOWER_IS_BETTER,
    dependency_diff,
    metric_diff,
    metric_direction,
    param_diff,
    pick_baseline,
    signature_diff,
)
from services.history.serving import ServedState, ServingHistory
from services.history.views import (
    Activity,
    ServingSlot,
    activity_feed,
    alias_moves,
    dataset_shape,
    dataset_source,
    default_compare,
    gate_rule,
    gate_verdicts,
    serving_slots,
    split_stated_gate,
    verdict_label,
)
from services.registry import CHAMPION, ModelRegistry, ModelSummary, VersionDetail, VersionSummary

SOURCE = "model history"
MAX_COMPARE = 8

__all__ = ["LOWER_IS_BETTER", "MAX_COMPARE", "Activity", "Comparison", "ModelView", "ServedState", "ServingHistory",
           "ServingSlot", "activity_feed", "alias_moves", "compare_versions", "dataset_shape", "dataset_source",
           "default_compare", "dependency_diff", "gate_rule", "gate_verdicts", "list_models", "metric_diff",
           "metric_direction", "model_view", "param_diff", "parse_compare", "pick_baseline", "recent_activity",
           "serving_slots", "signature_diff", "split_stated_gate", "verdict_label"]


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
def recent_activity(registry: ModelRegistry, limit: int = 10) -> list[VersionSummary]:
    return registry.recent_versions(limit)


# -- where versions serve, which pass the policy's gates, what happened lately (pure) -------------------------------
