"""The traffic generator's pure parts: option parsing, shifts, plan limits."""

from __future__ import annotations

import pytest

from services.errors import Invalid
from services.traffic import Plan, parse_pairs, shifted


def test_parse_pairs():
    assert parse_pairs(["mean radius=1.5", "x=-2"], "--shift") == {"mean radius": 1.5, "x": -2.0}
    assert parse_pairs(["4=0.3"], "--errors", numeric_key=True) == {"4": 0.3}
    for bad in (["x"], ["=1"], ["x=abc"], ["x=nan"]):
        with pytest.raises(Invalid, match="--shift takes NAME=NUMBER"):
            parse_pairs(bad, "--shift")
    with pytest.raises(Invalid, match="version number"):
        parse_pairs(["v4=0.3"], "--errors", numeric_key=True)


def test_shift_is_in_reference_standard_deviations():
    row = {"a": 1.0, "b": 2.0}
    assert shifted(row, {"a": 2.0}, {"a": 0.5, "b": 3.0}) == {"a": 2.0, "b": 2.0}
    assert row == {"a": 1.0, "b": 2.0}, "the original row is not changed"
    with pytest.raises(Invalid, match="no feature 'c'"):
        shifted(row, {"c": 1.0}, {})


@pytest.mark.parametrize("kw,word", [
    ({"rps": 0}, "--rps"), ({"rps": 5000}, "--rps"), ({"duration_s": -1}, "--duration"),
    ({"start_trouble_s": -1}, "--from"), ({"errors": {"4": 1.5}}, "--errors"),
    ({"latency_ms": {"4": -5}}, "--latency"), ({"labels_delay_s": -1}, "--labels-delay")])
def test_out_of_range_plans_are_refused(kw, word):
    plan = Plan(**{"endpoint": "e", "rps": 5, "duration_s": 10, **kw})
    with pytest.raises(Invalid, match=word):
        plan.validate()
