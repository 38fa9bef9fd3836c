"""What an audit entry is about (model, versions), and the time bounds the audit filters compare with."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from services.audit import AuditEntry, entry_subjects, time_bound
from services.clock import iso
from services.errors import Invalid


def entry(before=None, after=None, details=None) -> AuditEntry:
    return AuditEntry(seq=1, ts="2026-11-26T12:00:00.000000Z", actor="alice", action="rollback", target="ep",
                      result="ok", reason="", error="", before=before, after=after, gates=[], details=details,
                      prev_hash="0" * 64, hash="f" * 64)


def state(stable, canary=None, champion=None, weight=0):
    return {"stable_version": stable, "canary_version": canary, "canary_weight": weight, "champion": champion,
            "resource_version": "7"}


def test_new_entries_say_what_they_are_about():
    e = entry(before=state("1", "2"), after=state("2"), details={"model": "fraud", "versions": ["2", 3]})
    # the explicit list wins: versions of before/after are not added to it
    assert entry_subjects(e) == ("fraud", {"2", "3"})


def test_explicit_null_model_and_empty_versions_match_nothing():
    assert entry_subjects(entry(before=state("1"), details={"model": None, "versions": []})) == (None, set())


def test_older_entries_derive_versions_from_states_and_params():
    e = entry(before=state("1", "2", champion="1", weight=20), after=state("2", champion="2"),
              details={"params": {"version": "4", "weight": "60"}, "version": "5", "stage": "plan"})
    model, versions = entry_subjects(e)
    assert model is None  # unknown: such an entry never matches a model filter
    assert versions == {"1", "2", "4", "5"}  # weights (20, 60) and resource versions ("7") are not versions


def test_rollback_without_a_target_version_adds_no_none():
    # the actions code writes str(None) for a rollback to "the previous version"
    e = entry(details={"params": {"to_version": "None"}, "stage": "plan"})
    assert entry_subjects(e) == (None, set())
    e = entry(details={"params": {"to_version": "3"}, "stage": "plan"})
    assert entry_subjects(e) == (None, {"3"})


@pytest.mark.parametrize("details", [None, "free text", ["a"], {}])
def test_entries_without_subjects(details):
    assert entry_subjects(entry(before="garbled", after=None, details=details)) == (None, set())


def test_plain_dicts_work_like_entries():
    d = entry(before=state("3"), details={"model": "m"}).as_dict()
    assert entry_subjects(d) == ("m", {"3"})


def test_time_bounds_are_the_stored_iso_format():
    assert time_bound("2026-11-01") == "2026-11-01T00:00:00.000000Z"
    assert time_bound("2026-11-01", end=True) == "2026-11-01T23:59:59.999999Z"
    assert time_bound(date(2026, 11, 1), end=True) == "2026-11-01T23:59:59.999999Z"
    assert time_bound("2026-11-01T14:30") == "2026-11-01T14:30:00.000000Z"  # no zone: UTC
    assert time_bound("2026-11-01T14:30:05Z") == "2026-11-01T14:30:05.000000Z"
    assert time_bound("2026-11-01T14:30+02:00") == "2026-11-01T12:30:00.000000Z"
    now = datetime(2026, 11, 26, 12, 0, 1, 5, tzinfo=timezone(timedelta(hours=-5)))
    assert time_bound(now) == iso(now)
    assert time_bound(None) is None and time_bound("  ") is None


def test_a_day_bound_includes_the_whole_day_as_text():
    ts = iso(datetime(2026, 11, 1, 23, 59, 59, 999_000, tzinfo=UTC))
    assert time_bound("2026-11-01") <= ts <= time_bound("2026-11-01", end=True)
    assert not ts <= time_bound("2026-10-31", end=True)


def test_years_before_1000_still_sort_as_text():
    assert time_bound("0999-01-01") < time_bound("2026-01-01")


@pytest.mark.parametrize("bad", ["yesterday", "2026-13-01", "2026-11-31", "01/11/2026", "2026-11-01T25:00"])
def test_invalid_times_are_refused_clearly(bad):
    with pytest.raises(Invalid) as exc:
        time_bound(bad, what="--from")
    assert "--from" in exc.value.message and bad in exc.value.message and exc.value.exit_code == 2
