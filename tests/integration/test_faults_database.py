"""Faults of the console database: SQLite locked by another connection past the lock timeout, and a private
PostgreSQL server stopped or restarted in the middle of an action (never the machine's shared server on 5432).

Each time: an Unavailable that names the console database within the page budget, nothing half-applied (the
endpoint, its revisions and the serving history agree with the audit trail afterwards), and a chain that
verifies.
"""

from __future__ import annotations

import glob
import os
import shutil
import sqlite3
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from sqlalchemy import event, func, select

from services.errors import Unavailable
from services.store.db import _lock_breakers, endpoint_revisions, serving_changes
from tests.conftest import ENDPOINT, MODEL, free_port, fresh_registry, make_container
from tests.faults import elapsed

BUDGET = 10.0


def _state(c):
    ep = c.serving.get_endpoint(ENDPOINT)
    return ep.stable_version, ep.canary_version, ep.canary_weight, ep.resource_version


def _rows(c) -> tuple[int, int]:
    """(endpoint revisions, serving-history changes) of the endpoint."""
    with c.engine.connect() as conn:
        revs = conn.execute(select(func.count()).select_from(endpoint_revisions)
                            .where(endpoint_revisions.c.endpoint == ENDPOINT)).scalar_one()
        changes = conn.execute(select(func.count()).select_from(serving_changes)
                               .where(serving_changes.c.endpoint == ENDPOINT)).scalar_one()
    return int(revs), int(changes)


def _consistent(c, state, rows, audited: int) -> None:
    """The endpoint, its revisions, the serving history and the audit trail all say the same thing."""
    assert _state(c) == state
    assert _rows(c) == rows
    assert c.audit.count() == audited
    assert c.audit.verify().ok


@pytest.fixture
def sqlite_container(registry_template, tmp_path, clock, monkeypatch):
    """SQLite with a 1 s lock timeout (the default, 5 s, bounds a page in tests/ui/test_faults_pages.py)."""
    import services.store.db as db

    monkeypatch.setattr(db, "LOCK_TIMEOUT", 1)
    uri = fresh_registry(registry_template, tmp_path / "reg")
    c = make_container(uri, f"sqlite:///{tmp_path / 'c.db'}", tmp_path, clock=clock)
    c.serving.ensure_endpoint(ENDPOINT, MODEL, "1", canary_version="2", canary_weight=20)
    yield c, tmp_path / "c.db"
    c.engine.dispose()


# -- SQLite: another connection holds the write lock ---------------------------------------------------------
def test_a_write_lock_held_past_the_timeout_fails_the_action_cleanly(sqlite_container):
    c, path = sqlite_container
    alice = c.directory.get("alice")
    plan = c.actions.plan(alice, "set_canary_weight", ENDPOINT, weight=35)
    state, rows, audited = _state(c), _rows(c), c.audit.count()
    other = sqlite3.connect(path, isolation_level=None, timeout=1)
    other.execute("BEGIN EXCLUSIVE")  # e.g. a sqlite3 shell or a backup tool in the middle of a write
    other.execute("UPDATE endpoints SET updated_at = updated_at")
    try:
        took, out = elapsed(c.actions.execute, plan, alice, "ramp")
        assert isinstance(out, Unavailable), out
        assert "console database is locked by another connection" in out.message, out.message
        assert 0.9 <= took < 3, took  # the lock timeout (1 s here), once
        # readers are not blocked (WAL): the pages still show what serves and the audit trail
        assert _state(c) == state and c.audit.count() == audited
        # the next write within the rest fails at once, naming the database, instead of waiting again
        took, again = elapsed(c.actions.execute, plan, alice, "ramp")
        assert isinstance(again, Unavailable) and again.source == "console database", again
        assert "locked by another connection" in again.message and took < 1, (took, again.message)
    finally:
        other.execute("ROLLBACK")
        other.close()
    # nothing was half-applied, and nothing could be audited while the database was locked
    _consistent(c, state, rows, audited)
    breaker = _lock_breakers[c.engine]
    breaker.clock = lambda: time.monotonic() + 60  # the rest is over
    out = c.actions.execute(plan, alice, "ramp")
    assert out.status == "applied"
    assert _state(c)[:3] == ("1", "2", 35) and _rows(c) == (rows[0] + 1, rows[1] + 1)
    last = c.audit.entries(limit=1)[0]
    assert (last.action, last.result, last.reason) == ("set_canary_weight", "ok", "ramp")
    assert c.audit.verify().ok


