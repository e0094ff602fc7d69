"""Time `$find` and `$book` for a 52-week Mon/Wed/Fri series and count their SQL statements.

Not a test. Builds a provider schedule with a year of Mon/Wed/Fri 10:00 group
sessions (plus daily 14:00 sessions, so the query has something to skip) on a fresh
SQLite file, and on PostgreSQL when a URL is given, then runs the two operations
through the Flask app (HTTP layer, mapping, store) and prints a table.

    .venv/bin/python benchmarks/series_benchmark.py [postgresql+psycopg://postgres@127.0.0.1:5432/test]
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fhir_facade import create_app  # noqa: E402
from store.migrate import upgrade  # noqa: E402
from tests.factories import MONDAY, make_clinic, make_patient, make_session  # noqa: E402

WEEKS = 52
SECRET = "benchmark-signing-key-not-for-production-0123456789"


def _build(db: Any) -> tuple[str, str]:
    clinic = make_clinic(db)
    for day in range(7 * (WEEKS + 1)):
        start = MONDAY + dt.timedelta(days=day)
        if start.weekday() in (0, 2, 4):
            make_session(db, clinic, start=start, capacity=10)
        make_session(db, clinic, start=start + dt.timedelta(hours=4), capacity=10)
    return make_patient(db).id, clinic.provider_id


def _find_body(patient: str, provider: str) -> dict[str, Any]:
    return {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "patient", "valueReference": {"reference": f"Patient/{patient}"}},
            {"name": "practitioner", "valueReference": {"reference": f"Practitioner/{provider}"}},
            {
                "name": "timing",
                "valueTiming": {
                    "repeat": {
                        "boundsPeriod": {"start": MONDAY.date().isoformat()},
                        "count": 3 * WEEKS,
                        "periodUnit": "wk",
                        "dayOfWeek": ["mon", "wed", "fri"],
                        "timeOfDay": ["10:00:00"],
                        "duration": 90,
                        "durationUnit": "min",
                    }
                },
            },
        ],
    }


def run(label: str, database_url: str, folder: Path) -> list[tuple[str, str, int, float, int]]:
    app = create_app(
        {
            "database_url": database_url,
            "instance_path": folder,
            "jwt_secret": SECRET,
            "base_url": "http://bench/fhir",
        }
    )
    database = app.extensions["fhir_facade.db"]
    upgrade(database.engine)
    patient, provider = database.write(_build)
    statements = 0

    @event.listens_for(database.engine, "before_cursor_execute")
    def _count(*_: Any) -> None:
        nonlocal statements
        statements += 1

    token = app.extensions["fhir_facade.tokens"].mint(
        "bench", "user/*.cruds", dt.timedelta(hours=1)
    )
    headers = {"Authorization": f"Bearer {token}"}
    client = app.test_client()
    rows = []

    def call(name: str, url: str, body: dict[str, Any]) -> dict[str, Any]:
        nonlocal statements
        statements = 0
        started = time.perf_counter()
        response = client.post(
            url, data=json.dumps(body), content_type="application/fhir+json", headers=headers
        )
        elapsed = (time.perf_counter() - started) * 1000
        assert response.status_code == 200, response.get_data(as_text=True)[:500]
        answer: dict[str, Any] = response.get_json()
        count = sum(1 for e in answer["entry"] if e["resource"]["resourceType"] == "Appointment")
        rows.append((label, name, count, elapsed, statements))
        return answer

    preview = call("$find", "/fhir/Appointment/$find", _find_body(patient, provider))
    kept = [e["resource"] for e in preview["entry"] if e["search"]["mode"] == "match"]
    book = {
        "resourceType": "Parameters",
        "parameter": [{"name": "appointment-resource", "resource": k} for k in kept],
    }
    call("$book", "/fhir/Appointment/$book", book)
    database.dispose()
    return rows


def main(argv: list[str]) -> None:
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        rows += run("sqlite", f"sqlite:///{folder}/bench.sqlite3", Path(folder) / "sqlite")
        if len(argv) > 1:
            admin_url = make_url(argv[1])
            name = f"fhir_facade_bench_{uuid.uuid4().hex[:8]}"
            admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
            try:
                url = admin_url.set(database=name).render_as_string(hide_password=False)
                rows += run("postgresql", url, Path(folder) / "pg")
            finally:
                with admin.connect() as conn:
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                admin.dispose()
    print(
        f"{'backend':<11} {'operation':<9} {'occurrences':>11} {'ms':>9} {'SQL':>6} {'SQL/occ':>8}"
    )
    for label, name, count, elapsed, statements in rows:
        per = statements / count if count else 0
        print(f"{label:<11} {name:<9} {count:>11} {elapsed:>9.1f} {statements:>6} {per:>8.2f}")


if __name__ == "__main__":
    main(sys.argv)
