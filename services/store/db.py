"""Engine and tables of the console database (SQLite by default, PostgreSQL by URL).

The tables below are the schema at :data:`HEAD`; the Alembic migrations in
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

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    Double,
    Engine,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    create_engine,
    event,
    inspect,
    select,
)
from sqlalchemy.exc import SQLAlchemyError

from services.errors import PreconditionFailed, Unavailable

SOURCE = "console database"
UPGRADE_COMMAND = "python -m services db upgrade"
REVISIONS = ("0001", "0002", "0003", "0004", "0005")  # oldest first; the files are services/store/migrations/versions/
HEAD = REVISIONS[-1]
WRITE = "mlops_write"  # execution option: this transaction writes (SQLite: BEGIN IMMEDIATE)

metadata = MetaData()

endpoints = Table(
    "endpoints",
    metadata,
    Column("name", String(255), primary_key=True),
    Column("model", String(255), nullable=False),
    Column("stable_version", String(32)),
    Column("canary_version", String(32)),
    Column("canary_weight", Integer, nullable=False, default=0),
    Column("resource_version", Integer, nullable=False, default=1),
    Column("replicas", Integer, nullable=False, default=1),
    Column("url", String(1024)),
    Column("ready", Boolean, nullable=False, default=True),
    Column("created_at", String(40), nullable=False),
    Column("updated_at", String(40), nullable=False),
)

endpoint_revisions = Table(  # the local serving backend's own revision list
    "endpoint_revisions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("endpoint", String(255), nullable=False, index=True),
    Column("resource_version", Integer, nullable=False),
    Column("stable_version", String(32)),
    Column("canary_version", String(32)),
    Column("canary_weight", Integer, nullable=False),
    Column("at", String(40), nullable=False),
    Column("actor", String(255)),
    Column("note", Text, nullable=False, default=""),
    Column("approved_by", String(255)),  # 0002
)

approval_requests = Table(
    "approval_requests",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("endpoint", String(255), nullable=False, index=True),
    Column("model", String(255)),
    Column("action", String(64), nullable=False),
    Column("params", Text, nullable=False),  # canonical JSON
    Column("requester", String(255), nullable=False),
    Column("reason", Text, nullable=False),
    Column("plan_hash", String(64), nullable=False),
    Column("plan", Text, nullable=False),  # canonical JSON of the dry run it was made on
    Column("created_at", String(40), nullable=False),
    Column("expires_at", String(40), nullable=False),
    Column("status", String(16), nullable=False, index=True),
    Column("decided_by", String(255)),
    Column("decided_at", String(40)),
    Column("decision_reason", Text),
    Column("row_version", Integer, nullable=False, default=1),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("ts", String(40), nullable=False),
    Column("actor", String(255), nullable=False),
    Column("action", String(64), nullable=False),
    Column("target", String(512), nullable=False),
    Column("result", String(16), nullable=False),
    Column("reason", Text, nullable=False),
    Column("error", Text, nullable=False),
    Column("before", Text, nullable=False),
    Column("after", Text, nullable=False),
    Column("gates", Text, nullable=False),
    Column("details", Text, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    # 0003: derived index columns (services.audit.sql.index_columns), NOT part of the hash chain
    Column("endpoint", String(512), index=True),
    Column("model", String(512), index=True),
    Column("version", String(64), index=True),
)

serving_changes = Table(  # 0004: the serving history (services.history.sql)
    "serving_changes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("endpoint", String(255), nullable=False),
    Column("at", String(40), nullable=False),  # services.clock.iso: fixed width, sorts as text
    Column("stable_version", String(32)),
    Column("canary_version", String(32)),
    Column("canary_weight", Integer, nullable=False, default=0),
    Column("actor", String(255)),
    Column("approved_by", String(255)),
    Column("note", Text, nullable=False, default=""),
    Column("source", String(16), nullable=False),  # console | backend | seed | migration
    Column("backend", String(32)),  # the serving backend it happened on (local, kserve)
    Index("ix_serving_changes_endpoint_at", "endpoint", "at"),
)

# 0005: the prediction log (services.predictions.sql). Times are services.clock.iso text like serving_changes.
# The primary key (request_id, row) is the "exactly once" key and, request_id leading, its lookup index.
predictions = Table(
    "predictions",
    metadata,
    Column("request_id", String(255), nullable=False),
    Column("row", Integer, nullable=False),
    Column("endpoint", String(255), nullable=False),
    Column("at", String(40), nullable=False),
    Column("model", String(255)),
    Column("version", String(32)),
    Column("role", String(16), nullable=False),
    Column("features", Text, nullable=False),  # JSON
    Column("prediction", Text, nullable=False),  # JSON
    Column("latency_ms", Double),
    Column("status", Integer, nullable=False),
    Column("error", Text, nullable=False),
    Column("label", Text),  # JSON; NULL until ground truth arrives
    Column("labelled_at", String(40)),
    PrimaryKeyConstraint("request_id", "row", name="pk_predictions"),
    Index("ix_predictions_endpoint_at", "endpoint", "at"),
)

LATENCY_BUCKET_COLUMNS = tuple(f"latency_le_{i:02d}" for i in range(13))  # one per LATENCY_BUCKETS_MS bucket

prediction_rollups = Table(  # 0005: per minute × endpoint × version × role, every counter added with +
    "prediction_rollups",
    metadata,
    Column("minute", String(40), nullable=False),
    Column("endpoint", String(255), nullable=False),
    Column("version", String(32), nullable=False),  # "" for unknown (NULL never conflicts in a unique key)
    Column("role", String(16), nullable=False),
    Column("count", Integer, nullable=False),
    Column("errors", Integer, nullable=False),
    Column("latency_sum_ms", Double, nullable=False),
    *(Column(name, Integer, nullable=False) for name in LATENCY_BUCKET_COLUMNS),
    Column("labelled", Integer, nullable=False),
    Column("correct", Integer, nullable=False),
    Column("abs_error_sum", Double, nullable=False),
    Column("sq_error_sum", Double, nullable=False),
    # the upsert's conflict key; endpoint then minute leading, it is also the index of a window's query
    PrimaryKeyConstraint("endpoint", "minute", "version", "role", name="pk_prediction_rollups"),
)

LEGACY_TABLES = ("endpoints", "endpoint_revisions", "approval_requests", "audit_log")  # revision 0001

_version_metadata = MetaData()
alembic_version = Table(  # Alembic's own bookkeeping, as Alembic creates it
    "alembic_version", _version_metadata,
    Column("version_num", String(32), nullable=False),
    PrimaryKeyConstraint("version_num", name="alembic_version_pkc"),
)


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
        engine = create_engine(url, connect_args={"timeout": 60, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_connect(dbapi_conn, _record):
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA busy_timeout=60000")
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
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)


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
    ``engine.connect()``, which begins DEFERRED and proceeds while another connection writes."""
    with engine.connect() as conn:
        conn.execution_options(**{WRITE: True})
        with conn.begin():
            yield conn


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
    ours = tables & {*LEGACY_TABLES, "serving_changes", "predictions", "prediction_rollups"}
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
        raise Unavailable(f"{what} failed", source=source, detail=" ".join(str(exc).split())[:300]) from exc
