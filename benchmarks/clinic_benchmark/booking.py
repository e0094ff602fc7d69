"""Booking load: over HTTP with concurrent clients, in-process, and the driver's own rate."""

from __future__ import annotations

import datetime as dt
import http.client
import itertools
import sqlite3
import statistics
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import orjson
from sqlalchemy import insert, text

from benchmarks.clinic_benchmark.harness import (
    FHIR_JSON,
    Bench,
    CpuMeter,
    Server,
    start_server,
    stats,
    timed,
)
from benchmarks.clinic_data import patient_id
from store.models import HOLDS_PLACE_SQL, GroupSession

#: The database's own work for a booking, as `driver_booking` and the bare server
#: (`bare.py`) send it: `{p}` a placeholder, `{f}` false, in the backend's spelling.
TAKE_PLACE = (
    "UPDATE group_session SET booked = booked + 1, version = version + 1, last_updated = {p} "
    "WHERE id = {p} AND booked < capacity AND blocked = {f}"
)
ADD_BOOKING = (
    "INSERT INTO booking (id, session_id, patient_id, status, start_at, end_at, "
    "appointment_type, department_id, created, version, last_updated) "
    "VALUES ({p}, {p}, {p}, 'booked', {p}, {p}, 'group-therapy', {p}, {p}, 1, {p})"
)


def make_load_sessions(bench: Bench, prefix: str, count: int, capacity: int) -> list[str]:
    """Fresh sessions far in the future on provider 0's schedule, booked 0."""
    schedule = bench.shape.schedules[0]
    base = dt.datetime.combine(
        bench.shape.this_monday + dt.timedelta(weeks=60), dt.time(12), dt.UTC
    )
    now = dt.datetime.now(dt.UTC)
    rows = [
        {
            "id": f"{prefix}-{i:05d}",
            "schedule_id": schedule,
            "start_at": base + dt.timedelta(hours=2 * i),
            "end_at": base + dt.timedelta(hours=2 * i, minutes=90),
            "capacity": capacity,
            "booked": 0,
            "appointment_type": "group-therapy",
            "service_type": "behavioral-health-group",
            "closed": False,
            "blocked": False,
            "version": 1,
            "last_updated": now,
        }
        for i in range(count)
    ]
    with bench.engine.begin() as conn:
        conn.execute(insert(GroupSession), rows)
    return [r["id"] for r in rows]


def load_plan(
    bench: Bench, sessions: list[str], capacity: int, extra: float, offset: int
) -> list[tuple[str, str]]:
    """(session, patient) for every request: sessions round-robin, patients never repeated
    within a session; `extra` more requests than places, so the last ones meet full sessions."""
    pool = bench.shape.unrestricted
    count = int(len(sessions) * capacity * (1 + extra))
    plan = []
    for i in range(count):
        s = i % len(sessions)
        n = (offset + i * 7919) % len(pool)  # 7919 is prime: distinct for i < len(pool)
        plan.append((sessions[s], patient_id(pool[n])))
    return plan


def appointment_body(session_id: str, patient: str) -> bytes:
    return orjson.dumps(
        {
            "resourceType": "Appointment",
            "status": "booked",
            "slot": [{"reference": f"Slot/{session_id}"}],
            "participant": [{"actor": {"reference": f"Patient/{patient}"}, "status": "accepted"}],
        }
    )


def run_clients(
    clients: int,
    plan: list[Any],
    send: Callable[[Any, Any], int],
    connect: Callable[[], Any],
    close: Callable[[Any], None],
) -> dict[str, Any]:
    """`clients` threads take the plan's items in order; returns statuses, latencies, rate."""
    counter = itertools.count()
    statuses: Counter[int] = Counter()
    latencies: list[float] = []
    lock = threading.Lock()
    barrier = threading.Barrier(clients + 1)

    def worker() -> None:
        handle = connect()
        mine: list[tuple[int, float]] = []
        barrier.wait()
        try:
            while (i := next(counter)) < len(plan):
                started = time.perf_counter()
                status = send(handle, plan[i])
                mine.append((status, (time.perf_counter() - started) * 1000))
        finally:
            close(handle)
            with lock:
                for status, ms in mine:
                    statuses[status] += 1
                    if status in (200, 201):
                        latencies.append(ms)

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    barrier.wait()
    started = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    ok = statuses[200] + statuses[201]
    return {
        "requests": len(plan),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "seconds": round(wall, 3),
        "bookings_per_s": round(ok / wall, 1),
        "requests_per_s": round(len(plan) / wall, 1),
        "booking_ms": stats(latencies),
    }


