"""Benchmark a real-sized clinic network (issue 6): build it, measure the hot paths, report.

    .venv/bin/python -m benchmarks.clinic_benchmark --backend postgresql --scale 1 --out report.json
    .venv/bin/python -m benchmarks.clinic_benchmark --backend sqlite --scale 1
    .venv/bin/python -m benchmarks.clinic_benchmark --backend postgresql --scales 1,4,16

Not a test: it times things. For each backend and scale it creates its own
database (PostgreSQL: a new database next to the one in --postgres-url, dropped
afterwards; SQLite: a file in a temporary folder), builds the synthetic network
of `benchmarks.clinic_data` with bulk inserts, then measures

  1. week view: one provider's week of Slots (~15), in-process (Flask test client)
     and over HTTP (a real `fhir-facade serve`, gunicorn, keep-alive connection);
  2. a 500-Slot search page: server time and its parts (SQL, ORM, mapping,
     bundle, orjson) against the orjson floor for the same rows;
  3. patient search by family-name prefix, phone, SSN (and MRN); on PostgreSQL
     the EXPLAIN ANALYZE of each statement the app issued;
  4. booking throughput over HTTP with N concurrent clients into sessions with
     capacity, the overbooked count checked in the database, and the database's
     own limit for the same conditional UPDATE + INSERT through the driver;
  5. `$find` / `$book` of a 52-week Mon/Wed/Fri series: time and SQL statements;
  6. gunicorn workers' RSS after the load; with several scales, week view and
     booking latency per scale (flat is the goal).

Prints markdown tables and writes a JSON report (--out).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import http.client
import itertools
import json
import os
import platform
import random
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import requests
from sqlalchemy import create_engine, event, insert, text
from sqlalchemy.engine import Engine, make_url

from benchmarks.clinic_data import (
    LOCAL_TIMES,
    ClinicShape,
    PostgresWriter,
    SqliteWriter,
    Writer,
    build,
    patient_id,
    phone_of,
)
from fhir_facade import create_app
from fhir_facade.auth import ssn_hasher
from fhir_facade.bundle import searchset
from fhir_facade.config import Settings
from mappings.search import parse_search
from mappings.slot import slot_to_fhir
from store import search as store_search
from store.access import Access
from store.db import DatabaseSettings, make_engine
from store.migrate import upgrade
from store.models import HOLDS_PLACE, GroupSession
from store.ssn import SSN_SYSTEM

REPO_ROOT = Path(__file__).resolve().parents[1]
SECRET = "benchmark-signing-key-not-for-production-0123456789"
SSN_KEYS = "bench:benchmark-ssn-key-0123456789abcdef"
SCOPE = "user/*.cruds __schedule.manage"
DEFAULT_PG = os.environ.get(
    "FHIR_FACADE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
FHIR_JSON = "application/fhir+json"
MRN_SYSTEM = "http://fhir-facade.org/fhir/sid/mrn"
ACTIVE_SQL = ", ".join(f"'{s.value}'" for s in sorted(HOLDS_PLACE))


# -- small helpers -------------------------------------------------------------


def stats(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    if not ordered:
        return {"n": 0}

    def q(p: float) -> float:
        return ordered[min(len(ordered) - 1, int(round(p * (len(ordered) - 1))))]

    return {
        "n": len(ordered),
        "p50": round(q(0.50), 3),
        "p95": round(q(0.95), 3),
        "mean": round(statistics.fmean(ordered), 3),
        "max": round(ordered[-1], 3),
    }


#: Stop sampling one latency after this long (keeping at least MIN_SAMPLES): a slow path
#: must not turn the run into an hour.
BUDGET_S = 20.0
MIN_SAMPLES = 20


def timed(call: Callable[[int], Any], n: int, warmup: int) -> list[float]:
    for i in range(warmup):
        call(i)
    samples: list[float] = []
    deadline = time.perf_counter() + BUDGET_S
    for i in range(n):
        started = time.perf_counter()
        call(warmup + i)
        samples.append((time.perf_counter() - started) * 1000)
        if len(samples) >= MIN_SAMPLES and started > deadline:
            break
    return samples


def machine() -> dict[str, Any]:
    model = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "ram_gb": round(mem_kb / 1024 / 1024, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


class StatementCounter:
    """Counts statements and sums their driver time on an engine (before/after cursor execute)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.count = 0
        self.seconds = 0.0
        self.captured: list[tuple[str, Any]] | None = None
        self._local = threading.local()
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "after_cursor_execute", self._after)

    def _before(self, conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        self.count += 1
        self._local.started = time.perf_counter()
        if self.captured is not None:
            self.captured.append((statement, parameters))

    def _after(self, *_: Any) -> None:
        self.seconds += time.perf_counter() - getattr(self._local, "started", time.perf_counter())

    def reset(self) -> None:
        self.count = 0
        self.seconds = 0.0

    def close(self) -> None:
        event.remove(self.engine, "before_cursor_execute", self._before)
        event.remove(self.engine, "after_cursor_execute", self._after)


# -- databases -----------------------------------------------------------------


@dataclass
class Target:
    backend: str
    url: str  # SQLAlchemy URL the app uses
    folder: Path
    conninfo: str = ""  # libpq conninfo (PostgreSQL) or file path (SQLite)

    def writer(self) -> Writer:
        if self.backend == "postgresql":
            return PostgresWriter(self.conninfo)
        return SqliteWriter(self.conninfo)


@contextlib.contextmanager
def target_database(backend: str, scale: float, pg_url: str, root: Path) -> Iterator[Target]:
    folder = root / f"{backend}-{scale:g}"
    folder.mkdir(parents=True, exist_ok=True)
    if backend == "sqlite":
        path = folder / "bench.sqlite3"
        yield Target(backend, f"sqlite:///{path}", folder, str(path))
        return
    admin_url = make_url(pg_url)
    name = f"fhir_facade_bench_{str(scale).replace('.', '_')}_{uuid.uuid4().hex[:6]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        url = admin_url.set(database=name)
        conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
        yield Target(backend, url.render_as_string(hide_password=False), folder, conninfo)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def migrate(target: Target) -> None:
    engine = make_engine(DatabaseSettings(url=target.url))
    upgrade(engine)
    engine.dispose()


# -- the server ------------------------------------------------------------------


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    folder: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}/fhir"

    def workers(self) -> list[int]:
        path = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        with contextlib.suppress(OSError):
            return [int(p) for p in path.read_text().split()]
        return []

    def rss_mb(self) -> dict[str, float]:
        found = {"master": _rss_mb(self.process.pid)}
        for index, pid in enumerate(self.workers()):
            found[f"worker{index + 1}"] = _rss_mb(pid)
        return found

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=15)


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return 0.0


