"""The harness: statistics, meters, the target database and the server under test."""

from __future__ import annotations

import contextlib
import os
import platform
import random
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import requests
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine, make_url

from benchmarks.clinic_data import ClinicShape, PostgresWriter, SqliteWriter, Writer
from store.db import DatabaseSettings, make_engine
from store.migrate import upgrade

REPO_ROOT = Path(__file__).resolve().parents[2]
SECRET = "benchmark-signing-key-not-for-production-0123456789"
SSN_KEYS = "bench:benchmark-ssn-key-0123456789abcdef"
SCOPE = "user/*.cruds __schedule.manage"
DEFAULT_PG = os.environ.get(
    "FHIR_FACADE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
FHIR_JSON = "application/fhir+json"
MRN_SYSTEM = "http://fhir-facade.org/fhir/sid/mrn"
#: The family-name search staff type most: its own row, and held against the MRN search.
COMMON_FAMILY = "family=garc (common, ~0.5%)"
#: The same search answering one entry: the name lookup without the page's 50 patients.
FAMILY_ONE_ENTRY = "family=garc&_count=1 (one entry)"


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
    """`n` samples of `call` in ms, after up to `warmup` unmeasured calls (never more than
    `n`: a short run stays short)."""
    for i in range(min(warmup, n)):
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


#: How many of a statement's first words name it (`StatementCounter.by_statement`).
STATEMENT_WORDS = 5


class StatementCounter:
    """Counts statements and sums their driver time on an engine (before/after cursor
    execute), in all and by statement (its first words)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.count = 0
        self.seconds = 0.0
        self.by_statement: defaultdict[str, float] = defaultdict(float)
        self.captured: list[tuple[str, Any]] | None = None
        self._local = threading.local()
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "after_cursor_execute", self._after)

    def _before(self, conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        self.count += 1
        self._local.started = (statement, time.perf_counter())
        if self.captured is not None:
            self.captured.append((statement, parameters))

    def _after(self, *_: Any) -> None:
        statement, started = getattr(self._local, "started", ("", time.perf_counter()))
        spent = time.perf_counter() - started
        self.seconds += spent
        self.by_statement[" ".join(statement.split()[:STATEMENT_WORDS])] += spent

    def reset(self) -> None:
        self.count = 0
        self.seconds = 0.0
        self.by_statement.clear()

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


#: The process groups a `CpuMeter` reports, by these names.
CLIENT_CPU, POSTGRES_CPU, SERVER_CPU = (
    "client (this process)",
    "postgres (local)",
    "server (gunicorn)",
)


class CpuMeter:
    """CPU seconds spent by the server, by PostgreSQL (if local) and by this process
    (the load clients) between start() and stop()."""

    def __init__(self, server: Server | None) -> None:
        self.server = server

    def _groups(self) -> dict[str, list[int]]:
        groups = {CLIENT_CPU: [os.getpid()], POSTGRES_CPU: _postgres_pids()}
        if self.server is not None:
            groups[SERVER_CPU] = [self.server.process.pid, *self.server.workers()]
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
            out[group] = {
                "cpu_s": round(spent, 2),
                "cpu_ms_per_booking": round(spent * 1000 / max(units, 1), 2),
            }
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


def start_server(
    target: Target, workers: int, threads: int, *, bare_department: str | None = None
) -> Server:
    """`fhir-facade serve` on the target database; with `bare_department`, the bare
    booking server (`bare.py`, PostgreSQL only) booking into that department instead."""
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
    sizes = ["--port", str(port), "--workers", str(workers), "--threads", str(threads)]
    if bare_department is None:
        command = [sys.executable, "-m", "fhir_facade.cli", "serve", *sizes]
    else:
        command = [sys.executable, "-m", "benchmarks.clinic_benchmark.bare", *sizes]
        command += ["--conninfo", target.conninfo, "--department", bare_department]
    with (folder / "stdout.log").open("wb") as out, (folder / "stderr.log").open("wb") as err:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            env=env,
            cwd=folder,
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
