"""SQLite (WAL): only writing transactions take the write lock. A read (``engine.connect()``) begins
DEFERRED and proceeds while another connection holds an open write transaction; a write
(:func:`services.store.db.writing`) begins IMMEDIATE. Every wait is bounded by a timeout: a read that
queued behind the writer would fail the test instead of hanging it."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import event, func, insert, select

from services.audit.sql import SqlAuditTrail
from services.store.db import audit_log, make_engine, writing

TIMEOUT = 10  # seconds; a reader that waited for the writer would wait busy_timeout (60 s)


@pytest.fixture
def engine(tmp_path):
    eng = make_engine(f"sqlite:///{tmp_path / 'console.db'}")
    yield eng
    eng.dispose()


def _row(seq: int) -> dict:
    return {"seq": seq, "ts": "2026-11-26T12:00:00.000000Z", "actor": "a", "action": "x", "target": "t",
            "result": "ok", "reason": "", "error": "", "before": "null", "after": "null", "gates": "null",
            "details": "null", "prev_hash": "0" * 64, "hash": "f" * 64}


def _count(engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(audit_log)).scalar_one())


def test_a_read_proceeds_while_another_connection_holds_a_write_transaction(engine):
    SqlAuditTrail(engine).append(actor="alice", action="x", target="t", result="ok")
    holding, release = threading.Event(), threading.Event()

    def writer():
        with writing(engine) as conn:
            conn.execute(insert(audit_log).values(**_row(2)))
            holding.set()  # the write lock is held, the insert uncommitted
            assert release.wait(TIMEOUT)

    with ThreadPoolExecutor(2) as pool:
        w = pool.submit(writer)
        assert holding.wait(TIMEOUT)
        try:
            seen = pool.submit(_count, engine).result(timeout=TIMEOUT)  # raises TimeoutError if it queued
            entries = pool.submit(SqlAuditTrail(engine).entries).result(timeout=TIMEOUT)
        finally:
            release.set()
        w.result(timeout=TIMEOUT)
    assert seen == 1 and len(entries) == 1  # the committed state, not the open write
    assert _count(engine) == 2


def test_a_second_writer_waits_for_the_first_and_then_proceeds(engine):
    holding, release = threading.Event(), threading.Event()

    def first():
        with writing(engine) as conn:
            conn.execute(insert(audit_log).values(**_row(1)))
            holding.set()
            assert release.wait(TIMEOUT)

    def second():
        with writing(engine) as conn:  # BEGIN IMMEDIATE waits (busy_timeout) for the first writer
            n = conn.execute(select(func.count()).select_from(audit_log)).scalar_one()
            conn.execute(insert(audit_log).values(**_row(n + 1)))
        return n

    with ThreadPoolExecutor(2) as pool:
        f = pool.submit(first)
        assert holding.wait(TIMEOUT)
        s = pool.submit(second)
        release.set()
        f.result(timeout=TIMEOUT)
        assert s.result(timeout=TIMEOUT) == 1  # it read AFTER the first committed: no lost update
    assert _count(engine) == 2


def test_reads_begin_deferred_and_writes_immediate(engine):
    seen: list[str] = []
    listener = lambda conn, cursor, statement, *a: seen.append(statement)  # noqa: E731
    event.listen(engine, "before_cursor_execute", listener)
    try:
        _count(engine)
        reads = list(seen)
        seen.clear()
        with writing(engine) as conn:
            conn.execute(insert(audit_log).values(**_row(1)))
        writes = list(seen)
        seen.clear()
        with engine.connect() as conn:  # a connection back from the pool is a reader again
            conn.execute(select(audit_log.c.seq)).all()
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    assert reads[0] == "BEGIN" and writes[0] == "BEGIN IMMEDIATE" and seen[0] == "BEGIN"


def test_a_read_transaction_sees_one_snapshot(engine):
    """Reads are real (deferred) transactions: a commit landing in the middle of one is not seen by it."""
    with engine.connect() as reader:
        before = reader.execute(select(func.count()).select_from(audit_log)).scalar_one()
        with ThreadPoolExecutor(1) as pool:
            pool.submit(lambda: _write_one(engine)).result(timeout=TIMEOUT)  # commits while we read
        again = reader.execute(select(func.count()).select_from(audit_log)).scalar_one()
    assert before == again == 0
    assert _count(engine) == 1


def _write_one(engine) -> None:
    with writing(engine) as conn:
        conn.execute(insert(audit_log).values(**_row(1)))
