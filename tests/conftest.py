"""Fixtures shared by the integration and end-to-end tests.

Tests that use `database_url` run twice: on SQLite (a fresh file per test) and on
PostgreSQL (one database per test run, migrated once, emptied between tests).
PostgreSQL comes from FHIR_FACADE_TEST_POSTGRES_URL; without it those runs are
skipped, unless FHIR_FACADE_REQUIRE_POSTGRES=1 (as in CI), which makes them fail.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import gc
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import StaticPool

from fhir_facade import create_app
from store.db import Database, DatabaseSettings
from store.migrate import upgrade
from store.models import Base
from tests.demo_snapshot import DemoSnapshots, copy_demo

PG_URL = os.environ.get("FHIR_FACADE_TEST_POSTGRES_URL")
REQUIRE_PG = os.environ.get("FHIR_FACADE_REQUIRE_POSTGRES") == "1"
TEST_SECRET = "test-signing-key-not-for-production-0123456789"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked slow first: with one test process per core they start at once and the
    short ones fill in beside them, instead of one long test running alone at the end."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def pytest_collection_finish(session: pytest.Session) -> None:
    """What collection imported (the app, the FHIR models, the fuzzers) lives until the end:
    kept out of the garbage collector's full passes, which otherwise walk it again and
    again."""
    gc.freeze()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.sqlite3"
    database = Database(DatabaseSettings(f"sqlite:///{path}"))
    upgrade(database.engine)
    database.dispose()
    return path


@contextlib.contextmanager
def own_postgres_database(prefix: str) -> Iterator[str]:
    """A new, empty PostgreSQL database named `prefix_…`, dropped afterwards (skips, or
    fails under FHIR_FACADE_REQUIRE_POSTGRES, when PostgreSQL is not there)."""
    if not PG_URL:
        if REQUIRE_PG:
            pytest.fail("FHIR_FACADE_REQUIRE_POSTGRES=1 but FHIR_FACADE_TEST_POSTGRES_URL is unset")
        pytest.skip("PostgreSQL not configured (set FHIR_FACADE_TEST_POSTGRES_URL)")
    admin_url = make_url(PG_URL)
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # pragma: no cover - depends on the machine
        admin.dispose()
        if REQUIRE_PG:
            raise
        pytest.skip(f"PostgreSQL unreachable: {exc}")
    try:
        yield admin_url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    with own_postgres_database("fhir_facade_test") as url:
        database = Database(DatabaseSettings(url))
        upgrade(database.engine)
        database.dispose()
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    yield from _fresh_database(request, tmp_path)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def shared_database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """One database for all of a module's tests, for modules that start real servers:
    their tests each build what they use under fresh ids, so they can share the database
    and the servers on it (a server takes seconds to start). Override `database_url`
    with it in such a module. On PostgreSQL it is this process's test database, emptied
    when the module is done (a process runs one module's tests at a time)."""
    yield from _fresh_database(request, tmp_path_factory.mktemp("shared"))


def _fresh_database(request: pytest.FixtureRequest, folder: Path) -> Iterator[str]:
    """The URL of an empty, migrated database of the kind `request.param` names: a copy
    of the SQLite template in `folder`, or this process's PostgreSQL database, emptied
    afterwards."""
    if request.param == "sqlite":
        path = folder / "facade.sqlite3"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite:///{path}"
        return
    url = request.getfixturevalue("postgres_url")
    yield url
    empty_database(url)


@pytest.fixture(scope="session")
def demo_snapshots(
    tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path
) -> Iterator[DemoSnapshots]:
    """The demo clinic's rows, loaded once per test process (and database kind, and day)."""
    with contextlib.ExitStack() as stack:

        @functools.cache
        def postgres_source() -> str:
            url = stack.enter_context(own_postgres_database("fhir_facade_demo"))
            database = Database(DatabaseSettings(url))
            upgrade(database.engine)
            database.dispose()
            return url

        yield DemoSnapshots(tmp_path_factory.mktemp("demo"), sqlite_template, postgres_source)


@pytest.fixture
def demo_clinic(database_url: str, demo_snapshots: DemoSnapshots) -> Callable[..., bool]:
    """Loads the demo clinic into the test's database, as `store.demo.load_demo(db,
    today=...)` would (True when loaded; False when a clinic is there already), but copied
    from a snapshot in milliseconds instead of booked anew."""
    kind = make_url(database_url).get_backend_name()

    def load(today: dt.date | None = None) -> bool:
        return copy_demo(demo_snapshots.rows(kind, today or dt.date.today()), database_url)

    return load


def empty_database(url: str) -> None:
    """Delete every row, children first, in one round trip: a handful of rows costs ~5 ms,
    TRUNCATE ~0.3 s."""
    with _admin_engine(url).begin() as conn:
        conn.exec_driver_sql(_DELETE_ALL)


_DELETE_ALL = "; ".join(f'DELETE FROM "{t.name}"' for t in reversed(Base.metadata.sorted_tables))


@functools.cache
def _admin_engine(url: str) -> Engine:
    """One engine per database URL for the whole test process (and so one connection
    kept open), instead of a new connection for every test."""
    return create_engine(url, poolclass=StaticPool)


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    db = Database(DatabaseSettings(database_url))
    yield db
    db.dispose()


@pytest.fixture
def app(database_url: str, tmp_path: Path) -> Iterator[Flask]:
    application = create_app(
        {
            "database_url": database_url,
            "instance_path": tmp_path / "instance",
            "jwt_secret": TEST_SECRET,
            "base_url": "http://testserver/fhir",
        }
    )
    application.config["TESTING"] = True
    yield application
    application.extensions["fhir_facade.db"].dispose()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


STAFF_SCOPE = "user/*.cruds"
ADMIN_SCOPE = "user/*.cruds __schedule.manage"


@pytest.fixture
def mint(app: Flask) -> Callable[[str], dict[str, str]]:
    """Authorization headers for a token with the given scopes."""

    def headers(scope: str = STAFF_SCOPE) -> dict[str, str]:
        token = app.extensions["fhir_facade.tokens"].mint("tester", scope, dt.timedelta(hours=1))
        return {"Authorization": f"Bearer {token}"}

    return headers
