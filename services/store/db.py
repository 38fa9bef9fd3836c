"""Engine and tables of the console database (SQLite by default, PostgreSQL by URL).

Writers on SQLite take the write lock at ``BEGIN`` (``BEGIN IMMEDIATE``) so a
read-then-write transaction cannot fail half-way with "database is locked";
PostgreSQL runs at READ COMMITTED and every state change is a compare-and-set
``UPDATE ... WHERE version = :seen``, whose row count says who won.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import (
    Boolean,
    Column,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
)
from sqlalchemy.exc import SQLAlchemyError

from services.errors import Unavailable

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

endpoint_revisions = Table(
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
    Column("approved_by", String(255)),
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
)


def make_engine(url: str) -> Engine:
    """Create the engine and the tables. Raises Unavailable naming the database."""
    try:
        if url.startswith("sqlite"):
            path = url.split("///", 1)[-1]
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(url, connect_args={"timeout": 60, "check_same_thread": False})

            @event.listens_for(engine, "connect")
            def _sqlite_connect(dbapi_conn, _record):
                dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA busy_timeout=60000")
                cur.execute("PRAGMA foreign_keys=ON")
                cur.close()

            @event.listens_for(engine, "begin")
            def _sqlite_begin(conn):
                conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            if url.startswith("postgresql://"):
                url = "postgresql+psycopg://" + url[len("postgresql://"):]
            engine = create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)
        metadata.create_all(engine)
        _add_missing_columns(engine)
        return engine
    except SQLAlchemyError as exc:
        raise Unavailable(f"cannot open the console database ({_redact(url)})", source="console database",
                          detail=" ".join(str(exc).split())[:300]) from exc


# Columns added after a release, for databases created before them. (A stop-gap: schema changes move to
# Alembic migrations.)
ADDED_COLUMNS = (("endpoint_revisions", "approved_by", "VARCHAR(255)"),)


def _add_missing_columns(engine: Engine) -> None:
    from sqlalchemy import inspect

    insp = inspect(engine)
    for table, column, ddl in ADDED_COLUMNS:
        if column not in {c["name"] for c in insp.get_columns(table)}:
            with engine.begin() as conn:
                conn.exec_driver_sql(f"ALTER TABLE {table} ADD COLUMN {column} {ddl}")


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://…@{rest.split('@', 1)[1]}"
    return url


@contextmanager
def guarded(what: str, source: str = "console database"):
    """Translate database failures at the adapter boundary."""
    try:
        yield
    except SQLAlchemyError as exc:
        raise Unavailable(f"{what} failed", source=source, detail=" ".join(str(exc).split())[:300]) from exc