def test_a_short_lock_is_waited_for_and_does_not_trip_anything(sqlite_container):
    import threading

    c, path = sqlite_container
    alice = c.directory.get("alice")
    plan = c.actions.plan(alice, "set_canary_weight", ENDPOINT, weight=30)
    other = sqlite3.connect(path, isolation_level=None, timeout=1, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    timer = threading.Timer(0.4, lambda: other.execute("ROLLBACK"))  # shorter than the lock timeout (1 s)
    timer.start()
    try:
        took, out = elapsed(c.actions.execute, plan, alice, "ramp")
    finally:
        timer.join()
        other.close()
    assert out.status == "applied" and 0.3 <= took < 1, (took, out)
    assert not _lock_breakers[c.engine].open


# -- PostgreSQL: a private server, stopped and restarted mid-action ---------------------------------------------
class PrivateCluster:
    """A PostgreSQL cluster of this test module only (initdb + pg_ctl on a free port in a temporary folder)."""

    def __init__(self):
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        if not found:
            raise RuntimeError("no /usr/lib/postgresql/*/bin/initdb")
        self.bin = Path(found[-1]).parent
        self.dir = Path(tempfile.mkdtemp(prefix="mlops-pg-"))
        self.port = free_port()
        self.as_user: list[str] = []
        if os.geteuid() == 0:  # initdb refuses root: run the server as postgres, in a folder it owns
            import pwd

            pw = pwd.getpwnam("postgres")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
            self.as_user = ["runuser", "-u", "postgres", "--"]
        self.data = self.dir / "data"
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8")
        self.start()
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str, timeout: float = 60) -> None:
        proc = subprocess.run([*self.as_user, str(self.bin / tool), *args], capture_output=True, text=True,
                              timeout=timeout)
        if proc.returncode != 0:
            raise RuntimeError(f"{tool} failed: {(proc.stdout + proc.stderr)[-1500:]}")

    def start(self) -> None:
        opts = (f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off "
                "-c full_page_writes=off")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.dir / "log"), "-o", opts, "-w", "-t", "30",
                  "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "30", "stop")

    def close(self) -> None:
        try:
            self.stop("immediate")
        except RuntimeError:
            pass
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster():
    try:
        pg = PrivateCluster()
    except (RuntimeError, OSError, KeyError, subprocess.TimeoutExpired) as exc:
        if os.environ.get("CI"):
            pytest.fail(f"cannot start a private PostgreSQL cluster: {exc}")
        pytest.skip(f"cannot start a private PostgreSQL cluster: {exc}")
    yield pg
    pg.close()


@pytest.fixture
def pg_container(cluster, registry_template, tmp_path, clock):
    import uuid

    import sqlalchemy as sa

    name = f"console_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(cluster.url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    admin.dispose()
    uri = fresh_registry(registry_template, tmp_path / "reg")
    c = make_container(uri, cluster.url.rsplit("/", 1)[0] + "/" + name, tmp_path, clock=clock)
    c.serving.ensure_endpoint(ENDPOINT, MODEL, "1", canary_version="2", canary_weight=20)
    yield c
    c.engine.dispose()


def _during_the_apply(c, what):
    """Run ``what()`` in the middle of the endpoint write's transaction (after its UPDATE, before its commit)."""
    done = []

    def hook(conn, cursor, statement, *args):
        if statement.startswith("INSERT INTO endpoint_revisions") and not done:
            done.append(True)
            what()

    event.listen(c.engine, "after_cursor_execute", hook)
    return lambda: event.remove(c.engine, "after_cursor_execute", hook)


def test_postgres_down_between_the_dry_run_and_confirm(pg_container, cluster):
    c = pg_container
    alice = c.directory.get("alice")
    plan = c.actions.plan(alice, "set_canary_weight", ENDPOINT, weight=35)
    state, rows, audited = _state(c), _rows(c), c.audit.count()
    cluster.stop()
    try:
        took, out = elapsed(c.actions.execute, plan, alice, "ramp")
    finally:
        cluster.start()
    assert isinstance(out, Unavailable), out
    assert "console database cannot be reached" in out.message, out.message
    assert took < BUDGET, took
    _consistent(c, state, rows, audited)  # nothing written, and nothing could be audited while it was down
    out = c.actions.execute(plan, alice, "ramp")  # the same dry run still holds once it is back
    assert out.status == "applied" and _state(c)[:3] == ("1", "2", 35)
    assert _rows(c) == (rows[0] + 1, rows[1] + 1) and c.audit.count() == audited + 1 and c.audit.verify().ok


def test_postgres_restarted_during_the_apply_leaves_nothing_half_done(pg_container, cluster):
    c = pg_container
    alice = c.directory.get("alice")
    plan = c.actions.plan(alice, "set_canary_weight", ENDPOINT, weight=35)
    state, rows, audited = _state(c), _rows(c), c.audit.count()
    remove = _during_the_apply(c, lambda: (cluster.stop("immediate"), cluster.start()))
    try:
        took, out = elapsed(c.actions.execute, plan, alice, "ramp")
    finally:
        remove()
    assert isinstance(out, Unavailable), out
    assert "console database" in out.message and "nothing changed" in out.message, out.message
    assert took < BUDGET, took
    # the transaction died with the server: no endpoint change, no revision, no history row; the failed attempt
    # was audited once the server was back
    assert _state(c) == state and _rows(c) == rows
    last = c.audit.entries(limit=1)[0]
    assert (last.action, last.result) == ("set_canary_weight", "failed") and "console database" in last.error
    assert c.audit.count() == audited + 1 and c.audit.verify().ok


def test_postgres_stopped_during_the_apply_and_back_later(pg_container, cluster):
    c = pg_container
    alice = c.directory.get("alice")
    plan = c.actions.plan(alice, "set_canary_weight", ENDPOINT, weight=35)
    state, rows, audited = _state(c), _rows(c), c.audit.count()
    remove = _during_the_apply(c, lambda: cluster.stop("immediate"))
    try:
        took, out = elapsed(c.actions.execute, plan, alice, "ramp")
    finally:
        remove()
        cluster.start()
    assert isinstance(out, Unavailable), out
    assert "console database" in out.message, out.message
    assert took < BUDGET, took
    _consistent(c, state, rows, audited)  # rolled back with the server; the attempt could not be audited
