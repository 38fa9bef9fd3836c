"""Schema migrations on real databases written by the old code (``tests/fixtures/legacy``: see its README):
an old database is recognised, refused until upgraded, upgraded by ``python -m services db upgrade`` with
every row kept and the audit chain intact, its derived audit columns filled as documented, and the app
works on it. Plus: an empty database is created at head (the same schema the migrations build), a newer one
is refused, and the migration chain is what ``services.store.db`` expects. SQLite and PostgreSQL."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from services.audit.sql import SqlAuditTrail
from services.cli import main
from services.composition import build
from services.errors import PreconditionFailed
from services.history.sql import SqlServingHistory
from services.settings import Settings
from services.store import migrations
from services.store.db import HEAD, REVISIONS, make_engine, metadata, writing

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "legacy"
LEGACY = {"1f25ad1": "0001", "f7bddcf": "0002"}  # commit -> the revision its schema is
LEGACY_TABLES = {"endpoints": "name", "endpoint_revisions": "id", "approval_requests": "id", "audit_log": "seq"}
MODELS = {"cancer-screening": "breast-cancer-classifier", "diabetes-risk": "diabetes-regressor"}


def load_legacy(commit: str, url: str) -> None:
    """Put the console database the old code wrote into ``url`` (a fresh SQLite file or PG database)."""
    if url.startswith("sqlite"):
        shutil.copy(FIXTURES / f"console-{commit}.db", url.split("///", 1)[1])
        return
    eng = sa.create_engine(url, poolclass=NullPool)  # the dump sets search_path: never pool that session
    try:
        with eng.connect() as conn:
            conn.connection.driver_connection.execute((FIXTURES / f"console-{commit}.pg.sql").read_text())
            conn.connection.driver_connection.commit()
    finally:
        eng.dispose()


def snapshot(url: str) -> dict[str, list[dict]]:
    """Every row of every table, by primary key (read with plain SQLAlchemy, no schema check)."""
    eng = sa.create_engine(url, poolclass=NullPool)
    try:
        md = sa.MetaData()
        md.reflect(eng)
        with eng.connect() as conn:
            return {name: [dict(r) for r in conn.execute(sa.select(t).order_by(*t.primary_key.columns)).mappings()]
                    for name, t in md.tables.items()}
    finally:
        eng.dispose()


def settings_for(url: str, tmp_path: Path) -> Settings:
    return Settings.from_env({"MLOPS_DATABASE_URL": url, "MLOPS_DATA_DIR": str(tmp_path),
                              "MLFLOW_TRACKING_URI": "http://127.0.0.1:9"},  # no registry: not needed here
                             secrets_path=tmp_path / "none.toml")


def cli(capsys, settings: Settings, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(argv), container=build(settings))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(params=sorted(LEGACY))
def legacy(request, database_url, tmp_path):
    """(commit, revision, url, rows before the upgrade) of a database written by that commit's code."""
    load_legacy(request.param, database_url)
    return request.param, LEGACY[request.param], database_url, snapshot(database_url)


# -- refused until upgraded ------------------------------------------------------------------------------
def test_an_old_database_is_refused_naming_the_command(legacy, tmp_path, capsys):
    commit, rev, url, before = legacy
    with pytest.raises(PreconditionFailed) as info:
        make_engine(url)
    msg = info.value.message
    assert f"the console database schema is at {rev}" in msg and f"this version needs {HEAD}" in msg
    assert "run `python -m services db upgrade`" in msg and info.value.source == "console database"
    s = settings_for(url, tmp_path)
    with pytest.raises(PreconditionFailed, match="db upgrade"):
        build(s).engine  # what the pages get (dashboard.components.guard renders it)  # noqa: B018
    code, out, err = cli(capsys, s, "endpoints")
    assert code == 6 and "python -m services db upgrade" in err
    code, out, _ = cli(capsys, s, "db", "current", "--json")
    assert code == 0 and json.loads(out) == {"revision": rev, "head": HEAD, "at_head": False, "stamped": False,
                                              "empty": False, "known": True}
    code, out, _ = cli(capsys, s, "db", "current")
    assert out.strip() == (f"{rev} (written before schema migrations): behind head {HEAD}: "
                           "run `python -m services db upgrade`")
    assert snapshot(url) == before, "refusing changed nothing"


