"""Engine and tables of the console database (SQLite by default, PostgreSQL by URL).

The tables (:mod:`services.store.tables`, re-exported here) are the schema at :data:`HEAD`; the Alembic migrations in
:mod:`services.store.migrations` take an older database there (``python -m services db upgrade``).
:func:`make_engine` creates an empty database at head, opens one at head, and refuses one at an older
(or unknown, newer) revision with a message naming the upgrade command.

Locking: PostgreSQL runs at READ COMMITTED and every state change is a compare-and-set
``UPDATE ... WHERE version = :seen``, whose row count says who won. On SQLite (WAL) a reading
transaction (``engine.connect()``) begins DEFERRED and never waits for writers, while a writing one
(:func:`writing`) takes the write lock at ``BEGIN`` (``BEGIN IMMEDIATE``), so a read-then-write
transaction cannot fail half-way with "database is locked".
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import (
    Connection,
    Engine,
    create_engine,
    event,
    inspect,
    select,
)
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from services.breaker import Breaker
from services.errors import PreconditionFailed, Unavailable
from services.store.tables import (  # noqa: F401 - the schema, re-exported for its users
    HISTOGRAM_BIN_COLUMNS,
    LATENCY_BUCKET_COLUMNS,
    LEGACY_TABLES,
    PREDICTION_BIN_COLUMNS,
    _version_metadata,
    action_intents,
    alembic_version,
    alerts,
    approval_requests,
    audit_log,
    endpoint_revisions,
    endpoints,
    feature_histograms,
    metadata,
    prediction_rollups,
    predictions,
    reference_profiles,
    replica_samples,
    retrain_leases,
    serving_changes,
)

SOURCE = "console database"
UPGRADE_COMMAND = "python -m services db upgrade"
# oldest first; the files are services/store/migrations/versions/
REVISIONS = ("0001", "0002", "0003", "0004", "0005", "0006", "0007", "0008", "0009", "0010")
HEAD = REVISIONS[-1]
WRITE = "mlops_write"  # execution option: this transaction writes (SQLite: BEGIN IMMEDIATE)
# SQLite: how long a writer waits for another connection's write lock (busy_timeout). A lock held longer is an
# Unavailable naming the database, and writes fail at once for LOCK_REST more seconds (one wait per page, not
# one per write); a page that acts answers within 10 s. PostgreSQL: seconds to connect.
LOCK_TIMEOUT = 5
LOCK_REST = 10.0
CONNECT_TIMEOUT = 5
_lock_breakers: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # SQLite engine -> Breaker



# -- engine --------------------------------------------------------------------------------------------
def make_engine(url: str, *, check_schema: bool = True) -> Engine:
    """The engine of the console database.

    With ``check_schema`` (the default, everything but ``db`` commands): an empty database (none of the
    console's tables) is created at :data:`HEAD`; one at head is used as it is; one at an older revision, or
    written before migrations existed, raises :class:`PreconditionFailed` naming ``python -m services db
    upgrade``; one at a revision this code does not know (newer code wrote it) raises the same kind.
    A database that cannot be reached raises :class:`Unavailable`.
    """
    try:
        engine = _create(url)
    except SQLAlchemyError as exc:
        raise _unavailable(url, exc) from exc
    if check_schema:
        try:
            ensure_schema(engine)
        except SQLAlchemyError as exc:
            engine.dispose()
            raise _unavailable(url, exc) from exc
        except PreconditionFailed:
            engine.dispose()
            raise
    return engine


def _create(url: str) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": LOCK_TIMEOUT, "check_same_thread": False})
        _lock_breakers[engine] = Breaker(SOURCE, cooldown=LOCK_REST)

        @event.listens_for(engine, "connect")
        def _sqlite_connect(dbapi_conn, _record):
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
            cur = dbapi_conn.cursor()
            cur.execute(f"PRAGMA busy_timeout={LOCK_TIMEOUT * 1000}")
            _set_wal(cur)
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn):
            # Readers begin DEFERRED: in WAL they read a snapshot and never queue behind a writer. Writers
            # (writing()) take the write lock at once, waiting up to busy_timeout for the current writer.
            conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(WRITE) else "BEGIN")

        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5,
                         connect_args={"connect_timeout": CONNECT_TIMEOUT})


def _set_wal(cur) -> None:
    """``PRAGMA journal_mode=WAL``. Switching a new database's mode while another connection does the same can
    answer SQLITE_BUSY at once (no busy handler for it): retried for up to ~10 s (once WAL, it is a no-op)."""
    import sqlite3
    import time

    for attempt in range(100):
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == 99:
                raise
            time.sleep(0.1)


@contextmanager
def writing(engine: Engine) -> Iterator[Connection]:
    """``engine.begin()`` for a transaction that writes: on SQLite it begins IMMEDIATE (takes the write lock
    at BEGIN, so a read-then-write cannot fail half-way); elsewhere it is plain ``engine.begin()``. Reads use
    ``engine.connect()``, which begins DEFERRED and proceeds while another connection writes.

    On SQLite, a write lock another connection held past :data:`LOCK_TIMEOUT` makes this engine's writes of the
    next :data:`LOCK_REST` seconds fail at once (Unavailable naming the console database)."""
    breaker = _lock_breakers.get(engine)
    if breaker is not None:
        breaker.check()
    started = time.monotonic()
    try:
        with engine.connect() as conn:
            conn.execution_options(**{WRITE: True})
            with conn.begin():
                yield conn
    except OperationalError as exc:
        if breaker is not None and _locked(exc) and time.monotonic() - started >= LOCK_TIMEOUT * 0.9:
            breaker.trip(f"was locked by another connection for more than {LOCK_TIMEOUT} s")
        raise


def _locked(exc: BaseException) -> bool:
    return "database is locked" in str(getattr(exc, "orig", exc)).lower()


def _unavailable(url: str, exc: BaseException) -> Unavailable:
    return Unavailable(f"cannot open the console database ({_redact(url)})", source=SOURCE,
                       detail=" ".join(str(exc).split())[:300])


# -- schema revision -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class SchemaStatus:
    """Where a database stands. ``revision`` None with ``empty``: no console table yet."""

    revision: str | None
    head: str = HEAD
    stamped: bool = True  # False: tables written before migrations (revision recognised from the columns)
    empty: bool = False

    @property
    def at_head(self) -> bool:
        return self.revision == self.head

    @property
    def known(self) -> bool:
        return self.revision is None or self.revision in REVISIONS

    @property
    def behind(self) -> bool:
        return self.revision in REVISIONS and not self.at_head

    def as_dict(self) -> dict:
        return {"revision": self.revision, "head": self.head, "at_head": self.at_head, "stamped": self.stamped,
                "empty": self.empty, "known": self.known}


def schema_status(conn: Connection) -> SchemaStatus:
    """Read which revision the database is at. A database without ``alembic_version`` but with the console's
    tables was written before migrations: 0001 (the last release without them) when
    ``endpoint_revisions.approved_by`` is missing, else 0002."""
    insp = inspect(conn)
    tables = set(insp.get_table_names())
    if "alembic_version" in tables:
        rows = [r for r in conn.execute(select(alembic_version.c.version_num)).scalars()]
        if rows:
            if len(rows) > 1:  # branches: not something this code writes
                return SchemaStatus(",".join(sorted(rows)))
            return SchemaStatus(rows[0])
    ours = tables & {*LEGACY_TABLES, "serving_changes", "predictions", "prediction_rollups", "reference_profiles",
                     "feature_histograms", "alerts"}
    if not ours:
        return SchemaStatus(None, empty=True, stamped=False)
    missing = [t for t in LEGACY_TABLES if t not in tables]
    if missing:
        raise PreconditionFailed(
            f"the console database has some of its tables but not {', '.join(missing)} and no migration "
            "record: it was not written by this application (point MLOPS_DATABASE_URL at its own database)",
            source=SOURCE)
    columns = {c["name"] for c in insp.get_columns("endpoint_revisions")}
    return SchemaStatus("0002" if "approved_by" in columns else "0001", stamped=False)


def schema_problem(status: SchemaStatus) -> PreconditionFailed | None:
    """The error to raise for a database this code cannot use as it is (None: usable)."""
    if status.at_head or status.empty:
        return None
    if status.behind:
        how = "" if status.stamped else " (written before schema migrations)"
        return PreconditionFailed(f"the console database schema is at {status.revision}{how}, this version "
                                  f"needs {HEAD}: run `{UPGRADE_COMMAND}`", source=SOURCE)
    return PreconditionFailed(
        f"the console database schema is at {status.revision}, which is newer than this version (it knows "
        f"{REVISIONS[0]}…{HEAD}): run the version of the console that wrote it, or a newer one", source=SOURCE)


def ensure_schema(engine: Engine) -> SchemaStatus:
    """Create an empty database at head; raise :class:`PreconditionFailed` for one at another revision."""
    with engine.connect() as conn:
        status = schema_status(conn)
    if status.empty:
        with writing(engine) as conn:
            lock(conn)
            status = schema_status(conn)  # another process may have created it meanwhile
            if status.empty:
                create_at_head(conn)
                status = SchemaStatus(HEAD)
    problem = schema_problem(status)
    if problem:
        raise problem
    return status


def create_at_head(conn: Connection) -> None:
    """Create every table as of :data:`HEAD` and record the revision (the same schema the migrations build,
    which a test checks)."""
    metadata.create_all(conn)
    _version_metadata.create_all(conn)
    conn.execute(alembic_version.delete())
    conn.execute(alembic_version.insert().values(version_num=HEAD))


def lock(conn: Connection) -> None:
    """Serialise schema changes between processes: on PostgreSQL a transaction-scoped advisory lock; on
    SQLite the write lock the transaction already holds (:func:`writing`)."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7250410)")


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://…@{rest.split('@', 1)[1]}"
    return url


@contextmanager
def guarded(what: str, source: str = SOURCE):
    """Translate database failures at the adapter boundary."""
    try:
        yield
    except SQLAlchemyError as exc:
        raise Unavailable(f"{what} failed{_why(exc)}", source=source,
                          detail=" ".join(str(exc).split())[:300]) from exc


def _why(exc: SQLAlchemyError) -> str:
    """The cause in words where it is one people meet: a lock held by another connection, a server gone."""
    if _locked(exc):
        return f": the console database is locked by another connection (waited {LOCK_TIMEOUT} s)"
    text = str(getattr(exc, "orig", exc)).lower()
    if getattr(exc, "connection_invalidated", False) or any(w in text for w in _GONE):
        return ": the console database cannot be reached (or dropped the connection)"
    return ""


_GONE = ("could not connect", "connection refused", "connection failed", "server closed the connection",
         "terminating connection", "connection is closed", "connection is lost", "connection timeout expired")
