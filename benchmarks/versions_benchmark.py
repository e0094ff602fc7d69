"""What keeping every version (store.history) costs a booking: the same bookings with and
without version snapshots, alternating, on a fresh SQLite file and, when a URL is given,
on a fresh PostgreSQL database. Prints the median and mean time per booking (the store's
`book_patient` in its own transaction, as `POST /fhir/Appointment` runs it) and the SQL
statements per booking.

Not a test.

    .venv/bin/python benchmarks/versions_benchmark.py [postgresql+psycopg://postgres@127.0.0.1:5432/test]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fhir_facade.registry import snapshot  # noqa: E402
from store.access import STAFF  # noqa: E402
from store.booking import BookingRequest, book_patient  # noqa: E402
from store.db import Database, DatabaseSettings  # noqa: E402
from store.migrate import upgrade  # noqa: E402
from tests.factories import make_clinic, make_patient, make_session  # noqa: E402

BOOKINGS = 300
ROUNDS = 3


@contextmanager
def fresh_database(postgres_url: str | None) -> Iterator[str]:
    if postgres_url is None:
        with tempfile.TemporaryDirectory() as folder:
            url = f"sqlite:///{folder}/versions.sqlite3"
            _migrate(url)
            yield url
        return
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    name = f"versions_bench_{uuid.uuid4().hex[:8]}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        url = make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
        _migrate(url)
        yield url
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _migrate(url: str) -> None:
    database = Database(DatabaseSettings(url))
    upgrade(database.engine)
    database.dispose()


def bookings(url: str, keep_versions: bool) -> tuple[list[float], float]:
    """Milliseconds per booking, and statements per booking."""
    database = Database(DatabaseSettings(url))
    if keep_versions:
        database.keep_versions(snapshot)

    def build(db: Session) -> tuple[list[str], list[str]]:
        clinic = make_clinic(db)
        sessions = [make_session(db, clinic, capacity=BOOKINGS).id for _ in range(3)]
        return sessions, [make_patient(db).id for _ in range(BOOKINGS)]

    sessions, patients = database.write(build)
    statements = 0

    def count(*_: object) -> None:
        nonlocal statements
        statements += 1

    event.listen(database.engine, "before_cursor_execute", count)
    times = []
    for i, patient in enumerate(patients):
        request = BookingRequest(patient_id=patient, session_id=sessions[i % 3])
        started = time.perf_counter()
        database.write(partial(book_patient, request=request, access=STAFF))
        times.append((time.perf_counter() - started) * 1000)
    database.dispose()
    return times, statements / len(patients)


def main() -> None:
    backends: list[tuple[str, str | None]] = [("sqlite", None)]
    if len(sys.argv) > 1:
        backends.append(("postgresql", sys.argv[1]))
    print("backend     versions kept  p50 ms  mean ms  statements/booking")
    for backend, postgres_url in backends:
        results: dict[bool, list[float]] = {False: [], True: []}
        per_booking: dict[bool, float] = {}
        for _ in range(ROUNDS):
            for keep in (False, True):
                with fresh_database(postgres_url) as url:
                    times, per_booking[keep] = bookings(url, keep)
                results[keep].extend(times)
        for keep in (False, True):
            times = results[keep]
            print(
                f"{backend:11} {'yes' if keep else 'no':13} {statistics.median(times):6.2f} "
                f"{statistics.mean(times):8.2f}  {per_booking[keep]:.0f}"
            )


if __name__ == "__main__":
    main()