def _postgres_pids() -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (entry / "comm").read_text().strip() == "postgres":
                    pids.append(int(entry.name))
    return pids


class CpuMeter:
    """CPU seconds spent by the server, by PostgreSQL (if local) and by this process
    (the load clients) between start() and stop()."""

    def __init__(self, server: Server | None) -> None:
        self.server = server

    def _groups(self) -> dict[str, list[int]]:
        groups = {"client (this process)": [os.getpid()], "postgres (local)": _postgres_pids()}
        if self.server is not None:
            groups["server (gunicorn)"] = [self.server.process.pid, *self.server.workers()]
        return groups

    def _sample(self) -> dict[str, dict[int, float]]:
        return {g: {p: _cpu_seconds(p) for p in pids} for g, pids in self._groups().items()}

    def start(self) -> None:
        self.before = self._sample()
        self.started = time.perf_counter()

    def stop(self, units: int) -> dict[str, Any]:
        wall = time.perf_counter() - self.started
        after = self._sample()
        out: dict[str, Any] = {"wall_s": round(wall, 2), "cores": os.cpu_count()}
        busy = 0.0
        for group, now in after.items():
            spent = sum(t - self.before.get(group, {}).get(p, 0.0) for p, t in now.items())
            busy += spent
            out[group] = {"cpu_s": round(spent, 2),
                          "cpu_ms_per_booking": round(spent * 1000 / max(units, 1), 2)}
        out["machine_busy"] = round(busy / (wall * (os.cpu_count() or 1)), 2)
        return out


def _rss_mb(pid: int) -> float:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_server(target: Target, workers: int, threads: int) -> Server:
    folder = target.folder / f"server-{uuid.uuid4().hex[:6]}"
    folder.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FHIR_FACADE_")}
    env.update(
        FHIR_FACADE_DATABASE_URL=target.url,
        FHIR_FACADE_JWT_SECRET=SECRET,
        FHIR_FACADE_SSN_KEYS=SSN_KEYS,
        FHIR_FACADE_INSTANCE_PATH=str(folder / "instance"),
        XDG_RUNTIME_DIR=str(folder),
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")])),
    )
    port = _free_port()
    command = [
        sys.executable, "-m", "fhir_facade.cli", "serve", "--port", str(port),
        "--workers", str(workers), "--threads", str(threads),
    ]
    with (folder / "stdout.log").open("wb") as out, (folder / "stderr.log").open("wb") as err:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env, cwd=folder,
            start_new_session=True,
        )
    server = Server(process, port, folder)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError((folder / "stderr.log").read_text()[-3000:])
        with contextlib.suppress(requests.RequestException):
            if requests.get(f"{server.base}/metadata", timeout=2).status_code == 200:
                # Let every worker boot before measuring.
                while len(server.workers()) < workers and time.monotonic() < deadline:
                    time.sleep(0.1)
                time.sleep(1.0)
                return server
        time.sleep(0.2)
    server.stop()
    raise RuntimeError("server did not come up: " + (folder / "stderr.log").read_text()[-3000:])


# -- the measurements --------------------------------------------------------------


@dataclass
class Bench:
    target: Target
    shape: ClinicShape
    app: Any
    client: Any
    headers: dict[str, str]
    token: str
    counter: StatementCounter
    rng: random.Random
    iterations: int

    @property
    def engine(self) -> Engine:
        return self.app.extensions["fhir_facade.db"].engine

    def get(self, url: str) -> dict[str, Any]:
        response = self.client.get(url, headers=self.headers)
        assert response.status_code == 200, response.get_data(as_text=True)[:500]
        body: dict[str, Any] = orjson.loads(response.get_data())
        return body


def week_urls(bench: Bench, n: int) -> list[str]:
    """Random provider, random week within 20 weeks of today: the calendar tab."""
    rng = bench.rng
    urls = []
    for _ in range(n):
        schedule = rng.choice(bench.shape.schedules)
        monday = bench.shape.this_monday + dt.timedelta(weeks=rng.randrange(-20, 20))
        sunday_next = monday + dt.timedelta(days=7)
        urls.append(
            f"/fhir/Slot?schedule=Schedule/{schedule}&start=ge{monday}&start=lt{sunday_next}"
        )
    return urls


def measure_week_view(bench: Bench, server: Server | None) -> dict[str, Any]:
    n = bench.iterations
    urls = week_urls(bench, n + 20)
    sizes = [len(bench.get(u).get("entry", [])) for u in urls[:20]]
    result: dict[str, Any] = {
        "slots_per_week": round(statistics.fmean(sizes), 1),
        "in_process_ms": stats(timed(lambda i: bench.get(urls[i]), n, 20)),
    }
    if server is not None:
        with requests.Session() as http:
            http.headers.update({"Authorization": f"Bearer {bench.token}", "Accept": FHIR_JSON})

            def call(i: int) -> None:
                response = http.get(server.base + urls[i].removeprefix("/fhir"))
                assert response.status_code == 200, response.text[:300]

            result["http_ms"] = stats(timed(call, n, 20))
    return result


