"""Sequential alarms: CUSUM and Page–Hinkley stay quiet on stationary noise within their documented false-alarm
rates, and alarm within a bounded number of points after a step change."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from services.drift.sequential import cusum, page_hinkley
from services.errors import Invalid

WARMUP = 48
DETECTORS = [cusum, page_hinkley]


def series(seed: int, n: int, step_at: int | None = None, step: float = 0.0, loc: float = 10.0, scale: float = 2.0):
    x = np.random.default_rng(seed).normal(loc, scale, n)
    if step_at is not None:
        x[step_at:] += step * scale
    return list(zip(range(n), x.tolist(), strict=True))


@pytest.mark.parametrize(("detector", "documented"), [(cusum, 0.09), (page_hinkley, 0.01)])
def test_stationary_noise_raises_false_alarms_at_most_at_the_documented_rate(detector, documented):
    runs = 200
    alarmed = sum(bool(detector(series(50_000 + s, WARMUP + 720))) for s in range(runs))
    assert alarmed <= stats.binom.ppf(0.999, runs, documented), alarmed


def test_with_known_mean_and_sigma_stationary_noise_gives_no_alarm():
    runs = 200
    alarmed = sum(bool(cusum(series(60_000 + s, WARMUP + 720), sigma=2.0, target=10.0)) for s in range(runs))
    alarmed += sum(bool(page_hinkley(series(60_000 + s, WARMUP + 720), sigma=2.0)) for s in range(runs))
    assert alarmed <= stats.binom.ppf(0.999, 2 * runs, 0.005), alarmed


@pytest.mark.parametrize("detector", DETECTORS)
def test_a_two_sd_step_alarms_within_14_points_in_95_percent_of_series(detector):
    runs, step_at, within = 200, WARMUP + 100, 14
    delays, since_errors = [], []
    for s in range(runs):
        after = [a for a in detector(series(70_000 + s, WARMUP + 300, step_at, 2.0)) if a.index >= step_at]
        if after:
            delays.append(after[0].index - step_at + 1)
            since_errors.append(abs(after[0].since_index - step_at))
            assert after[0].direction == "up"
    detected = sum(d <= within for d in delays)
    assert detected >= stats.binom.ppf(0.001, runs, 0.95), sorted(delays)[-20:]
    assert np.median(since_errors) <= 3  # "since" estimates the start of the change


@pytest.mark.parametrize("detector", DETECTORS)
def test_direction_up_ignores_a_drop_that_down_and_both_catch(detector):
    pts = series(1, WARMUP + 200, WARMUP + 50, -3.0)
    assert detector(pts, direction="up") == []
    down = detector(pts, direction="down")
    both = detector(pts)
    assert down and down[0].direction == "down" and down[0].index >= WARMUP + 50
    assert both[0] == down[0]


@pytest.mark.parametrize("detector", DETECTORS)
def test_after_an_alarm_the_detector_restarts_so_a_step_and_its_return_give_two_alarms(detector):
    pts = series(2, 600, 150, 3.0)
    x = [v for _, v in pts]
    x[400:] = [v - 6.0 for v in x[400:]]  # back to the old level
    alarms = detector(list(enumerate(x)))
    assert [a.direction for a in alarms] == ["up", "down"]
    assert 150 <= alarms[0].index < 150 + 10 and 400 <= alarms[1].index < 400 + 10
    assert alarms[1].mean == pytest.approx(16.0, abs=1.5)  # the new baseline was learnt after the restart


@pytest.mark.parametrize("detector", DETECTORS)
def test_missing_and_infinite_points_are_skipped(detector):
    pts = series(3, WARMUP + 200, WARMUP + 80, 2.5)
    holed = []
    for i, (t, v) in enumerate(pts):
        holed.append((t, v))
        if i % 17 == 0:
            holed.append((t + 0.5, (math.nan, None, math.inf, "n/a")[i % 4]))
    assert [a.time for a in detector(holed)] == [a.time for a in detector(pts)]
    assert detector(pts)


def test_cusum_follows_its_definition_on_a_small_series():
    # S+ = max(0, S+ + (x - 0)/1 - 0.5): 0, 0, 0.5, 2.0, 4.5 -> first above h = 2 at index 4; the run began at 2
    (alarm,) = cusum([("a", 0.0), ("b", 0.0), ("c", 1.0), ("d", 2.0), ("e", 3.0)], k=0.5, h=2.0, warmup=0,
                     sigma=1.0, target=0.0)
    assert (alarm.index, alarm.time, alarm.since, alarm.direction) == (4, "e", "c", "up")
    assert alarm.statistic == pytest.approx(4.5)


@pytest.mark.parametrize("detector", DETECTORS)
def test_a_constant_warm_up_then_any_change_alarms_at_once(detector):
    pts = [(i, 5.0) for i in range(WARMUP)] + [(WARMUP, 5.01), (WARMUP + 1, 5.01)]
    (alarm,) = detector(pts)
    assert alarm.index == WARMUP and math.isfinite(alarm.statistic)


@pytest.mark.parametrize("detector", DETECTORS)
def test_short_series_give_no_alarm(detector):
    assert detector(series(4, WARMUP)) == []
    assert detector([]) == []


def test_bad_parameters_are_invalid():
    pts = series(5, 100)
    with pytest.raises(Invalid, match="direction"):
        cusum(pts, direction="sideways")
    with pytest.raises(Invalid, match="h must"):
        cusum(pts, h=-1)
    with pytest.raises(Invalid, match="threshold must"):
        page_hinkley(pts, threshold=math.nan)
    with pytest.raises(Invalid, match="sigma"):
        page_hinkley(pts, sigma=0.0)
    with pytest.raises(Invalid, match="warm-up"):
        cusum(pts, warmup=1)
    assert cusum(pts, warmup=0, sigma=2.0, target=10.0) == cusum(pts, warmup=0, sigma=2.0, target=10.0)
