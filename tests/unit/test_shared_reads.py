"""dashboard.shared_reads: fresh hits, stale served while ONE background read replaces it, one read for many
waiting sessions, failures never kept, copies per hit, bounds, clear, and windows ending now keyed by length."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from dashboard.shared_reads import clear_all, shared_read, window_key


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock():
    return Clock()


def counting(clock, **kw):
    calls = []

    @shared_read(fresh=10, stale=60, clock=clock, **kw)
    def read(k, n):
        calls.append((k, n))
        return {"k": k, "n": n, "read": len(calls)}

    return read, calls


def test_fresh_hit_reads_once_and_returns_copies(clock):
    read, calls = counting(clock)
    a = read("x", 1)
    a["n"] = "changed by a page"
    clock.t += 9
    b = read("x", 1)
    assert b == {"k": "x", "n": 1, "read": 1} and b is not read("x", 1)
    assert calls == [("x", 1)]
    read("x", 2)
    assert calls == [("x", 1), ("x", 2)]  # another key, another read


def test_stale_is_served_at_once_and_refreshed_once_in_the_background(clock):
    gate, started = threading.Event(), threading.Event()
    n = {"reads": 0}

    @shared_read(fresh=10, stale=60, clock=clock, key=lambda k, arg: k)  # arg: as a window's ends
    def read(k, arg):
        n["reads"] += 1
        if n["reads"] > 1:
            started.set()
            assert gate.wait(10)
        return (arg, n["reads"])

    assert read("k", "first") == ("first", 1)
    clock.t += 11  # stale
    # served the old value at once, while the background read (with THIS call's args) is blocked
    assert [read("k", "second") for _ in range(5)] == [("first", 1)] * 5
    assert started.wait(10)
    assert n["reads"] == 2  # one background read, not five
    gate.set()
    read.settle()
    assert read("k", "third") == ("second", 2)  # the refresh used the args of the call that found it stale


def test_too_old_is_read_in_the_foreground(clock):
    read, calls = counting(clock)
    read("x", 1)
    clock.t += 61
    assert read("x", 1)["read"] == 2
    assert len(calls) == 2


def test_sessions_asking_at_once_share_one_read(clock):
    gate = threading.Event()
    calls = []

    @shared_read(fresh=10, stale=60, clock=clock)
    def read(k):
        calls.append(k)
        assert gate.wait(10)
        return len(calls)

    out = []
    threads = [threading.Thread(target=lambda: out.append(read("k"))) for _ in range(8)]
    for t in threads:
        t.start()
    gate.set()
    for t in threads:
        t.join(10)
    assert out == [1] * 8 and calls == ["k"]


def test_a_failed_read_is_not_kept_and_waiters_see_the_error(clock):
    attempts = []

    @shared_read(fresh=10, stale=60, clock=clock)
    def read(k):
        attempts.append(k)
        if len(attempts) == 1:
            raise ConnectionError("mlflow down")
        return "ok"

    with pytest.raises(ConnectionError, match="mlflow down"):
        read("k")
    assert read("k") == "ok" and len(attempts) == 2


def test_a_failed_background_read_drops_the_entry_so_the_next_run_shows_the_error(clock):
    state = {"down": False}

    @shared_read(fresh=10, stale=60, clock=clock)
    def read(k):
        if state["down"]:
            raise TimeoutError("registry hung")
        return "value"

    assert read("k") == "value"
    clock.t += 11
    state["down"] = True
    assert read("k") == "value"  # stale, served once; its refresh fails
    read.settle()
    with pytest.raises(TimeoutError, match="registry hung"):
        read("k")


def test_entries_are_bounded_least_recently_used_first(clock):
    read, calls = counting(clock, max_entries=3)
    for n in range(3):
        read("x", n)
    read("x", 0)  # used again: now the newest
    read("x", 3)  # evicts ("x", 1)
    calls.clear()
    read("x", 0), read("x", 2), read("x", 3)
    assert calls == []
    read("x", 1)
    assert calls == [("x", 1)]


def test_clear_all_forgets_everything(clock):
    read, calls = counting(clock)
    read("x", 1)
    clear_all()
    read("x", 1)
    assert len(calls) == 2


def test_bad_lifetimes_are_refused():
    with pytest.raises(ValueError, match="fresh <= stale"):
        shared_read(fresh=10, stale=5)(lambda: None)
    with pytest.raises(ValueError):
        shared_read(fresh=0, stale=5)(lambda: None)


def test_window_key_slides_with_now_and_keeps_fixed_windows_apart():
    now = datetime(2026, 11, 27, 12, 0, 7, tzinfo=UTC)
    end = datetime(2026, 11, 27, 12, 0, 10, tzinfo=UTC)  # pages round now up
    assert window_key(end - timedelta(hours=1), end, now) == ("now", timedelta(hours=1))
    later = end + timedelta(seconds=30)
    assert window_key(later - timedelta(hours=1), later, now + timedelta(seconds=30)) == ("now", timedelta(hours=1))
    fixed = (datetime(2026, 11, 26, 9, tzinfo=UTC), datetime(2026, 11, 26, 10, tzinfo=UTC))
    assert window_key(*fixed, now) == fixed
    future = (now, now + timedelta(days=2))  # a custom window ending far ahead: its own ends
    assert window_key(*future, now) == future


def test_keep_warm_rereads_what_people_ask_for_with_the_window_slid_to_now(clock, monkeypatch):
    calls = []

    @shared_read(fresh=10, stale=60, clock=clock, key=lambda k, end: k, slide=lambda args: (args[0], "new now"))
    def read(k, end):
        calls.append(end)
        return end

    monkeypatch.setenv("MLOPS_KEEP_WARM_SECONDS", "300")
    assert read("k", "then") == "then"
    assert read.warm(300) == 0  # fresh: nothing to do
    clock.t += 11
    assert read.warm(300) == 1  # stale and asked for within 300 s: re-read off anyone's path
    read.settle()
    assert calls == ["then", "new now"]
    assert read.warm(300) == 0  # fresh again
    clock.t += 290  # nobody asked for 301 s: no longer kept warm
    assert read.warm(300) == 0
    assert calls == ["then", "new now"]


def test_keep_warm_is_off_at_zero_and_a_bad_setting_falls_back(monkeypatch):
    from dashboard import shared_reads

    monkeypatch.setenv("MLOPS_KEEP_WARM_SECONDS", "0")
    assert shared_reads.keep_warm_seconds() == 0 and shared_reads.warm_all() == 0
    monkeypatch.setenv("MLOPS_KEEP_WARM_SECONDS", "soon")
    assert shared_reads.keep_warm_seconds() == shared_reads.KEEP_WARM_DEFAULT


def test_an_action_forgets_state_but_keeps_telemetry(clock):
    from dashboard.shared_reads import shared_read as sr

    calls = []

    @sr(fresh=10, stale=60, clock=clock)
    def serving(k):
        calls.append(("serving", k))
        return k

    @sr(fresh=10, stale=60, clock=clock, kind="telemetry")
    def traffic(k):
        calls.append(("traffic", k))
        return k

    serving("a"), traffic("a")
    clear_all(("state",))  # after an action
    serving("a"), traffic("a")
    assert calls == [("serving", "a"), ("traffic", "a"), ("serving", "a")]
    clear_all()  # Refresh
    traffic("a")
    assert calls[-1] == ("traffic", "a") and len(calls) == 4
    with pytest.raises(ValueError, match="kind"):
        sr(fresh=1, stale=2, kind="mood")(lambda: None)


def test_a_long_window_stays_fresh_longer_than_a_short_one():
    from dashboard.shared_reads import window_fresh

    hour, day = ("k", "ep", "now", timedelta(hours=1)), ("k", "ep", "now", timedelta(days=1))
    assert window_fresh(hour) == pytest.approx(15.0)
    assert window_fresh(day) == 120.0  # capped
    assert window_fresh(("k", "ep", datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC))) == 300.0


def test_fresh_of_lengthens_freshness_and_the_stale_bound(clock):
    calls = []

    @shared_read(fresh=10, stale=30, clock=clock, fresh_of=lambda key: 100 if key == ("long",) else 0,
                 key=lambda k: (k,))
    def read(k):
        calls.append(k)
        return k

    read("long"), read("short")
    clock.t += 50
    read("long"), read("short")  # long: fresh still; short: too old (> 30 s), read in the foreground
    assert calls == ["long", "short", "short"]
    assert read.lifetimes(("long",)) == (100, 200) and read.lifetimes(("short",)) == (10, 30)
