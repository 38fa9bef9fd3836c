"""The SQL serving history (``serving_changes``) on SQLite and PostgreSQL: record / changes / served_at at
their boundaries, uncapped, time windows; and the local backend writing it with each of its changes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import event, select

from services.errors import Conflict
from services.history import ServedState
from services.history.sql import SqlServingHistory
from services.serving import Change, VersionRef
from services.serving.local import LocalServingBackend
from services.store.db import make_engine, serving_changes

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
EP = "fraud"


@pytest.fixture
def engine(database_url):
    eng = make_engine(database_url)
    yield eng
    eng.dispose()


@pytest.fixture
def history(engine):
    return SqlServingHistory(engine, backend="kserve")


def state(minutes: float, stable: str | None, canary: str | None = None, weight: int = 0, ep: str = EP, **kw):
    return ServedState(endpoint=ep, at=T0 + timedelta(minutes=minutes), stable_version=stable,
                       canary_version=canary, canary_weight=weight, **kw)


def test_record_and_read_back_every_field(history, engine):
    s = state(0, "1", "2", 20, actor="alice", approved_by="bob", note="req #1: go", source="console")
    history.record(s)
    assert history.changes(EP) == [s]
    with engine.connect() as conn:
        row = conn.execute(select(serving_changes)).mappings().one()
    assert row["at"] == "2026-11-26T12:00:00.000000Z" and row["backend"] == "kserve" and row["source"] == "console"


def test_changes_are_oldest_first_and_windows_are_inclusive(history):
    for m, v in ((10, "2"), (0, "1"), (20, "3"), (30, "4")):  # recorded out of order
        history.record(state(m, v))
    assert [c.stable_version for c in history.changes(EP)] == ["1", "2", "3", "4"]
    assert [c.stable_version for c in history.changes(EP, T0 + timedelta(minutes=10), T0 + timedelta(minutes=20))
            ] == ["2", "3"]
    assert [c.stable_version for c in history.changes(EP, T0 + timedelta(minutes=10, microseconds=1))] == ["3", "4"]
    assert [c.stable_version for c in history.changes(EP, None, T0 + timedelta(minutes=20, microseconds=-1))
            ] == ["1", "2"]
    assert history.changes(EP, T0 + timedelta(minutes=31)) == []
    assert history.changes("other") == []


def test_served_at_boundaries(history):
    history.record(state(0, "1"))
    history.record(state(10, "1", "2", 10))
    history.record(state(20, "2"))
    assert history.served_at(EP, T0 - timedelta(microseconds=1)) is None  # before the first change
    assert history.served_at(EP, T0).stable_version == "1"  # at a change: that change is in force
    assert history.served_at(EP, T0 + timedelta(minutes=10, microseconds=-1)).canary_version is None
    at10 = history.served_at(EP, T0 + timedelta(minutes=10))
    assert (at10.stable_version, at10.canary_version, at10.canary_weight) == ("1", "2", 10)
    assert history.served_at(EP, T0 + timedelta(days=365)).stable_version == "2"
    assert history.served_at("other", T0 + timedelta(days=1)) is None


def test_changes_at_the_same_instant_keep_their_order(history):
    history.record(state(5, "1", note="first"))
    history.record(state(5, "2", note="second"))
    assert [c.note for c in history.changes(EP)] == ["first", "second"]
    assert history.served_at(EP, T0 + timedelta(minutes=5)).note == "second"


def test_uncapped_and_per_endpoint(history):
    for i in range(120):
        history.record(state(i, str(i % 7 + 1)))
        history.record(state(i, "9", ep="other"))
    assert len(history.changes(EP)) == 120 and len(history.changes("other")) == 120
    assert history.served_at(EP, T0 + timedelta(minutes=119, seconds=30)).stable_version == str(119 % 7 + 1)
    assert history.earlier_stable_versions(EP, "1")[:3] == ["7", "6", "5"]  # most recent first, without current


def test_times_in_other_zones_are_stored_in_utc(history):
    plus2 = datetime(2026, 11, 26, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    history.record(ServedState(EP, plus2, "1"))
    assert history.changes(EP)[0].at == T0
    assert history.served_at(EP, T0).stable_version == "1"


def test_served_at_is_one_indexed_query(history, engine):
    for i in range(60):
        history.record(state(i, str(i)))
    statements: list[str] = []
    listener = lambda *a: statements.append(a[2])  # noqa: E731 - (conn, cursor, statement, ...)
    event.listen(engine, "before_cursor_execute", listener)
    try:
        assert history.served_at(EP, T0 + timedelta(minutes=30)).stable_version == "30"
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    queries = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert len(queries) == 1 and "LIMIT" in queries[0].upper()
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:
            plan = " ".join(str(r) for r in conn.exec_driver_sql(
                "EXPLAIN QUERY PLAN SELECT * FROM serving_changes WHERE endpoint = 'fraud' AND at <= 'x' "
                "ORDER BY at DESC, id DESC LIMIT 1"))
        assert "ix_serving_changes_endpoint_at" in plan


# -- the local backend writes the history with its own change --------------------------------------------
def test_local_backend_records_each_change_in_the_same_transaction(engine, history, clock):
    backend = LocalServingBackend(engine, clock=clock)
    assert backend.records_history
    assert backend.ensure_endpoint(EP, "m", "1", canary_version="2", canary_weight=20)
    assert not backend.ensure_endpoint(EP, "m", "3")  # exists: nothing recorded
    clock.advance(minutes=5)
    ep = backend.get_endpoint(EP)
    backend.apply(EP, Change("promote", ep.resource_version), actor="alice", note="req #1", approved_by="bob")
    clock.advance(minutes=5)
    with pytest.raises(Conflict):  # stale: no endpoint change, so no history row either
        backend.apply(EP, Change("set_stable", ep.resource_version, version=VersionRef("m", "1")), actor="carol")
    ep = backend.get_endpoint(EP)
    backend.apply(EP, Change("set_stable", ep.resource_version, version=VersionRef("m", "1")), actor="dana")

    changes = history.changes(EP)
    assert [(c.stable_version, c.canary_version, c.canary_weight, c.actor, c.approved_by, c.source, c.note)
            for c in changes] == [
        ("1", "2", 20, "seed", None, "seed", "endpoint created"),
        ("2", None, 0, "alice", "bob", "backend", "req #1"),
        ("1", None, 0, "dana", None, "backend", "set_stable"),
    ]
    assert [c.at for c in changes] == [clock.now - timedelta(minutes=10), clock.now - timedelta(minutes=5), clock.now]
    # the backend's own revision list agrees, change for change
    revs = list(reversed(backend.get_endpoint(EP).revisions))
    assert [(r.stable_version, r.canary_version, r.at, r.actor) for r in revs] == [
        (c.stable_version, c.canary_version, c.at, c.actor) for c in changes]
    with engine.connect() as conn:
        assert set(conn.execute(select(serving_changes.c.backend)).scalars()) == {"local"}
    assert history.earlier_stable_versions(EP, "1") == ["2"]
