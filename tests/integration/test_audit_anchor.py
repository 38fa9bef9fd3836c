"""Audit anchors outside the console database (issue 11): a cut tail of the audit trail, invisible to the hash
chain alone, is detected against the latest anchor; a rewritten prefix too; a broken chain is never anchored.
SQLite and PostgreSQL, through the real CLI commands."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from sqlalchemy import delete, update

from services.audit.anchor import Anchor, FileAnchors, anchor_now, check
from services.audit.sql import SqlAuditTrail
from services.cli import main
from services.errors import Invalid, PreconditionFailed
from services.store.db import audit_log, make_engine, writing

T = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


@pytest.fixture
def trail(database_url):
    engine = make_engine(database_url)
    audit = SqlAuditTrail(engine)
    for i in range(12):
        audit.append(actor="alice", action="start_canary", target="ep", result="ok", reason=f"r{i}")
    yield audit, engine
    engine.dispose()


def test_a_cut_tail_passes_the_chain_but_not_the_anchor(trail, tmp_path):
    audit, engine = trail
    anchors = FileAnchors(tmp_path / "anchors" / "audit.jsonl")
    assert check(audit, anchors)[2] == "" and check(audit, anchors)[1] is None
    a = anchor_now(audit, anchors, T)
    assert (a.entries, anchors.latest()) == (12, a)
    audit.append(actor="bob", action="approve", target="ep", result="ok")  # growing after an anchor is fine
    res, latest, cut = check(audit, anchors)
    assert res.ok and res.entries == 13 and latest == a and cut == ""
    with writing(engine) as conn:  # someone with database access removes the last five entries
        conn.execute(delete(audit_log).where(audit_log.c.seq > 8))
    res, _, cut = check(audit, anchors)
    assert res.ok, "the chain alone cannot see a cut tail"
    assert "cut" in cut and "saw 12 entries, it now has 8" in cut


def test_a_rewritten_trail_and_a_broken_chain(trail, tmp_path):
    audit, engine = trail
    anchors = FileAnchors(tmp_path / "audit.jsonl")
    a = anchor_now(audit, anchors, T)
    with writing(engine) as conn:  # an edit at the anchored position: the chain breaks there
        conn.execute(update(audit_log).where(audit_log.c.seq == a.entries).values(reason="edited"))
    with pytest.raises(PreconditionFailed, match="broken at entry 12"):
        anchor_now(audit, anchors, T)
    assert len((tmp_path / "audit.jsonl").read_text().splitlines()) == 1, "nothing anchored"
    anchors.write(Anchor(a.entries, "0" * 64, T))  # an anchor whose hash the trail does not carry
    with writing(engine) as conn:
        conn.execute(update(audit_log).where(audit_log.c.seq == a.entries).values(reason="r11"))
    assert "no longer carries the hash" in check(audit, anchors)[2]
    (tmp_path / "bad.jsonl").write_text("{not json\n")
    with pytest.raises(Invalid, match="not readable"):
        FileAnchors(tmp_path / "bad.jsonl").latest()


def test_the_commands(trail, tmp_path, monkeypatch, capsys, database_url):
    from services.composition import build
    from services.settings import Settings

    file = tmp_path / "a.jsonl"
    env = {"MLOPS_DATA_DIR": str(tmp_path), "MLOPS_DATABASE_URL": database_url,
           "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}", "MLOPS_AUDIT_ANCHOR_FILE": str(file)}
    c = build(Settings.from_env(env, secrets_path=tmp_path / "none.toml"))
    try:
        assert main(["verify-audit"], container=c) == 0 and "no anchor yet" in capsys.readouterr().out
        assert main(["anchor-audit", "--json"], container=c) == 0
        assert json.loads(capsys.readouterr().out)["entries"] == 12 and file.exists()
        assert main(["verify-audit"], container=c) == 0 and "holds" in capsys.readouterr().out
        with writing(trail[1]) as conn:
            conn.execute(delete(audit_log).where(audit_log.c.seq == 12))
        assert main(["verify-audit", "--json"], container=c) == 9
        out = json.loads(capsys.readouterr().out)
        assert out["ok"] is True and "cut" in out["cut"] and out["anchor"]["entries"] == 12
    finally:
        c.engine.dispose()
