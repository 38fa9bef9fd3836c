"""The console's memory housekeeping: a full collection on a timer, and its setting."""

from __future__ import annotations

import gc
import threading
import weakref

import pytest

from dashboard import housekeeping


class Node:
    pass


def _cycle() -> weakref.ref:
    """An unreachable reference cycle (only the collector frees it); a weak reference to watch it go."""
    a, b = Node(), Node()
    a.other, b.other = b, a
    return weakref.ref(a)


def test_a_tick_frees_unreachable_cycles():
    gc.disable()  # no automatic collection may free it first
    try:
        gone = _cycle()
        assert gone() is not None  # reference counting alone leaves a cycle alive
        got = housekeeping.tick()
        assert gone() is None
        assert got.collected >= 2 and got.seconds >= 0
    finally:
        gc.enable()


def test_the_timer_collects_on_its_own_and_stops():
    stop, ran = threading.Event(), threading.Event()
    gc.callbacks.append(cb := lambda phase, info: ran.set() if phase == "stop" and info["generation"] == 2 else None)
    gc.disable()  # the only full collections now are the timer's
    try:
        thread = threading.Thread(target=housekeeping._run, args=(0.05, stop), daemon=True)
        thread.start()
        assert ran.wait(10), "no full collection within 10 s of a 0.05 s timer"
        stop.set()
        thread.join(10)
        assert not thread.is_alive()
    finally:
        gc.enable()
        gc.callbacks.remove(cb)


def test_start_runs_one_timer_per_process_and_zero_turns_it_off(monkeypatch):
    monkeypatch.setattr(housekeeping, "_thread", None)
    stop = threading.Event()
    try:
        first = housekeeping.start(3600, stop)
        assert first is not None and first.is_alive() and first.name == "console-housekeeping"
        assert housekeeping.start(3600, stop) is first
    finally:
        stop.set()
    first.join(10)
    monkeypatch.setattr(housekeeping, "_thread", None)
    assert housekeeping.start(0) is None and housekeeping._thread is None


@pytest.mark.parametrize(("raw", "want"), [("", 60.0), ("30", 30.0), (" 0 ", 0.0), ("2.5", 2.5)])
def test_the_setting(monkeypatch, raw, want):
    monkeypatch.setenv(housekeeping.ENV, raw)
    assert housekeeping.interval_seconds() == want


@pytest.mark.parametrize("raw", ["-1", "soon", "inf", "nan", "1e999", "'60'", "６０秒"])
def test_a_bad_setting_is_refused_by_name(monkeypatch, raw):
    monkeypatch.setenv(housekeeping.ENV, raw)
    with pytest.raises(ValueError, match=housekeeping.ENV):
        housekeeping.interval_seconds()