def measure_page(bench: Bench, server: Server | None) -> dict[str, Any]:
    """A 500-Slot page: the whole request, and its parts in the same run."""
    monday = bench.shape.this_monday + dt.timedelta(weeks=2)
    url = f"/fhir/Slot?start=ge{monday}&start=lt{monday + dt.timedelta(days=14)}&_count=500"
    first = bench.get(url)
    n = max(10, bench.iterations // 10)
    total = stats(timed(lambda i: bench.get(url), n, 3))
    pairs = [(k, v) for k, v in (p.split("=", 1) for p in url.split("?", 1)[1].split("&"))]
    access = Access()
    ssn = bench.app.extensions["fhir_facade.ssn"]
    database = bench.app.extensions["fhir_facade.db"]
    parts: dict[str, list[float]] = {k: [] for k in (
        "parse", "sql", "query_orm", "slot_to_fhir", "bundle", "dumps", "floor_same_dicts",
        "floor_plain_records",
    )}
    for _ in range(n):
        t0 = time.perf_counter()
        parsed = parse_search("Slot", pairs, access, ssn=ssn)
        t1 = time.perf_counter()
        bench.counter.reset()
        with database.reading() as db:
            page = store_search.run(db, parsed.query)
            t2 = time.perf_counter()
            sql = bench.counter.seconds
            matches = [slot_to_fhir(row) for row in page.rows]
            t3 = time.perf_counter()
            bundle = searchset("http://bench/fhir", parsed, matches, [], page.total)
            t4 = time.perf_counter()
            body = orjson.dumps(bundle)
            t5 = time.perf_counter()
            # Floor 1: the same document, already built as plain dicts, dumped again.
            prebuilt = orjson.loads(body)
            t6 = time.perf_counter()
            orjson.dumps(prebuilt)
            t7 = time.perf_counter()
            # Floor 2: the rows' own values as flat plain dicts (no FHIR shape), dumped.
            plain = [
                {"id": r.id, "schedule": r.schedule_id, "start": r.start, "end": r.end,
                 "capacity": r.capacity, "booked": r.booked, "closed": r.closed,
                 "blocked": r.blocked, "appointment_type": r.appointment_type,
                 "service_type": r.service_type, "version": r.version,
                 "last_updated": r.last_updated}
                for r in page.rows
            ]
            t8 = time.perf_counter()
            orjson.dumps(plain)
            t9 = time.perf_counter()
        for key, value in (
            ("parse", t1 - t0), ("sql", sql), ("query_orm", t2 - t1 - sql),
            ("slot_to_fhir", t3 - t2), ("bundle", t4 - t3), ("dumps", t5 - t4),
            ("floor_same_dicts", t7 - t6), ("floor_plain_records", t9 - t8),
        ):
            parts[key].append(value * 1000)
    p50 = {k: round(statistics.median(v), 3) for k, v in parts.items()}
    output = p50["slot_to_fhir"] + p50["bundle"] + p50["dumps"]
    result: dict[str, Any] = {
        "url": url,
        "entries": len(first.get("entry", [])),
        "total": first.get("total"),
        "bytes": len(orjson.dumps(first)),
        "server_ms": total,
        "parts_p50_ms": p50,
        "output_ms": round(output, 3),
        "output_share_of_server": round(output / total["p50"], 3),
        "output_vs_floor": round(output / p50["floor_same_dicts"], 2),
        "output_vs_plain_records_floor": round(output / p50["floor_plain_records"], 2),
    }
    if server is not None:
        with requests.Session() as http:
            http.headers.update({"Authorization": f"Bearer {bench.token}", "Accept": FHIR_JSON})
            result["http_ms"] = stats(
                timed(lambda i: http.get(server.base + url.removeprefix("/fhir")), n, 3)
            )
    return result


PREFIXES = ("smit", "rodr", "mart", "nguy", "brad", "lind", "hart", "mull")


def patient_queries(bench: Bench) -> dict[str, Callable[[int], str]]:
    rng = bench.rng
    shape = bench.shape
    ssns = shape.ssn_patients
    pool = shape.unrestricted

    def phone(_: int) -> str:
        digits = phone_of(rng.choice(pool)).replace("(", "").replace(") ", ".").replace("-", ".")
        return f"/fhir/Patient?phone={digits}"

    def ssn(_: int) -> str:
        digits = rng.choice(ssns)[1]
        return f"/fhir/Patient?identifier={SSN_SYSTEM}|{digits[:3]}-{digits[3:5]}-{digits[5:]}"

    def mrn(_: int) -> str:
        return f"/fhir/Patient?identifier={MRN_SYSTEM}|MRN{rng.choice(pool):08d}"

    return {
        "family=garc (common, ~0.5%)": lambda _: "/fhir/Patient?family=garc",
        "family=kirkst (rare)": lambda _: "/fhir/Patient?family=kirkst",
        "family=<random 4 letters of a name>": lambda _: (
            f"/fhir/Patient?family={rng.choice(PREFIXES)}"
        ),
        "phone": phone,
        "identifier=SSN": ssn,
        "identifier=MRN": mrn,
    }


def measure_patient_search(bench: Bench, server: Server | None) -> dict[str, Any]:
    results: dict[str, Any] = {}
    n = bench.iterations
    for name, make in patient_queries(bench).items():
        urls = [make(i) for i in range(n + 10)]
        sample = bench.get(urls[0])
        entry: dict[str, Any] = {
            "example": urls[0],
            "total": sample.get("total"),
            "returned": len(sample.get("entry", [])),
            "in_process_ms": stats(timed(lambda i, u=urls: bench.get(u[i]), n, 10)),
        }
        if server is not None:
            with requests.Session() as http:
                http.headers.update(
                    {"Authorization": f"Bearer {bench.token}", "Accept": FHIR_JSON}
                )
                entry["http_ms"] = stats(
                    timed(lambda i, u=urls: http.get(server.base + u[i].removeprefix("/fhir")),
                          n, 10)
                )
        entry["plan"] = explain(bench, urls[0])
        results[name] = entry
    return results


_BIG_TABLES = {"patient", "patient_phone", "patient_identifier", "booking", "group_session",
               "coverage"}


def explain(bench: Bench, url: str) -> dict[str, Any]:
    """The statements one request issued, each with its plan; whether only indexes served."""
    bench.counter.captured = []
    try:
        bench.get(url)
        captured = bench.counter.captured
    finally:
        bench.counter.captured = None
    plans = []
    with bench.engine.connect() as conn:
        for statement, parameters in captured:
            if not statement.lstrip().upper().startswith("SELECT"):
                continue
            if bench.target.backend == "postgresql":
                raw = conn.exec_driver_sql(
                    "EXPLAIN (ANALYZE, FORMAT JSON) " + statement, parameters
                ).scalar_one()
                plan = raw[0] if isinstance(raw, list) else json.loads(raw)[0]
                nodes = list(_plan_nodes(plan["Plan"]))
                plans.append({
                    "sql": " ".join(statement.split())[:400],
                    "execution_ms": plan.get("Execution Time"),
                    "nodes": [_describe(n) for n in nodes if "Scan" in n["Node Type"]],
                    # A Seq Scan, or an Index Scan with no Index Cond (the whole index walked
                    # for its order, every row filtered), reads the whole big table.
                    "seq_scans_on_big_tables": sorted({
                        n["Relation Name"] for n in nodes
                        if n.get("Relation Name") in _BIG_TABLES and (
                            n["Node Type"] == "Seq Scan"
                            or (n["Node Type"] in ("Index Scan", "Index Only Scan")
                                and "Index Cond" not in n))
                    }),
                })
            else:
                rows = conn.exec_driver_sql(
                    "EXPLAIN QUERY PLAN " + statement, parameters
                ).fetchall()
                details = [str(r[-1]) for r in rows]
                plans.append({
                    "sql": " ".join(statement.split())[:400],
                    "nodes": details,
                    # SCAN (unlike SEARCH) walks the whole table, even "USING INDEX" (for order).
                    "seq_scans_on_big_tables": sorted({
                        d.split()[1] for d in details
                        if d.startswith("SCAN ") and d.split()[1] in _BIG_TABLES
                    }),
                })
    return {
        "statements": plans,
        "index_only": all(not p["seq_scans_on_big_tables"] for p in plans),
    }


def _describe(n: dict[str, Any]) -> str:
    text_ = n["Node Type"]
    if "Index Name" in n:
        text_ += f" using {n['Index Name']}"
    if "Relation Name" in n:
        text_ += f" on {n['Relation Name']}"
    if "Index Cond" in n:
        text_ += f" [cond {n['Index Cond']}]"
    elif n["Node Type"] in ("Index Scan", "Index Only Scan"):
        text_ += " [no Index Cond: whole index walked]"
    if "Filter" in n:
        text_ += f" [filter {n['Filter']}; removed {n.get('Rows Removed by Filter', 0)}]"
    return text_ + f" rows={n.get('Actual Rows')}"


def _plan_nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", []):
        yield from _plan_nodes(child)


# -- booking load ------------------------------------------------------------------


def make_load_sessions(bench: Bench, prefix: str, count: int, capacity: int) -> list[str]:
    """Fresh sessions far in the future on provider 0's schedule, booked 0."""
    schedule = bench.shape.schedules[0]
    base = dt.datetime.combine(
        bench.shape.this_monday + dt.timedelta(weeks=60), dt.time(12), dt.UTC
    )
    now = dt.datetime.now(dt.UTC)
    rows = [
        {
            "id": f"{prefix}-{i:05d}", "schedule_id": schedule,
            "start_at": base + dt.timedelta(hours=2 * i),
            "end_at": base + dt.timedelta(hours=2 * i, minutes=90),
            "capacity": capacity, "booked": 0, "appointment_type": "group-therapy",
            "service_type": "behavioral-health-group", "closed": False, "blocked": False,
            "version": 1, "last_updated": now,
        }
        for i in range(count)
    ]
    with bench.engine.begin() as conn:
        conn.execute(insert(GroupSession), rows)
    return [r["id"] for r in rows]


def load_plan(bench: Bench, sessions: list[str], capacity: int, extra: float,
              offset: int) -> list[tuple[str, str]]:
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
    return orjson.dumps({
        "resourceType": "Appointment",
        "status": "booked",
        "slot": [{"reference": f"Slot/{session_id}"}],
        "participant": [{"actor": {"reference": f"Patient/{patient}"}, "status": "accepted"}],
    })


def run_clients(clients: int, plan: list[Any], send: Callable[[Any, Any], int],
                connect: Callable[[], Any], close: Callable[[Any], None]) -> dict[str, Any]:
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


def http_booking(bench: Bench, server: Server, plan: list[tuple[str, str]],
                 clients: int) -> dict[str, Any]:
    headers = {
        "Authorization": f"Bearer {bench.token}", "Content-Type": FHIR_JSON,
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


def driver_booking(bench: Bench, plan: list[tuple[str, str]], clients: int,
                   opened: list[Any]) -> dict[str, Any]:
    """The database's own limit: the conditional UPDATE plus the INSERT, one transaction each,
    straight through the driver with the same concurrency."""
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    take = (
        "UPDATE group_session SET booked = booked + 1, version = version + 1, last_updated = {p} "
        "WHERE id = {p} AND booked < capacity AND blocked = {f}"
    )
    add = (
        "INSERT INTO booking (id, session_id, patient_id, status, start_at, end_at, "
        "appointment_type, department_id, created, version, last_updated) "
        "VALUES ({p}, {p}, {p}, 'booked', {p}, {p}, 'group-therapy', {p}, {p}, 1, {p})"
    )
    start = dt.datetime(2030, 1, 1, 12)
    end = start + dt.timedelta(minutes=90)
    department = bench.shape.schedule_department[bench.shape.schedules[0]]
    if bench.target.backend == "postgresql":
        import psycopg

        take_sql, add_sql = take.format(p="%s", f="false"), add.format(p="%s")

        def connect() -> Any:
            return psycopg.connect(bench.target.conninfo)

        def send(conn: Any, item: tuple[str, str]) -> int:
            session, patient = item
            cur = conn.execute(take_sql, (now, session))
            if cur.rowcount != 1:
                conn.rollback()
                return 409
            conn.execute(add_sql, (uuid.uuid4().hex, session, patient, start, end, department,
                                   now, now))
            conn.commit()
            return 201
    else:
        take_sql, add_sql = take.format(p="?", f="0"), add.format(p="?")
        fmt = "%Y-%m-%d %H:%M:%S.%f"

        def connect() -> Any:
            conn = sqlite3.connect(bench.target.conninfo, isolation_level=None,
                                   check_same_thread=False, timeout=15)
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
            conn.execute(add_sql, (uuid.uuid4().hex, session, patient, start.strftime(fmt),
                                   end.strftime(fmt), department, now.strftime(fmt),
                                   now.strftime(fmt)))
            conn.execute("COMMIT")
            return 201

    # Connections stay open (closed by the caller) so their server processes' CPU time can
    # still be read when the load ends.
    return run_clients(clients, plan, send, connect, opened.append)


def overbooking_check(bench: Bench) -> dict[str, int]:
    with bench.engine.connect() as conn:
        row = conn.execute(text(f"""
            SELECT
              sum(CASE WHEN s.booked > s.capacity OR coalesce(a.n, 0) > s.capacity
                       THEN 1 ELSE 0 END),
              sum(CASE WHEN s.booked <> coalesce(a.n, 0) THEN 1 ELSE 0 END),
              count(*)
            FROM group_session s
            LEFT JOIN (SELECT session_id, count(*) AS n FROM booking
                       WHERE status IN ({ACTIVE_SQL}) GROUP BY session_id) a
              ON a.session_id = s.id
        """)).one()
    return {"overbooked_sessions": int(row[0] or 0), "count_mismatches": int(row[1] or 0),
            "sessions_checked": int(row[2])}


def in_process_booking(bench: Bench, capacity: int) -> dict[str, Any]:
    """One booking at a time through the Flask test client: latency and SQL statements each."""
    sessions = make_load_sessions(bench, "load-inproc", 20, capacity)
    plan = load_plan(bench, sessions, capacity, 0.0, offset=17)[: max(50, bench.iterations // 3)]
    statements = []

    def book(i: int) -> None:
        session, patient = plan[i]
        bench.counter.reset()
        response = bench.client.post("/fhir/Appointment", data=appointment_body(session, patient),
                                     content_type=FHIR_JSON, headers=bench.headers)
        statements.append(bench.counter.count)
        assert response.status_code == 201, response.get_data(as_text=True)[:300]

    samples = timed(book, len(plan) - 5, 5)
    return {"booking_ms": stats(samples), "sql_per_booking": statistics.median(statements)}


def measure_booking(bench: Bench, server: Server, clients: int, sessions: int,
                    capacity: int) -> dict[str, Any]:
    result: dict[str, Any] = {"clients": clients, "sessions": sessions, "capacity": capacity}
    # Sequential latency first (one client, keep-alive), on sessions of its own.
    seq_sessions = make_load_sessions(bench, "load-seq", 20, capacity)
    seq_plan = load_plan(bench, seq_sessions, capacity, 0.0, offset=11)[: bench.iterations]
    result["sequential"] = http_booking(bench, server, seq_plan, 1)
    result["in_process"] = in_process_booking(bench, capacity)
    http_sessions = make_load_sessions(bench, "load-http", sessions, capacity)
    http_plan = load_plan(bench, http_sessions, capacity, 0.1, offset=1)
    meter = CpuMeter(server)
    meter.start()
    result["http"] = http_booking(bench, server, http_plan, clients)
    result["http"]["cpu"] = meter.stop(len(http_plan))
    result["server_rss_mb_after_load"] = server.rss_mb()
    db_sessions = make_load_sessions(bench, "load-db", sessions, capacity)
    db_plan = load_plan(bench, db_sessions, capacity, 0.1, offset=5)
    meter = CpuMeter(None)
    meter.start()
    opened: list[Any] = []
    result["driver"] = driver_booking(bench, db_plan, clients, opened)
    result["driver"]["cpu"] = meter.stop(len(db_plan))
    for conn in opened:
        conn.close()
    result["ratio_to_driver"] = round(
        result["http"]["bookings_per_s"] / max(result["driver"]["bookings_per_s"], 0.001), 3
    )
    result["check"] = overbooking_check(bench)
    return result


# -- series ------------------------------------------------------------------------


def series_find_body(shape: ClinicShape, patient: str) -> dict[str, Any]:
    """Mondays, Wednesdays and Fridays at 10:00 (the department's zone) for 52 weeks."""
    first = shape.this_monday + dt.timedelta(weeks=1)
    return {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "patient", "valueReference": {"reference": f"Patient/{patient}"}},
            {"name": "practitioner",
             "valueReference": {"reference": f"Practitioner/{shape.providers[0]}"}},
            {"name": "timing", "valueTiming": {"repeat": {
                "boundsPeriod": {"start": first.isoformat()}, "count": 156,
                "periodUnit": "wk", "period": 1, "frequency": 1,
                "dayOfWeek": ["mon", "wed", "fri"],
                "timeOfDay": [LOCAL_TIMES[0].strftime("%H:%M:%S")],
                "duration": 90, "durationUnit": "min"}}},
        ],
    }


def series_book_body(preview: dict[str, Any]) -> dict[str, Any]:
    kept = [e["resource"] for e in preview["entry"] if e["search"]["mode"] == "match"]
    return {"resourceType": "Parameters",
            "parameter": [{"name": "appointment-resource", "resource": k} for k in kept]}


def measure_series(bench: Bench) -> dict[str, Any]:
    shape = bench.shape
    schedule = shape.schedules[0]
    find_ms, book_ms, find_sql, book_sql, matched, booked = [], [], [], [], [], []

    def timed(operation: str, body: dict[str, Any], ms: list[float], sql: list[int]) -> Any:
        """POST an operation in-process; record its time and SQL statements."""
        bench.counter.reset()
        started = time.perf_counter()
        response = bench.client.post(f"/fhir/Appointment/{operation}", data=orjson.dumps(body),
                                     content_type=FHIR_JSON, headers=bench.headers)
        ms.append((time.perf_counter() - started) * 1000)
        sql.append(bench.counter.count)
        assert response.status_code == 200, response.get_data(as_text=True)[:500]
        return orjson.loads(response.get_data())

    for patient in shape.series_patients:
        preview = timed("$find", series_find_body(shape, patient), find_ms, find_sql)
        book = series_book_body(preview)
        matched.append(sum(1 for p in book["parameter"] if p["resource"].get("slot")))
        answer = timed("$book", book, book_ms, book_sql)
        booked.append(sum(1 for e in answer["entry"]
                          if e["resource"].get("resourceType") == "Appointment"
                          and e["resource"].get("status") == "booked"))
    return {
        "schedule": schedule,
        "occurrences": 156,
        "matched_with_slot": matched,
        "booked": booked,
        "find_ms": stats(find_ms[1:] or find_ms),
        "find_ms_first_call": round(find_ms[0], 2),
        "find_sql": find_sql,
        "book_ms": stats(book_ms[1:] or book_ms),
        "book_ms_first_call": round(book_ms[0], 2),
        "book_sql": book_sql,
    }


# -- profiles --------------------------------------------------------------------


def profile(bench: Bench, folder: Path) -> dict[str, str]:
    """pyinstrument text profiles of the in-process paths (if pyinstrument is installed)."""
    try:
        from pyinstrument import Profiler
    except ImportError:
        return {"skipped": "pip install pyinstrument into the venv to get profiles"}
    folder.mkdir(parents=True, exist_ok=True)
    monday = bench.shape.this_monday + dt.timedelta(weeks=2)
    jobs: dict[str, Callable[[int], Any]] = {}
    weeks = week_urls(bench, 400)
    jobs["week_view"] = lambda i: bench.get(weeks[i % len(weeks)])
    page = f"/fhir/Slot?start=ge{monday}&start=lt{monday + dt.timedelta(days=14)}&_count=500"
    jobs["page_500"] = lambda i: bench.get(page)
    queries = patient_queries(bench)
    jobs["patient_family"] = lambda i: bench.get(queries["family=garc (common, ~0.5%)"](i))
    jobs["patient_phone"] = lambda i: bench.get(queries["phone"](i))
    sessions = make_load_sessions(bench, "load-prof", 40, 10)
    plan = load_plan(bench, sessions, 10, 0.0, offset=23)

    def book(i: int) -> None:
        session, patient = plan[i]
        response = bench.client.post("/fhir/Appointment", data=appointment_body(session, patient),
                                     content_type=FHIR_JSON, headers=bench.headers)
        assert response.status_code == 201, response.get_data(as_text=True)[:300]

    jobs["booking"] = book

    def find(i: int) -> None:
        body = series_find_body(bench.shape, bench.shape.series_patients[0])
        response = bench.client.post("/fhir/Appointment/$find", data=orjson.dumps(body),
                                     content_type=FHIR_JSON, headers=bench.headers)
        assert response.status_code == 200, response.get_data(as_text=True)[:300]

    jobs["series_find"] = find
    extra = [f"pat-series-prof-{i}" for i in range(12)]
    with bench.engine.begin() as conn:  # patients with a self-pay coverage and no bookings
        now = dt.datetime.now(dt.UTC)
        for pid in extra:
            conn.execute(text(
                "INSERT INTO patient (id, family, given, family_folded, given_folded, gender, "
                "restricted, version, last_updated) VALUES (:id, 'Prof', 'Ile', 'prof', 'ile', "
                "'other', :f, 1, :now)"), {"id": pid, "f": False, "now": now.replace(tzinfo=None)})
            conn.execute(text(
                "INSERT INTO coverage (id, beneficiary_id, payor_kind, payor_id, status, "
                "type_system, type_code, self_pay, version, last_updated) VALUES (:c, :id, "
                "'patient', :id, 'active', 'http://terminology.hl7.org/CodeSystem/coverage-selfpay',"
                " 'pay', :t, 1, :now)"),
                {"c": f"cov-{pid}", "id": pid, "t": True, "now": now.replace(tzinfo=None)})
    previews = []
    for pid in extra:
        response = bench.client.post("/fhir/Appointment/$find",
                                     data=orjson.dumps(series_find_body(bench.shape, pid)),
                                     content_type=FHIR_JSON, headers=bench.headers)
        previews.append(series_book_body(orjson.loads(response.get_data())))

    def series_book(i: int) -> None:
        response = bench.client.post("/fhir/Appointment/$book", data=orjson.dumps(previews[i]),
                                     content_type=FHIR_JSON, headers=bench.headers)
        assert response.status_code == 200, response.get_data(as_text=True)[:300]

    jobs["series_book"] = series_book
    repeats = {"page_500": 30, "series_find": 50, "series_book": len(extra) - 1}
    written = {}
    for name, job in jobs.items():
        repeat = repeats.get(name, 300)
        job(0)
        profiler = Profiler(interval=0.0005)
        profiler.start()
        for i in range(1, repeat + 1):
            job(i)
        profiler.stop()
        path = folder / f"{bench.target.backend}-{name}.txt"
        path.write_text(profiler.output_text(unicode=False, color=False, show_all=False))
        written[name] = str(path)
    return written


# -- one run -----------------------------------------------------------------------


def run_one(backend: str, scale: float, args: argparse.Namespace, root: Path) -> dict[str, Any]:
    with target_database(backend, scale, args.postgres_url, root) as target:
        migrate(target)
        keys = ssn_hasher(Settings(ssn_keys=SSN_KEYS))  # the app's own hasher and key
        print(f"[{backend} x{scale:g}] building ...", flush=True)
        shape = build(target.writer(), scale, keys)
        print(f"[{backend} x{scale:g}] built in {shape.build_seconds:.1f} s: {shape.counts}",
              flush=True)
        app = create_app({
            "database_url": target.url, "instance_path": target.folder / "instance",
            "jwt_secret": SECRET, "ssn_keys": SSN_KEYS, "base_url": "http://bench/fhir",
        })
        token = app.extensions["fhir_facade.tokens"].mint("bench", SCOPE, dt.timedelta(hours=4))
        database = app.extensions["fhir_facade.db"]
        bench = Bench(
            target, shape, app, app.test_client(),
            {"Authorization": f"Bearer {token}", "Accept": FHIR_JSON}, token,
            StatementCounter(database.engine), random.Random(1), args.iterations,
        )
        result: dict[str, Any] = {
            "backend": backend, "scale": scale, "build_seconds": round(shape.build_seconds, 1),
            "rows": shape.counts,
        }
        server = start_server(target, args.workers, args.threads)
        try:
            result["server"] = {"workers": args.workers, "threads": args.threads}
            steps: list[tuple[str, Callable[[], Any]]] = [
                ("week_view", lambda: measure_week_view(bench, server)),
                ("page_500", lambda: measure_page(bench, server)),
                ("patient_search", lambda: measure_patient_search(bench, server)),
                ("booking", lambda: measure_booking(bench, server, args.clients,
                                                    args.load_sessions, args.capacity)),
                ("series", lambda: measure_series(bench)),
            ]
            for name, step in steps:
                if args.only and name not in args.only:
                    continue
                print(f"[{backend} x{scale:g}] {name} ...", flush=True)
                result[name] = step()
        finally:
            server.stop()
        if args.profile:
            print(f"[{backend} x{scale:g}] profiling ...", flush=True)
            result["profiles"] = profile(bench, Path(args.profile))
        bench.counter.close()
        database.dispose()
        return result


# -- targets and tables ------------------------------------------------------------


def targets(run: dict[str, Any]) -> list[tuple[str, str, bool | None]]:
    """(target, measured, met) for one run (None: not measured or not applicable)."""
    out: list[tuple[str, str, bool | None]] = []
    pg = run["backend"] == "postgresql"
    if "week_view" in run:
        w = run["week_view"]
        out.append(("week view p50 <= 2 ms in-process", f"{w['in_process_ms']['p50']:.2f} ms",
                     w["in_process_ms"]["p50"] <= 2))
        if "http_ms" in w:
            out.append(("week view p50 <= 5 ms over HTTP", f"{w['http_ms']['p50']:.2f} ms",
                         w["http_ms"]["p50"] <= 5))
    if "page_500" in run:
        p = run["page_500"]
        out.append(("500-Slot page <= 30 ms (server, p50)", f"{p['server_ms']['p50']:.1f} ms",
                     p["server_ms"]["p50"] <= 30))
        out.append(("output building <= 2x orjson floor", f"{p['output_vs_floor']:.1f}x "
                     f"({p['output_ms']:.1f} ms vs {p['parts_p50_ms']['floor_same_dicts']:.2f} ms)",
                     p["output_vs_floor"] <= 2))
    if "patient_search" in run:
        for name, entry in run["patient_search"].items():
            out.append((f"patient search {name} p50 <= 5 ms",
                         f"{entry['in_process_ms']['p50']:.2f} ms (total {entry['total']})",
                         entry["in_process_ms"]["p50"] <= 5))
            if True:  # the target names PostgreSQL; SQLite's plan is shown as well
                out.append((f"  plan uses indexes only: {name}",
                             "yes" if entry["plan"]["index_only"] else
                             "whole-table scan of " + ", ".join(sorted({
                                 t for s in entry["plan"]["statements"]
                                 for t in s["seq_scans_on_big_tables"]})),
                             entry["plan"]["index_only"]))
    if "booking" in run:
        b = run["booking"]
        rate = b["http"]["bookings_per_s"]
        out.append(("booking >= 400/s" + ("" if pg else " (target is for PostgreSQL)"),
                     f"{rate:.0f}/s, p95 {b['http']['booking_ms'].get('p95', 0):.0f} ms",
                     rate >= 400 if pg else None))
        out.append(("0 overbooked sessions", str(b["check"]["overbooked_sessions"])
                     + f" (count mismatches {b['check']['count_mismatches']})",
                     b["check"]["overbooked_sessions"] == 0
                     and b["check"]["count_mismatches"] == 0))
        out.append(("booking >= 25% of the driver's own rate",
                     f"{b['ratio_to_driver'] * 100:.0f}% of {b['driver']['bookings_per_s']:.0f}/s",
                     b["ratio_to_driver"] >= 0.25 if pg else None))
        rss = max(v for k, v in b["server_rss_mb_after_load"].items() if k != "master")
        out.append(("RSS <= 150 MB (largest worker after load)", f"{rss:.0f} MB", rss <= 150))
    if "series" in run:
        s = run["series"]
        out.append(("$find 52-week series <= 15 ms", f"{s['find_ms']['p50']:.1f} ms",
                     s["find_ms"]["p50"] <= 15))
        out.append(("$find <= 3 SQL statements", str(max(s["find_sql"])),
                     max(s["find_sql"]) <= 3))
        out.append(("$book <= 60 ms", f"{s['book_ms']['p50']:.1f} ms ({max(s['book_sql'])} SQL)",
                     s["book_ms"]["p50"] <= 60))
    return out


def flatness(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Week view and booking latency per scale, relative to the smallest scale."""
    rows = []
    by_backend: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        by_backend.setdefault(run["backend"], []).append(run)
    for backend, items in by_backend.items():
        items.sort(key=lambda r: r["scale"])
        base = items[0]
        for run in items:
            row: dict[str, Any] = {"backend": backend, "scale": run["scale"]}
            for key, path in (
                ("week_in_process_p50", ("week_view", "in_process_ms", "p50")),
                ("week_http_p50", ("week_view", "http_ms", "p50")),
                ("booking_sequential_p50", ("booking", "sequential", "booking_ms", "p50")),
                ("booking_16_clients_p95", ("booking", "http", "booking_ms", "p95")),
                ("bookings_per_s", ("booking", "http", "bookings_per_s")),
            ):
                value, ref = _dig(run, path), _dig(base, path)
                row[key] = value
                if value is not None and ref:
                    row[key + "_x"] = round(value / ref, 2)
            rows.append(row)
    return rows


def _dig(data: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def render(report: dict[str, Any]) -> str:
    lines = []
    m = report["machine"]
    lines.append(f"Machine: {m['nproc']} CPUs ({m['cpu']}), {m['ram_gb']} GB RAM, "
                 f"Python {m['python']}; server: gunicorn {report['args']['workers']} workers x "
                 f"{report['args']['threads']} threads; {report['args']['clients']} clients.")
    for run in report["runs"]:
        lines.append("")
        lines.append(f"### {run['backend']}, scale {run['scale']:g} "
                     f"(built in {run['build_seconds']} s: "
                     + ", ".join(f"{k} {v:,}" for k, v in run["rows"].items()
                                 if k in ("group_session", "patient", "coverage", "booking"))
                     + ")")
        lines.append("")
        lines.append("| measurement | p50 ms | p95 ms | notes |")
        lines.append("|---|---:|---:|---|")

        def row(name: str, s: dict[str, Any] | None, note: str = "") -> None:
            if s:
                lines.append(f"| {name} | {s.get('p50', '')} | {s.get('p95', '')} | {note} |")

        if "week_view" in run:
            w = run["week_view"]
            row("week view, in-process", w["in_process_ms"], f"{w['slots_per_week']} Slots")
            row("week view, HTTP", w.get("http_ms"))
        if "page_500" in run:
            p = run["page_500"]
            parts = p["parts_p50_ms"]
            row("500-Slot page, in-process", p["server_ms"],
                f"{p['entries']} of {p['total']}, {p['bytes'] // 1024} KiB; SQL {parts['sql']}, "
                f"ORM {parts['query_orm']}, slot_to_fhir {parts['slot_to_fhir']}, bundle "
                f"{parts['bundle']}, dumps {parts['dumps']}; floor (same dicts) "
                f"{parts['floor_same_dicts']}, floor (plain records) "
                f"{parts['floor_plain_records']}; output {p['output_vs_floor']}x floor, "
                f"{p['output_share_of_server'] * 100:.0f}% of server time")
            row("500-Slot page, HTTP", p.get("http_ms"))
        for name, entry in run.get("patient_search", {}).items():
            plan = entry["plan"]
            note = f"total {entry['total']}, returned {entry['returned']}"
            note += "; plan: " + ("indexes only" if plan["index_only"] else "WHOLE-TABLE SCAN")
            row(f"Patient?{name}, in-process", entry["in_process_ms"], note)
            row(f"Patient?{name}, HTTP", entry.get("http_ms"))
        if "booking" in run:
            b = run["booking"]
            row("booking, in-process (test client)", b["in_process"]["booking_ms"],
                f"{b['in_process']['sql_per_booking']} SQL statements per booking")
            row("booking, 1 client, HTTP", b["sequential"]["booking_ms"],
                f"{b['sequential']['bookings_per_s']}/s")
            row(f"booking, {b['clients']} clients, HTTP", b["http"]["booking_ms"],
                f"**{b['http']['bookings_per_s']} bookings/s**, statuses {b['http']['statuses']}, "
                f"{b['check']['overbooked_sessions']} overbooked, "
                f"{b['check']['count_mismatches']} count mismatches")
            row(f"driver only, {b['clients']} threads", b["driver"]["booking_ms"],
                f"{b['driver']['bookings_per_s']} bookings/s; HTTP = "
                f"{b['ratio_to_driver'] * 100:.0f}% of it")
            lines.append(f"| RSS after load (MB) | | | {b['server_rss_mb_after_load']} |")
            for label, cpu in (("HTTP load", b["http"]["cpu"]),
                               ("driver load", b["driver"]["cpu"])):
                parts = ", ".join(f"{k} {v['cpu_ms_per_booking']} ms"
                                  for k, v in cpu.items() if isinstance(v, dict))
                lines.append(f"| CPU per request, {label} | | | {parts}; machine "
                             f"{cpu['machine_busy'] * 100:.0f}% busy |")
        if "series" in run:
            s = run["series"]
            row("$find 52 wk Mon/Wed/Fri", s["find_ms"],
                f"SQL {s['find_sql']}, matched {s['matched_with_slot']}, "
                f"first call {s['find_ms_first_call']} ms")
            row("$book", s["book_ms"], f"SQL {s['book_sql']}, booked {s['booked']}")
        lines.append("")
        lines.append("| target | measured | met |")
        lines.append("|---|---|---|")
        for name, measured, met in targets(run):
            mark = "n/a" if met is None else ("yes" if met else "**NO**")
            lines.append(f"| {name} | {measured} | {mark} |")
    if len(report["runs"]) > 1 and report["flatness"]:
        lines.append("")
        lines.append("### Cost as data grows (ratio to the smallest scale)")
        lines.append("")
        lines.append("| backend | scale | week p50 in-proc | week p50 HTTP "
                     "| booking p50 (1 client) | booking p95 (16 clients) | bookings/s |")
        lines.append("|---|---:|---|---|---|---|---|")
        for r in report["flatness"]:
            def cell(key: str, r: dict[str, Any] = r) -> str:
                value = r.get(key)
                if value is None:
                    return "-"
                ratio = r.get(key + "_x")
                return f"{value} ({ratio}x)" if ratio is not None else str(value)

            lines.append(f"| {r['backend']} | {r['scale']:g} | {cell('week_in_process_p50')} | "
                         f"{cell('week_http_p50')} | {cell('booking_sequential_p50')} | "
                         f"{cell('booking_16_clients_p95')} | {cell('bookings_per_s')} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", action="append", choices=("sqlite", "postgresql"),
                        help="repeat for both (default: sqlite)")
    parser.add_argument("--scale", type=float, default=1.0, help="data size, 1 = the default")
    parser.add_argument("--scales", help="comma-separated scales, e.g. 1,4,16 (overrides --scale)")
    parser.add_argument("--postgres-url", default=DEFAULT_PG,
                        help="a PostgreSQL the benchmark may create databases on")
    parser.add_argument("--out", help="write the JSON report here")
    parser.add_argument("--iterations", type=int, default=300, help="samples per latency")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn workers")
    parser.add_argument("--threads", type=int, default=4, help="gunicorn threads per worker")
    parser.add_argument("--clients", type=int, default=16, help="concurrent booking clients")
    parser.add_argument("--load-sessions", type=int, default=200,
                        help="sessions the concurrent booking load goes into")
    parser.add_argument("--capacity", type=int, default=20, help="places per load session")
    parser.add_argument("--only", action="append",
                        choices=("week_view", "page_500", "patient_search", "booking", "series"))
    parser.add_argument("--profile", help="write pyinstrument profiles to this folder")
    args = parser.parse_args(argv)
    backends = args.backend or ["sqlite"]
    scales = [float(s) for s in args.scales.split(",")] if args.scales else [args.scale]
    report: dict[str, Any] = {
        "machine": machine(),
        "command": " ".join([Path(sys.executable).name, "-m", "benchmarks.clinic_benchmark",
                             *(argv if argv is not None else sys.argv[1:])]),
        "args": {k: v for k, v in vars(args).items() if k != "postgres_url"},
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "runs": [],
    }
    with tempfile.TemporaryDirectory(prefix="clinic-bench-") as root:
        for backend in backends:
            for scale in scales:
                run = run_one(backend, scale, args, Path(root))
                run["targets"] = [
                    {"target": t, "measured": m, "met": met} for t, m, met in targets(run)
                ]
                report["runs"].append(run)
                if args.out:  # keep what we have if a later, larger run fails
                    Path(args.out).write_text(json.dumps(report, indent=2, default=str))
    report["flatness"] = flatness(report["runs"])
    print()
    print(render(report))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2, default=str))
        print(f"\nreport written to {args.out}")


if __name__ == "__main__":
    main()
