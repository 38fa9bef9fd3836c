"""The policy's ``scaling:`` section: a floor under the maximum replicas a person may set.

::

    defaults:
      scaling:
        floor: true          # refuse a maximum below what the current load needs
        headroom: 1.25       # the need includes this margin over the load measured
        window_minutes: 15   # the load is measured over this window

Parsed here (pure); :mod:`services.actions.scaling` applies it when a ``set_scaling`` lowers the maximum.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.errors import Invalid

SOURCE = "policy"
KEYS = ("floor", "headroom", "window_minutes")


@dataclass(frozen=True)
class ScalingPolicy:
    floor: bool = False
    headroom: float = 1.25
    window_minutes: float = 15.0


def parse_scaling(raw, where: str) -> ScalingPolicy:
    """The section as written (absent: no floor); Invalid naming the key for anything else."""
    if raw is None:
        return ScalingPolicy()
    if not isinstance(raw, dict):
        raise Invalid(f"{where} must be a mapping with {', '.join(KEYS)}", source=SOURCE)
    unknown = sorted(set(raw) - set(KEYS))
    if unknown:
        raise Invalid(f"{where}: unknown key(s) {', '.join(map(str, unknown))} (known: {', '.join(KEYS)})",
                      source=SOURCE)
    floor = raw.get("floor", False)
    if not isinstance(floor, bool):
        raise Invalid(f"{where}.floor must be true or false, got {floor!r}", source=SOURCE)

    def number(key: str, default: float, low: float, high: float) -> float:
        value = raw.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
            raise Invalid(f"{where}.{key} must be a number from {low:g} to {high:g}, got {value!r}", source=SOURCE)
        return float(value)

    return ScalingPolicy(floor, number("headroom", 1.25, 1.0, 10.0), number("window_minutes", 15.0, 1.0, 1440.0))
