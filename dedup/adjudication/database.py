"""Connecting to the review database and bringing its schema to the current migration.

SQLite (the embedded default) has no row locks, so every transaction there starts with
``BEGIN IMMEDIATE``: it takes the database's write lock at once, which makes the claim's
select-then-update atomic, the equivalent of PostgreSQL's ``FOR UPDATE SKIP LOCKED``
(claimers wait their turn instead of skipping, which is safe and, at SQLite's scale, quick).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.orm import Session, sessionmaker

from dedup.errors import ConfigError

MIGRATIONS = Path(__file__).parent / "migrations"


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def connect(url: str, pool_size: int = 20) -> Engine:
    """An engine for ``url`` with the per-backend settings the queue relies on.

    The pool (``pool_size`` plus as many overflow connections) is sized for the thread pool
    that runs the service's routes (40 threads).
    """
    if url.startswith("sqlite"):
        database = url.split("///", 1)[-1]
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 60})
        _serialise_sqlite_writes(engine)
        return engine
    if url.startswith("postgresql"):
        return create_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)
    raise ConfigError(
        f"adjudication.database_url {url.split(':', 1)[0]!r} is not supported: "
        "use sqlite:///PATH or postgresql+psycopg://USER@HOST/DB"
    )


def _serialise_sqlite_writes(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN itself below
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=60000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def sessions(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def alembic_config(engine: Engine) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def migrate(engine: Engine) -> None:
    """Bring the database to the newest migration (a no-op when it is there already)."""
    from alembic import command

    command.upgrade(alembic_config(engine), "head")


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision(engine: Engine) -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config(engine)).get_current_head()


def require_current(engine: Engine) -> None:
    """Refuse to serve a database whose schema is behind (or ahead of) this code."""
    have, want = current_revision(engine), head_revision(engine)
    if have != want:
        tables = inspect(engine).get_table_names()
        state = "empty" if not tables else f"at migration {have}"
        raise ConfigError(
            f"the review database is {state}; this version needs migration {want}: "
            "run `dedup serve` with --migrate (or `dedup adjudication migrate`)"
        )
