"""Alembic environment of the console database: runs on the connection the caller passes in
``config.attributes["connection"]`` (see :func:`services.store.migrations.upgrade`), else on
``sqlalchemy.url`` or ``MLOPS_DATABASE_URL`` (the ``alembic`` command line, for developers)."""

from __future__ import annotations

from alembic import context

from services.store.db import make_engine, metadata, writing


def run(connection) -> None:
    context.configure(connection=connection, target_metadata=metadata,
                      render_as_batch=connection.dialect.name == "sqlite", compare_type=True)
    with context.begin_transaction():  # a no-op inside the caller's transaction
        context.run_migrations()


def main() -> None:
    config = context.config
    if context.is_offline_mode():
        raise SystemExit("offline (--sql) migrations are not supported: run `python -m services db upgrade`")
    connection = config.attributes.get("connection")
    if connection is not None:
        run(connection)
        return
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        from services.settings import Settings

        url = Settings.from_env().database_url
    engine = make_engine(url, check_schema=False)
    try:
        with writing(engine) as conn:
            run(conn)
    finally:
        engine.dispose()


main()
