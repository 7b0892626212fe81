"""The migrations produce exactly the declared tables, on SQLite and PostgreSQL; the service
refuses a database whose schema is not the current one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect

from dedup.adjudication import database
from dedup.adjudication.service import create_app
from dedup.adjudication.tables import Base
from dedup.errors import ConfigError
from dedup.settings import AdjudicationSettings


def differences(engine: Engine) -> list[Any]:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))


def test_migrations_produce_the_declared_models(review_engine: Engine) -> None:
    assert differences(review_engine) == []
    assert set(inspect(review_engine).get_table_names()) >= set(Base.metadata.tables)
    assert database.current_revision(review_engine) == database.head_revision(review_engine)


def test_the_comparison_sees_a_drifted_schema(review_engine: Engine) -> None:
    # The check above can fail: a column the models declare but the database lacks is seen.
    with review_engine.begin() as connection:
        connection.exec_driver_sql("ALTER TABLE subjects DROP COLUMN center_id")
    found = differences(review_engine)
    assert any(d[0] == "add_column" and d[3].name == "center_id" for d in found), found


def test_migrating_twice_changes_nothing(review_engine: Engine) -> None:
    database.migrate(review_engine)
    assert differences(review_engine) == []


def test_the_service_refuses_an_unmigrated_database(tmp_path: Path) -> None:
    engine = database.connect(f"sqlite:///{tmp_path / 'empty.sqlite'}")
    with pytest.raises(ConfigError, match=r"empty.*needs migration 0003"):
        create_app(AdjudicationSettings(), engine)


def test_an_unknown_database_kind_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="not supported"):
        database.connect("mysql://somewhere/dedup")
