"""Schema migrations of the console database (Alembic), configured in code: no ``alembic.ini`` is needed.

Revisions (``versions/``):

* ``0001`` — the schema of the last release without migrations (commit ``1f25ad1``);
* ``0002`` — ``endpoint_revisions.approved_by`` (main at ``f7bddcf``);
* ``0003`` — ``audit_log.endpoint`` / ``model`` / ``version``: derived index columns, backfilled;
* ``0004`` — ``serving_changes``, the serving history, backfilled from ``endpoint_revisions``.

:func:`upgrade` is what ``python -m services db upgrade`` runs: an empty database is created at head, a
database written before migrations is stamped at the revision its columns match (see
:func:`services.store.db.schema_status`) and then upgraded, all in one transaction (PostgreSQL and SQLite
both have transactional DDL; SQLite ALTERs run in Alembic's batch mode). For developers, a new revision:
``alembic -c services/store/migrations/alembic.ini revision -m "..."`` (then name it ``0005_...``, set
``revision = "0005"`` and add it to :data:`services.store.db.REVISIONS`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Connection, Engine

from services.store.db import (
    HEAD,
    SchemaStatus,
    create_at_head,
    guarded,
    lock,
    schema_problem,
    schema_status,
    writing,
)

HERE = Path(__file__).resolve().parent


def config(conn: Connection | None = None, url: str | None = None):
    """An Alembic ``Config`` for these migrations, bound to ``conn`` (used as it is, in its transaction)."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    if url:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if conn is not None:
        cfg.attributes["connection"] = conn
    return cfg


def script_head() -> str:
    """The head revision of the migration scripts (a test checks it is :data:`services.store.db.HEAD`)."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(config()).get_current_head()


@dataclass(frozen=True)
class UpgradeResult:
    before: SchemaStatus
    after: str

    @property
    def changed(self) -> bool:
        return self.before.revision != self.after

    def as_dict(self) -> dict:
        return {"from": self.before.revision, "to": self.after, "stamped_from_legacy": not self.before.stamped
                and not self.before.empty, "created": self.before.empty, "changed": self.changed}


def status(engine: Engine) -> SchemaStatus:
    with guarded("reading the schema revision"), engine.connect() as conn:
        return schema_status(conn)


def upgrade(engine: Engine, target: str = "head") -> UpgradeResult:
    """Bring the database to ``target`` (default head) in one transaction. Refuses a database newer than
    this code (an unknown revision) with :class:`~services.errors.PreconditionFailed`."""
    from alembic import command

    with guarded("upgrading the console database schema"), writing(engine) as conn:
        lock(conn)
        before = schema_status(conn)
        if before.empty and target in ("head", HEAD):
            create_at_head(conn)
            return UpgradeResult(before, HEAD)
        if not before.known:
            raise schema_problem(before)
        cfg = config(conn)
        if before.empty:
            command.upgrade(cfg, target)
        else:
            if not before.stamped:
                command.stamp(cfg, before.revision)
            command.upgrade(cfg, target)
        return UpgradeResult(before, schema_status(conn).revision)
