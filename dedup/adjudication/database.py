"""Connecting to the review database and bringing its schema to the current migration.

SQLite (the embedded default) has no row locks, so every transaction there starts with
``BEGIN IMMEDIATE``: it takes the database's write lock at once, which makes the claim's
select-then-update atomic, the equivalent of PostgreSQL's ``FOR UPDATE SKIP LOCKED``
(claimers wait their turn instead of skipping, which is safe and, at SQLite's scale, quick).

Deleted is not yet erased: a plain DELETE leaves the row's bytes in free pages and in the
write-ahead log. Every SQLite connection therefore runs with ``secure_delete`` on (deleted
content is overwritten with zeros), and ``reclaim_deleted`` runs after an erasure commits:
on SQLite a ``wal_checkpoint(TRUNCATE)`` (the log's older frames, which still hold the rows
as they were, are copied back and the log cut to nothing); on PostgreSQL a ``VACUUM`` of the
tables an erasure writes, so their dead tuples are removed now rather than whenever
autovacuum comes by (docs/ARCHITECTURE.md, "Erasure", says what remains where).
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
        cursor.execute("PRAGMA secure_delete=ON")  # deleted content is overwritten with zeros
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


# What an erasure deletes from (``queue_erasure``), children before parents.
ERASED_TABLES = (
    "subject_images",
    "subjects",
    "case_candidates",
    "case_members",
    "judgements",
    "catch_pairs",
    "cases",
)


def reclaim_deleted(engine: Engine) -> str:
    """Make the rows an erasure deleted unreadable from the database's files; what was done.

    Run after the erasure's transaction commits (VACUUM cannot run inside one). SQLite: the
    deleted pages were zeroed (``secure_delete``) in the write-ahead log; a TRUNCATE
    checkpoint writes them into the database file and empties the log, where the frames
    written before the erasure still held the rows. It waits for readers (busy timeout);
    if one still holds an old snapshot the log cannot be emptied, and this says so.
    """
    if is_sqlite(engine):
        raw = engine.raw_connection()  # no BEGIN: a checkpoint runs outside transactions
        try:
            busy, _, _ = raw.cursor().execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        finally:
            raw.close()
        if busy:
            return "SQLite log not emptied: a reader held it; the next erasure retries"
        return "SQLite log checkpointed and emptied; deleted pages zeroed"
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.exec_driver_sql("VACUUM " + ", ".join(ERASED_TABLES))
    return "PostgreSQL tables vacuumed: dead tuples removed"


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
            "run `dedup serve` with --migrate (or `dedup migrate`)"
        )