# -- the upgrade keeps everything ------------------------------------------------------------------------
def test_upgrade_keeps_every_row_and_the_chain(legacy, tmp_path, capsys):
    commit, rev, url, before = legacy
    assert set(before) == set(LEGACY_TABLES), "no alembic_version: written before migrations"
    assert before["audit_log"] and before["approval_requests"] and before["endpoint_revisions"]
    s = settings_for(url, tmp_path)
    code, out, err = cli(capsys, s, "db", "upgrade")
    assert code == 0, err
    assert out.strip() == (f"upgraded the console database from {rev} (written before schema migrations) "
                           f"to {HEAD} (head)")
    after = snapshot(url)
    assert after["alembic_version"] == [{"version_num": HEAD}]
    for table, rows in before.items():
        new_cols = {"endpoint_revisions": {"approved_by"}, "audit_log": {"endpoint", "model", "version"},
                    "endpoints": {"min_replicas", "max_replicas", "scale_metric", "scale_target"}}  # 0009
        kept = [{k: v for k, v in r.items() if k in rows[0] or k not in new_cols.get(table, set())}
                for r in after[table]]
        assert kept == rows, f"{table}: rows changed"
    if rev == "0001":
        assert all(r["approved_by"] is None for r in after["endpoint_revisions"])
    else:
        assert any(r["approved_by"] == "bob" for r in after["endpoint_revisions"]), "f7bddcf recorded approvers"

    engine = make_engine(url)  # now it opens
    try:
        audit = SqlAuditTrail(engine)
        res = audit.verify()
        assert res.ok and res.entries == len(before["audit_log"]) == audit.count()
        assert res.head_hash == before["audit_log"][-1]["hash"]
        # serving_changes: one per revision, same values, source backend
        history = SqlServingHistory(engine)
        for ep in MODELS:
            revs = [r for r in after["endpoint_revisions"] if r["endpoint"] == ep]
            changes = history.changes(ep)
            assert [(c.stable_version, c.canary_version, c.canary_weight, c.actor, c.approved_by, c.note, c.source)
                    for c in changes] == [(r["stable_version"], r["canary_version"], r["canary_weight"], r["actor"],
                                           r.get("approved_by"), r["note"], "backend") for r in revs]
        assert {r["backend"] for r in after["serving_changes"]} == {"local"}
    finally:
        engine.dispose()
    code, out, _ = cli(capsys, s, "db", "upgrade")
    assert (code, out.strip()) == (0, f"the console database is at {HEAD} (head): nothing to do")
    assert snapshot(url) == after


def test_old_audit_rows_get_their_structured_columns(legacy, tmp_path):
    commit, rev, url, before = legacy
    engine = make_engine(url, check_schema=False)
    try:
        migrations.upgrade(engine)
        with engine.connect() as conn:
            rows = [dict(r) for r in conn.execute(sa.text("SELECT * FROM audit_log ORDER BY seq")).mappings()]
    finally:
        engine.dispose()
    requests = {r["id"]: r for r in before["approval_requests"]}
    for r in rows:  # the documented rule, row by row
        details = json.loads(r["details"])
        rid = r["target"][len("request #"):] if r["target"].startswith("request #") else None
        req = requests.get(int(rid)) if rid else None
        assert r["endpoint"] == (req["endpoint"] if rid and req else None if rid else r["target"]), r
        if r["endpoint"] in MODELS:
            assert r["model"] == (details.get("model") or MODELS[r["endpoint"]]), r
    by = lambda action, result: [r for r in rows if (r["action"], r["result"]) == (action, result)]  # noqa: E731
    # requests and decisions: the requested version (old rejects carry no params: the request's are used)
    assert [r["version"] for r in by("request_promotion", "requested")] == \
        [json.loads(q["params"])["version"] for q in before["approval_requests"]]
    assert [r["version"] for r in by("reject", "ok")] == ["3"]
    assert {r["version"] for r in by("approve", "ok")} == {"4"}
    # endpoint changes: the new canary, the re-weighted canary, the removed canary, the new stable version
    assert [r["version"] for r in by("start_canary", "ok")][:1] == ["2"]
    assert [r["version"] for r in by("set_canary_weight", "ok")] == ["2"]
    assert [r["version"] for r in by("abort_canary", "ok")] == ["2"]
    assert [r["version"] for r in by("rollback", "ok")][:1] == ["2"]
    missing = [r for r in rows if r["target"] == "request #99"]  # a request that never existed
    assert [(r["endpoint"], r["model"], r["version"]) for r in missing] == [(None, None, None)]
    if commit == "f7bddcf":  # an unknown identity approving request #4 (audited by that code): its request's
        stranger = [r for r in rows if r["actor"] == "mallory"]
        assert [(r["target"], r["endpoint"], r["model"], r["version"]) for r in stranger] == [
            ("request #4", "diabetes-risk", "diabetes-regressor", "1")]


