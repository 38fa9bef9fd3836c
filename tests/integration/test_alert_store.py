"""The alert store on SQLite and PostgreSQL: firing is idempotent (also from two threads at once: one firing
alert), resolving closes it and the next firing opens a new one, window queries return the alerts active in
[start, end) newest first, acknowledging twice keeps the first. The in-memory fake is held to the same tests."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from services.alerts import AlertRule
from services.alerts.sql import SqlAlertStore
from services.errors import Invalid, NotFound
from services.store.db import make_engine
from tests.fakes import FakeAlertStore

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
RULE = AlertRule(name="canary-errors", metric="error_rate", window=timedelta(minutes=1), above=0.1, role="canary",
                 severity="page")
OTHER = AlertRule(name="p95", metric="p95_latency_ms", window=timedelta(minutes=5), above=500, severity="ticket")


@pytest.fixture
def engine(database_url):
    eng = make_engine(database_url)
    yield eng
    eng.dispose()


@pytest.fixture(params=["sql", "fake"])
def store(request, database_url):
    if request.param == "fake":
        yield FakeAlertStore()
        return
    eng = make_engine(database_url)
    yield SqlAlertStore(eng)
    eng.dispose()


def test_fire_is_idempotent_per_endpoint_and_rule(store):
    a = store.fire("ep", RULE, T0, 0.31, "canary error rate 31%")
    assert (a.state, a.started_at, a.value, a.last_value, a.severity, a.source) == ("firing", T0, 0.31, 0.31,
                                                                                    "page", "console")
    again = store.fire("ep", RULE, T0 + timedelta(seconds=15), 0.42, "canary error rate 42%")
    assert again.id == a.id and again.started_at == T0 and again.value == 0.31 and again.last_value == 0.42
    assert again.summary == "canary error rate 42%"
    other_ep = store.fire("ep2", RULE, T0, 0.2, "x")
    other_rule = store.fire("ep", OTHER, T0, 900.0, "y")
    assert len({a.id, other_ep.id, other_rule.id}) == 3
    firing = store.alerts(state="firing")
    assert sorted((x.endpoint, x.rule) for x in firing) == [("ep", "canary-errors"), ("ep", "p95"),
                                                            ("ep2", "canary-errors")]
    assert store.get(a.id).last_value == 0.42


def test_resolve_closes_it_and_a_later_firing_opens_a_new_alert(store):
    a = store.fire("ep", RULE, T0, 0.3, "s")
    assert store.resolve("ep", "nope", T0) is None
    r = store.resolve("ep", RULE.name, T0 + timedelta(minutes=3))
    assert (r.id, r.state, r.resolved_at, r.firing) == (a.id, "resolved", T0 + timedelta(minutes=3), False)
    assert store.resolve("ep", RULE.name, T0 + timedelta(minutes=4)) is None, "nothing firing any more"
    b = store.fire("ep", RULE, T0 + timedelta(minutes=10), 0.5, "again")
    assert b.id != a.id and b.state == "firing"
    assert [(x.id, x.state) for x in store.alerts(endpoint="ep")] == [(b.id, "firing"), (a.id, "resolved")]
    assert [x.id for x in store.alerts(state="resolved")] == [a.id]


def test_window_queries_return_the_alerts_active_in_it_newest_first(store):
    # a: 12:00-12:10, b: 12:20-12:25, c: 12:40- (firing)
    a = store.fire("ep", RULE, T0, 1, "a")
    store.resolve("ep", RULE.name, T0 + timedelta(minutes=10))
    b = store.fire("ep", RULE, T0 + timedelta(minutes=20), 2, "b")
    store.resolve("ep", RULE.name, T0 + timedelta(minutes=25))
    c = store.fire("ep", RULE, T0 + timedelta(minutes=40), 3, "c")

    def ids(**kw):
        return [x.id for x in store.alerts(endpoint="ep", **kw)]

    m = lambda n: T0 + timedelta(minutes=n)  # noqa: E731
    assert ids() == [c.id, b.id, a.id]
    assert ids(start=m(5), end=m(21)) == [b.id, a.id]
    assert ids(start=m(10), end=m(20)) == [a.id], "resolved at the window's start: still active at that moment"
    assert ids(start=m(11), end=m(20)) == [], "end is exclusive: b starts at 12:20"
    assert ids(start=m(26), end=m(39)) == []
    assert ids(start=m(100)) == [c.id], "a firing alert is active at any later moment"
    assert ids(end=m(1)) == [a.id]
    assert ids(limit=2) == [c.id, b.id]
    assert ids(state="firing", start=m(0)) == [c.id]
    assert store.alerts(endpoint="elsewhere") == []


def test_acknowledging_twice_keeps_the_first(store):
    a = store.fire("ep", RULE, T0, 0.3, "s")
    ack = store.acknowledge(a.id, "alice", T0 + timedelta(minutes=1))
    assert (ack.acknowledged_by, ack.acknowledged_at) == ("alice", T0 + timedelta(minutes=1))
    again = store.acknowledge(a.id, "bob", T0 + timedelta(minutes=2))
    assert (again.acknowledged_by, again.acknowledged_at) == ("alice", T0 + timedelta(minutes=1))
    assert store.get(a.id).acknowledged_by == "alice"
    resolved = store.resolve("ep", RULE.name, T0 + timedelta(minutes=5))
    assert resolved.acknowledged_by == "alice", "resolving keeps who acknowledged it"
    for bad in ("999", "abc", "", "am:123"):
        with pytest.raises(NotFound):
            store.acknowledge(bad, "alice", T0)
        assert store.get(bad) is None


def test_a_bad_state_is_refused(engine):
    with pytest.raises(Invalid, match="firing or resolved"):
        SqlAlertStore(engine).alerts(state="open")


def test_two_threads_firing_at_once_make_one_firing_alert(engine):
    """Many rounds of two evaluators firing the same rule at the same moment: always one firing alert, and
    both get it back."""
    stores = [SqlAlertStore(engine), SqlAlertStore(engine)]

    def fire(s, endpoint, v, barrier, got, errors):
        try:
            barrier.wait(10)
            got.append(s.fire(endpoint, RULE, T0, v, f"value {v}"))
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    for round_ in range(15):
        endpoint = f"ep{round_}"
        barrier = threading.Barrier(2)
        got, errors = [], []
        threads = [threading.Thread(target=fire, args=(s, endpoint, float(i), barrier, got, errors))
                   for i, s in enumerate(stores)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert errors == []
        assert len(got) == 2 and got[0].id == got[1].id, f"round {round_}: {got}"
        rows = stores[0].alerts(endpoint=endpoint)
        assert len(rows) == 1 and rows[0].state == "firing" and rows[0].last_value in (0.0, 1.0)


def test_the_database_itself_refuses_a_second_firing_row(engine):
    """The unique key, not only the adapter's read-then-insert, keeps one firing alert per endpoint and rule."""
    import sqlalchemy as sa

    from services.store.db import alerts, writing

    SqlAlertStore(engine).fire("ep", RULE, T0, 1.0, "s")
    row = {"endpoint": "ep", "rule": RULE.name, "severity": "page", "state": "firing", "firing": 1,
           "started_at": "2026-11-26T12:01:00.000000Z", "summary": ""}
    with pytest.raises(sa.exc.IntegrityError), writing(engine) as conn:
        conn.execute(sa.insert(alerts).values(**row))
    with writing(engine) as conn:  # resolved rows (firing NULL) never conflict
        conn.execute(sa.insert(alerts).values(**{**row, "state": "resolved", "firing": None}))
        conn.execute(sa.insert(alerts).values(**{**row, "state": "resolved", "firing": None}))
    assert len(SqlAlertStore(engine).alerts(endpoint="ep")) == 3