def http_booking(
    bench: Bench, server: Server, plan: list[tuple[str, str]], clients: int
) -> dict[str, Any]:
    headers = {
        "Authorization": f"Bearer {bench.token}",
        "Content-Type": FHIR_JSON,
        "Accept": FHIR_JSON,
    }

    def connect() -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)

    def send(conn: http.client.HTTPConnection, item: tuple[str, str]) -> int:
        body = appointment_body(*item)
        for attempt in range(3):
            try:
                conn.request("POST", "/fhir/Appointment", body, headers)
                response = conn.getresponse()
                response.read()
                return response.status
            except (http.client.HTTPException, OSError):
                conn.close()
                if attempt == 2:
                    return 599
        return 599

    return run_clients(clients, plan, send, connect, lambda c: c.close())


def http_floor(bench: Bench, server: Server, requests: int, clients: int) -> dict[str, Any]:
    """The same clients asking the same server for its capability statement, the cheapest
    FHIR answer (no database): what any request costs before its own work. Its rate bounds
    the rate of every request the server can answer on this machine."""
    headers = {"Authorization": f"Bearer {bench.token}", "Accept": FHIR_JSON}
    path = urlsplit(server.base).path + "/metadata"

    def connect() -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)

    def send(conn: http.client.HTTPConnection, _: object) -> int:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        response.read()
        return response.status

    return run_clients(clients, [None] * requests, send, connect, lambda c: c.close())


def driver_booking(
    bench: Bench, plan: list[tuple[str, str]], clients: int, opened: list[Any]
) -> dict[str, Any]:
    """The database's own limit: the conditional UPDATE plus the INSERT, one transaction each,
    straight through the driver with the same concurrency."""
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    start = dt.datetime(2030, 1, 1, 12)
    end = start + dt.timedelta(minutes=90)
    department = bench.shape.schedule_department[bench.shape.schedules[0]]
    if bench.target.backend == "postgresql":
        import psycopg

        take_sql, add_sql = TAKE_PLACE.format(p="%s", f="false"), ADD_BOOKING.format(p="%s")

        def connect() -> Any:
            return psycopg.connect(bench.target.conninfo)

        def send(conn: Any, item: tuple[str, str]) -> int:
            session, patient = item
            cur = conn.execute(take_sql, (now, session))
            if cur.rowcount != 1:
                conn.rollback()
                return 409
            conn.execute(
                add_sql, (uuid.uuid4().hex, session, patient, start, end, department, now, now)
            )
            conn.commit()
            return 201
    else:
        take_sql, add_sql = TAKE_PLACE.format(p="?", f="0"), ADD_BOOKING.format(p="?")
        fmt = "%Y-%m-%d %H:%M:%S.%f"

        def connect() -> Any:
            conn = sqlite3.connect(
                bench.target.conninfo, isolation_level=None, check_same_thread=False, timeout=15
            )
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=15000")
            return conn

        def send(conn: Any, item: tuple[str, str]) -> int:
            session, patient = item
            conn.execute("BEGIN IMMEDIATE")
            cur = conn.execute(take_sql, (now.strftime(fmt), session))
            if cur.rowcount != 1:
                conn.execute("ROLLBACK")
                return 409
            conn.execute(
                add_sql,
                (
                    uuid.uuid4().hex,
                    session,
                    patient,
                    start.strftime(fmt),
                    end.strftime(fmt),
                    department,
                    now.strftime(fmt),
                    now.strftime(fmt),
                ),
            )
            conn.execute("COMMIT")
            return 201

    # Connections stay open (closed by the caller) so their server processes' CPU time can
    # still be read when the load ends.
    return run_clients(clients, plan, send, connect, opened.append)


def metered(
    server: Server | None, units: int, load: Callable[[], dict[str, Any]]
) -> dict[str, Any]:
    """`load`'s result with the CPU time spent while it ran (`CpuMeter`: the server's,
    PostgreSQL's, the clients'), per unit as well."""
    meter = CpuMeter(server)
    meter.start()
    result = load()
    result["cpu"] = meter.stop(units)
    return result


