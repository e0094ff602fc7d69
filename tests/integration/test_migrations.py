"""Schema changes go through Alembic: the migrations build exactly the models' schema,
and instances starting together on one PostgreSQL do not trip over each other."""

from __future__ import annotations

import contextlib
import threading
import uuid

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url

from store.db import Database, DatabaseSettings
from store.migrate import alembic_config, upgrade
from store.models import Base
from tests.conftest import PG_URL, REQUIRE_PG, own_postgres_database


def test_the_migrations_build_exactly_the_schema_of_the_models(database):
    with database.engine.connect() as connection:
        context = MigrationContext.configure(connection)
        differences = compare_metadata(context, Base.metadata)
    assert differences == []


def test_instances_starting_together_migrate_one_after_the_other():
    if not PG_URL:
        if REQUIRE_PG:
            pytest.fail("FHIR_FACADE_REQUIRE_POSTGRES=1 but FHIR_FACADE_TEST_POSTGRES_URL is unset")
        pytest.skip("PostgreSQL not configured (set FHIR_FACADE_TEST_POSTGRES_URL)")
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    name = f"fhir_facade_migrate_{uuid.uuid4().hex[:8]}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def instance() -> None:
        database = Database(DatabaseSettings(url))
        try:
            start.wait()
            upgrade(database.engine)
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)
        finally:
            database.dispose()

    try:
        threads = [threading.Thread(target=instance) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert errors == []
        migrated = create_engine(url)
        with migrated.connect() as connection:
            version = connection.execute(text("SELECT version_num FROM alembic_version")).all()
        migrated.dispose()
        assert len(version) == 1
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _name_order_columns(database: Database) -> list[str | None]:
    indexes = inspect(database.engine).get_indexes("patient")
    return next(i["column_names"] for i in indexes if i["name"] == "ix_patient_name_order")


def _downgrade(database: Database, revision: str) -> None:
    config = alembic_config(database.engine)
    with database.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_the_name_order_index_gains_and_loses_the_restriction_keeping_the_patients(
    backend, tmp_path
):
    with contextlib.ExitStack() as stack:
        if backend == "sqlite":
            url = f"sqlite:///{tmp_path / 'migrate.sqlite3'}"
        else:
            url = stack.enter_context(own_postgres_database("fhir_facade_migrate"))
        database = Database(DatabaseSettings(url))
        stack.callback(database.dispose)
        upgrade(database.engine, "0011_subscription_binding")
        with database.engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO patient (id, family, given, family_folded, given_folded, "
                    "restricted, version, last_updated) VALUES "
                    "('p1', 'García', 'Ana', 'garcia', 'ana', false, 1, CURRENT_TIMESTAMP)"
                )
            )
        assert _name_order_columns(database) == ["family_folded", "given_folded", "id"]
        upgrade(database.engine)
        assert _name_order_columns(database) == [
            "family_folded",
            "given_folded",
            "id",
            "restricted",
        ]
        _downgrade(database, "0011_subscription_binding")
        assert _name_order_columns(database) == ["family_folded", "given_folded", "id"]
        upgrade(database.engine)
        with database.engine.connect() as connection:
            kept = connection.execute(text("SELECT id FROM patient")).scalars().all()
        assert kept == ["p1"]
