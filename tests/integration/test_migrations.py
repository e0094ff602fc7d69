"""Schema changes go through Alembic: the migrations build exactly the models' schema,
and instances starting together on one PostgreSQL do not trip over each other."""

from __future__ import annotations

import threading
import uuid

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from store.db import Database, DatabaseSettings
from store.migrate import upgrade
from store.models import Base
from tests.conftest import PG_URL, REQUIRE_PG


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