def test_the_app_works_on_the_upgraded_database(legacy, tmp_path, capsys):
    commit, rev, url, before = legacy
    s = settings_for(url, tmp_path)
    assert cli(capsys, s, "db", "upgrade")[0] == 0
    c = build(s)
    try:
        reqs = c.actions.requests()
        assert sorted(r["id"] for r in reqs) == sorted(r["id"] for r in before["approval_requests"])
        decided = {r["id"]: r["status"] for r in reqs if r["status"] not in ("pending", "void", "expired")}
        assert decided == {r["id"]: r["status"] for r in before["approval_requests"] if r["id"] in decided}
        assert {"approved", "rejected"} <= set(decided.values())
        eps = {e.name: e for e in c.serving.list_endpoints()}
        assert {n: (e.model, e.stable_version, e.canary_version, e.canary_weight) for n, e in eps.items()} == {
            r["name"]: (r["model"], r["stable_version"], r["canary_version"], r["canary_weight"])
            for r in before["endpoints"]}
        # the audit filters are SQL on the new columns, old rows included
        entries = c.audit.entries(limit=None, endpoint="diabetes-risk")
        assert entries and all(e.target in ("diabetes-risk", "request #4") for e in entries)
        assert [e.seq for e in c.audit.entries(limit=None, model="diabetes-regressor")] == [e.seq for e in entries]
        assert {e.action for e in c.audit.entries(limit=None, version="4", endpoint="cancer-screening")} >= {
            "request_promotion", "approve"}
        # a new entry chains onto the old ones and fills its columns
        n = c.audit.count()
        new = c.audit.append(actor="bob", action="reject", target="request #4", result="refused",
                             details={"request_id": 4})
        assert new.seq == n + 1 and c.audit.verify().ok
        assert [e.seq for e in c.audit.entries(endpoint="diabetes-risk", limit=1)] == [new.seq]
    finally:
        if "engine" in c.__dict__:
            c.engine.dispose()


def test_downgrade_and_upgrade_again(legacy):
    from alembic import command

    commit, rev, url, before = legacy
    engine = make_engine(url, check_schema=False)
    try:
        migrations.upgrade(engine)
        with writing(engine) as conn:
            command.downgrade(migrations.config(conn), rev)
        assert migrations.status(engine).revision == rev
        downgraded = snapshot(url)
        assert {k: v for k, v in downgraded.items() if k != "alembic_version"} == before
        assert migrations.upgrade(engine).after == HEAD
        assert SqlAuditTrail(engine).verify().ok
    finally:
        engine.dispose()


# -- empty, newer, and the chain itself --------------------------------------------------------------------
def _schema_diff(conn) -> list:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    ctx = MigrationContext.configure(conn, opts={"compare_type": True})
    return [d for d in compare_metadata(ctx, metadata)]


def test_an_empty_database_is_created_at_head_with_the_migrations_schema(database_url):
    from alembic import command

    engine = make_engine(database_url)  # create_all + stamp, the fast path of a fresh install
    try:
        assert migrations.status(engine).at_head
        with engine.connect() as conn:
            assert _schema_diff(conn) == []
        # the same schema as running every migration from nothing
        with writing(engine) as conn:
            for t in [*(t.name for t in reversed(metadata.sorted_tables)), "alembic_version"]:
                conn.exec_driver_sql(f"DROP TABLE {t}")
        assert migrations.status(engine).empty
        with writing(engine) as conn:
            command.upgrade(migrations.config(conn), "head")
        with engine.connect() as conn:
            assert _schema_diff(conn) == []
        assert migrations.status(engine).at_head
        assert make_engine(database_url).dispose() is None  # and opens
    finally:
        engine.dispose()


def test_concurrent_first_opens_of_an_empty_database(database_url):
    errors: list[BaseException] = []
    barrier = threading.Barrier(3)

    def open_it():
        try:
            barrier.wait(10)
            make_engine(database_url).dispose()
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=open_it) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars().all() == [HEAD]
    finally:
        engine.dispose()


def test_a_newer_database_is_refused(database_url, tmp_path, capsys):
    engine = make_engine(database_url)
    with writing(engine) as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '0099'")
    engine.dispose()
    with pytest.raises(PreconditionFailed, match="is at 0099, which is newer than this version"):
        make_engine(database_url)
    s = settings_for(database_url, tmp_path)
    code, _, err = cli(capsys, s, "db", "upgrade")
    assert code == 6 and "newer than this version" in err
    code, out, _ = cli(capsys, s, "db", "current")
    assert code == 0 and "0099: unknown to this version" in out


def test_db_upgrade_creates_an_empty_database(database_url, tmp_path, capsys):
    s = settings_for(database_url, tmp_path)
    code, out, _ = cli(capsys, s, "db", "current")
    assert code == 0 and out.startswith("no console tables yet")
    code, out, _ = cli(capsys, s, "db", "upgrade", "--json")
    assert code == 0 and json.loads(out) == {"from": None, "to": HEAD, "stamped_from_legacy": False,
                                              "created": True, "changed": True}
    code, out, _ = cli(capsys, s, "db", "current")
    assert out.strip() == f"{HEAD} (head)"


def test_the_migration_chain_is_what_the_code_expects():
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(migrations.config())
    chain = [r.revision for r in reversed(list(script.walk_revisions()))]
    assert tuple(chain) == REVISIONS and migrations.script_head() == HEAD
    files = sorted(p.name for p in (Path(migrations.__file__).parent / "versions").glob("*.py"))
    assert [f[:4] for f in files] == list(REVISIONS)
