"""A silent network to the database does not hang requests (issue 11, item 6).

Between the server and PostgreSQL sits a proxy the test controls. When it black-holes
the traffic (bytes accepted, never delivered, never answered), a request gets a 503
OperationOutcome once the configured bounds run out, instead of waiting for ever; when
the network returns, the pool drops the dead connections and requests succeed again.
SQLite is a local file, with no network to lose: these tests run on PostgreSQL only.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from flask import Flask
from sqlalchemy.engine import make_url
from werkzeug.test import TestResponse

from fhir_facade import create_app
from tests.conftest import STAFF_SCOPE, TEST_SECRET, _admin_engine
from tests.factories import make_patient
from tests.integration.helpers import FHIR_JSON, fhir, outcome
from tests.integration.tcp_proxy import BlackHoleProxy

pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)

#: Far above the bounds below (1 s read, 2 s connect): only a hang takes this long.
HANG = 60
HOUR = dt.timedelta(hours=1)


@pytest.fixture
def proxy(database_url: str) -> Iterator[BlackHoleProxy]:
    url = make_url(database_url)
    with BlackHoleProxy((url.host or "127.0.0.1", url.port or 5432)) as running:
        yield running


@pytest.fixture
def proxied_app(database_url: str, proxy: BlackHoleProxy, tmp_path: Path) -> Iterator[Flask]:
    through_proxy = make_url(database_url).set(host="127.0.0.1", port=proxy.port)
    application = create_app(
        {
            "database_url": through_proxy.render_as_string(hide_password=False),
            "instance_path": tmp_path / "instance",
            "jwt_secret": TEST_SECRET,
            "base_url": "http://testserver/fhir",
            "db_connect_timeout_s": 2,
            # Short, so a black hole costs the test a second; not shorter: on a loaded
            # machine the proxy's threads (in this process) stalled a healthy answer 0.3 s.
            "db_read_timeout_ms": 1000,
        }
    )
    yield application
    application.extensions["fhir_facade.db"].dispose()


def _request(app: Flask, method: str, path: str, **options: Any) -> TestResponse:
    """Make the request in a thread; fail (instead of hanging the suite) if it hangs."""
    answers: list[TestResponse] = []
    token = app.extensions["fhir_facade.tokens"].mint("tester", "user/*.cruds", HOUR)
    headers = {"Authorization": f"Bearer {token}"}
    worker = threading.Thread(
        target=lambda: answers.append(
            app.test_client().open(path, method=method, headers=headers, **options)
        ),
        daemon=True,
    )
    worker.start()
    worker.join(HANG)
    assert answers, f"{method} {path} hung with the database unreachable"
    return answers[0]


def test_a_read_during_a_network_black_hole_gets_a_503_and_the_next_after_it_a_200(
    proxied_app, proxy, database
):
    patient = database.write(lambda db: make_patient(db, family="Reachable")).id
    path = f"/fhir/Patient/{patient}"
    assert fhir(_request(proxied_app, "GET", path), 200)["id"] == patient  # pooled now

    proxy.black_hole()
    refused = _request(proxied_app, "GET", path)
    issue = outcome(refused, 503, code="no-store", detail="database-unavailable")
    assert patient not in issue["details"]["text"]

    proxy.restore()
    assert fhir(_request(proxied_app, "GET", path), 200)["id"] == patient


def test_a_write_during_a_network_black_hole_gets_a_503_and_stores_nothing(
    proxied_app, proxy, database
):
    body = {
        "resourceType": "Patient",
        "name": [{"family": "Unreachable", "given": ["Uma"]}],
        "gender": "female",
    }
    fhir(_request(proxied_app, "GET", "/fhir/Patient"), 200)  # a pooled connection

    proxy.black_hole()
    refused = _request(
        proxied_app, "POST", "/fhir/Patient", json=body, content_type="application/fhir+json"
    )
    outcome(refused, 503, code="no-store", detail="database-unavailable")

    proxy.restore()
    found = fhir(_request(proxied_app, "GET", "/fhir/Patient?family=unreachable"), 200)
    assert found["total"] == 0
    created = _request(
        proxied_app, "POST", "/fhir/Patient", json=body, content_type="application/fhir+json"
    )
    fhir(created, 201)


def test_connections_the_database_ended_are_replaced_before_the_next_request(
    app, client, mint, database_url
):
    """A restart, `pg_terminate_backend` or an idle timeout ends the pooled connections;
    the next read and the next write each get a fresh one, without a failed request
    (and without a round trip asking each connection first)."""
    headers = mint(STAFF_SCOPE)
    body = {"resourceType": "Patient", "name": [{"family": "Ended"}], "gender": "other"}
    made = client.post("/fhir/Patient", json=body, headers=headers, content_type=FHIR_JSON)
    patient = fhir(made, 201)["id"]
    assert fhir(client.get(f"/fhir/Patient/{patient}", headers=headers), 200)["id"] == patient
    pool = app.extensions["fhir_facade.db"].engine.pool
    assert pool.checkedin() >= 1  # the requests' connections wait in the pool

    ended = _end_other_connections(database_url)

    assert ended >= pool.checkedin()
    assert fhir(client.get(f"/fhir/Patient/{patient}", headers=headers), 200)["id"] == patient
    again = client.post("/fhir/Patient", json=body, headers=headers, content_type=FHIR_JSON)
    fhir(again, 201)
    found = fhir(client.get("/fhir/Patient?family=ended", headers=headers), 200)
    assert found["total"] == 2


def _end_other_connections(database_url: str) -> int:
    """Terminate the other connections to the test's database (the test's app's pool
    among them; the suite's own for emptying it excepted), and wait until they are
    gone; how many were."""
    with _admin_engine(database_url).connect() as admin:
        kept = admin.exec_driver_sql("SELECT pg_backend_pid()").scalar()
    url = make_url(database_url).set(drivername="postgresql")
    with psycopg.connect(url.render_as_string(hide_password=False), autocommit=True) as conn:
        pids = [
            pid
            for (pid,) in conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid() AND pid <> %s AND backend_type = 'client backend'",
                (kept,),
            )
        ]
        for pid in pids:
            conn.execute("SELECT pg_terminate_backend(%s, 5000)", (pid,))
    return len(pids)
