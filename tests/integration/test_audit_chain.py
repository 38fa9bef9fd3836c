"""Tamper evidence of the audit trail on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import delete, select, update

from services.audit.sql import SqlAuditTrail
from services.store.db import audit_log, make_engine


@pytest.fixture
def audit(database_url):
    engine = make_engine(database_url)
    log = SqlAuditTrail(engine)
    for i in range(1, 7):
        log.append(actor="alice", action="set_canary_weight", target="ep", result="ok", reason=f"step {i}",
                   before={"canary_weight": i}, after={"canary_weight": i + 1}, gates=[], details={"i": i})
    assert log.verify().ok
    yield log
    engine.dispose()


def test_intact_chain_verifies(audit):
    res = audit.verify()
    assert res.ok and res.entries == 6 and res.first_bad_seq is None
    assert [e.seq for e in audit.entries()] == [6, 5, 4, 3, 2, 1]
    e = audit.entries(limit=1)[0]
    assert e.before == {"canary_weight": 6} and e.details == {"i": 6}


def test_edited_row_is_named(audit):
    with audit.engine.begin() as conn:
        conn.execute(update(audit_log).where(audit_log.c.seq == 3).values(reason="nothing to see"))
    res = audit.verify()
    assert not res.ok and res.first_bad_seq == 3 and "altered" in res.problem


def test_edit_with_recomputed_own_hash_still_breaks_the_next_link(audit):
    from services.audit import entry_hash

    with audit.engine.begin() as conn:
        row = dict(conn.execute(select(audit_log).where(audit_log.c.seq == 3)).mappings().one())
        row["actor"] = "mallory"
        new_hash = entry_hash(row["prev_hash"], row)
        conn.execute(update(audit_log).where(audit_log.c.seq == 3).values(actor="mallory", hash=new_hash))
    res = audit.verify()
    assert not res.ok and res.first_bad_seq == 4 and "previous-hash" in res.problem


def test_deleted_row_is_named(audit):
    with audit.engine.begin() as conn:
        conn.execute(delete(audit_log).where(audit_log.c.seq == 4))
    res = audit.verify()
    assert not res.ok and res.first_bad_seq == 4 and "missing" in res.problem


def test_deleted_last_row_is_not_detectable_by_links_alone_but_count_is(audit):
    # Truncating the tail keeps a valid chain; the head hash changes, which is what operators anchor.
    head = audit.verify().head_hash
    with audit.engine.begin() as conn:
        conn.execute(delete(audit_log).where(audit_log.c.seq == 6))
    res = audit.verify()
    assert res.ok and res.entries == 5 and res.head_hash != head


def test_reordered_rows_are_named(audit):
    cols = [c.name for c in audit_log.columns if c.name != "seq"]
    with audit.engine.begin() as conn:
        r2 = dict(conn.execute(select(audit_log).where(audit_log.c.seq == 2)).mappings().one())
        r3 = dict(conn.execute(select(audit_log).where(audit_log.c.seq == 3)).mappings().one())
        conn.execute(update(audit_log).where(audit_log.c.seq == 2).values(**{c: r3[c] for c in cols}))
        conn.execute(update(audit_log).where(audit_log.c.seq == 3).values(**{c: r2[c] for c in cols}))
    res = audit.verify()
    assert not res.ok and res.first_bad_seq == 2


def test_filters(audit):
    audit.append(actor="bob", action="approve", target="other-ep", result="refused", error="nope")
    assert [e.actor for e in audit.entries(actor="bob")] == ["bob"]
    assert len(audit.entries(action="set_canary_weight")) == 6
    assert [e.target for e in audit.entries(target_contains="other")] == ["other-ep"]
    assert [e.result for e in audit.entries(result="refused")] == ["refused"]
    assert audit.count() == 7 and audit.verify().ok


def test_unicode_and_quotes_round_trip(audit):
    e = audit.append(actor="alice", action="rollback", target="ep 'ü' \"x\" %_", result="ok",
                     reason="Grund: Überlauf — ‘quotes’ \" '", details={"emoji": "🚀"})
    got = audit.entries(limit=1)[0]
    assert got.reason == e.reason and got.target == e.target and got.details == {"emoji": "🚀"}
    assert audit.verify().ok


def test_a_real_failure_is_not_retried_and_keeps_its_cause(audit):
    from services.errors import Unavailable

    with pytest.raises(Unavailable) as info:
        audit.append(actor=None, action="x", target="t", result="ok")  # NOT NULL violation: not a race
    assert info.value.detail and "null" in info.value.detail.lower()
    assert audit.count() == 6 and audit.verify().ok


def test_verify_continues_from_a_verified_prefix(audit):
    prefix = audit.verify()
    for i in range(3):
        audit.append(actor="bob", action="approve", target="ep", result="ok", reason=f"later {i}")
    more = audit.verify(start=prefix)
    assert more.ok and more.entries == 9 and more.head_hash == audit.verify().head_hash
    # an entry appended after the prefix is checked ...
    with audit.engine.begin() as conn:
        conn.execute(update(audit_log).where(audit_log.c.seq == 8).values(reason="edited"))
    res = audit.verify(start=prefix)
    assert not res.ok and res.first_bad_seq == 8
    # ... and a prefix whose head no longer carries the hash it had is not trusted: full check
    with audit.engine.begin() as conn:
        conn.execute(update(audit_log).where(audit_log.c.seq == 8).values(reason="later 1"))
        conn.execute(update(audit_log).where(audit_log.c.seq == 6).values(hash="0" * 64))
    res = audit.verify(start=prefix)
    assert not res.ok and res.first_bad_seq == 6