def bare_booking(
    bench: Bench, clients: int, sessions: int, capacity: int, sizes: tuple[int, int]
) -> dict[str, Any]:
    """The same clients and plan against the bare booking server (`bare.py`): the
    driver's two statements behind Flask and gunicorn, and nothing else."""
    department = bench.shape.schedule_department[bench.shape.schedules[0]]
    bare = start_server(bench.target, *sizes, bare_department=department)
    try:
        plan = load_plan(
            bench,
            make_load_sessions(bench, "load-bare", sessions, capacity),
            capacity,
            0.1,
            offset=3,
        )
        result = metered(bare, len(plan), lambda: http_booking(bench, bare, plan, clients))
    finally:
        bare.stop()
    return result


def overbooking_check(bench: Bench) -> dict[str, int]:
    with bench.engine.connect() as conn:
        row = conn.execute(
            text(f"""
            SELECT
              sum(CASE WHEN s.booked > s.capacity OR coalesce(a.n, 0) > s.capacity
                       THEN 1 ELSE 0 END),
              sum(CASE WHEN s.booked <> coalesce(a.n, 0) THEN 1 ELSE 0 END),
              count(*)
            FROM group_session s
            LEFT JOIN (SELECT session_id, count(*) AS n FROM booking
                       WHERE {HOLDS_PLACE_SQL} GROUP BY session_id) a
              ON a.session_id = s.id
        """)
        ).one()
    return {
        "overbooked_sessions": int(row[0] or 0),
        "count_mismatches": int(row[1] or 0),
        "sessions_checked": int(row[2]),
    }


def in_process_booking(bench: Bench, capacity: int) -> dict[str, Any]:
    """One booking at a time through the Flask test client: latency and SQL statements each."""
    sessions = make_load_sessions(bench, "load-inproc", 20, capacity)
    plan = load_plan(bench, sessions, capacity, 0.0, offset=17)[: max(50, bench.iterations // 3)]
    statements = []

    def book(i: int) -> None:
        session, patient = plan[i]
        bench.counter.reset()
        response = bench.client.post(
            "/fhir/Appointment",
            data=appointment_body(session, patient),
            content_type=FHIR_JSON,
            headers=bench.headers,
        )
        statements.append(bench.counter.count)
        assert response.status_code == 201, response.get_data(as_text=True)[:300]

    samples = timed(book, len(plan) - 5, 5)
    return {"booking_ms": stats(samples), "sql_per_booking": statistics.median(statements)}


def measure_booking(
    bench: Bench,
    server: Server,
    clients: int,
    sessions: int,
    capacity: int,
    sizes: tuple[int, int] = (4, 4),
) -> dict[str, Any]:
    """`sizes`: the server's gunicorn workers and threads, which the bare server gets too."""
    result: dict[str, Any] = {"clients": clients, "sessions": sessions, "capacity": capacity}
    # Sequential latency first (one client, keep-alive), on sessions of its own.
    seq_sessions = make_load_sessions(bench, "load-seq", 20, capacity)
    seq_plan = load_plan(bench, seq_sessions, capacity, 0.0, offset=11)[: bench.iterations]
    result["sequential"] = http_booking(bench, server, seq_plan, 1)
    result["in_process"] = in_process_booking(bench, capacity)
    http_sessions = make_load_sessions(bench, "load-http", sessions, capacity)
    http_plan = load_plan(bench, http_sessions, capacity, 0.1, offset=1)
    requests = len(http_plan)
    result["http"] = metered(
        server, requests, lambda: http_booking(bench, server, http_plan, clients)
    )
    result["server_rss_mb_after_load"] = server.rss_mb()
    result["floor"] = metered(
        server, requests, lambda: http_floor(bench, server, requests, clients)
    )
    if bench.target.backend == "postgresql":
        result["bare"] = bare_booking(bench, clients, sessions, capacity, sizes)
    db_sessions = make_load_sessions(bench, "load-db", sessions, capacity)
    db_plan = load_plan(bench, db_sessions, capacity, 0.1, offset=5)
    opened: list[Any] = []
    result["driver"] = metered(
        None, len(db_plan), lambda: driver_booking(bench, db_plan, clients, opened)
    )
    for conn in opened:
        conn.close()
    result["ratio_to_driver"] = round(
        result["http"]["bookings_per_s"] / max(result["driver"]["bookings_per_s"], 0.001), 3
    )
    result["check"] = overbooking_check(bench)
    return result
