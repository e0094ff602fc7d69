"""Real servers for the end-to-end tests.

Each server is `python -m fhir_facade.cli serve` (gunicorn, two workers) in its own
process group, on a port the OS picked, against the test's database. Its output goes
to files (no pipes to leak); the last lines of its stderr are quoted whenever it
fails to come up. On SQLite one server runs; on PostgreSQL the concurrency tests get
two servers sharing one database, as several facade hosts would in production.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from fhir_facade.auth import TokenService
from fhir_facade.config import Settings
from tests.conftest import TEST_SECRET

REPO_ROOT = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 10.0
TEST_SCOPE = "user/*.cruds __schedule.manage"


@dataclass
class Server:
    """A running `fhir-facade serve` process."""

    port: int
    process: subprocess.Popen[bytes]
    folder: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}/fhir"

    @property
    def stderr_path(self) -> Path:
        return self.folder / "stderr.log"

    def stderr_tail(self, chars: int = 4000) -> str:
        try:
            text = self.stderr_path.read_text(errors="replace")
        except OSError:
            return "<no stderr>"
        return text[-chars:]

    def stop(self) -> None:
        """SIGTERM the whole process group (gunicorn master and its workers); SIGKILL late."""
        self.signal_stop()
        self.wait_stopped()

    def signal_stop(self) -> None:
        _signal_group(self.process.pid, signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL, for a test that is over: its database is thrown away, so there is
        nothing to drain, and a graceful stop waits out gunicorn's graceful timeout
        (5 s) on idle workers."""
        _signal_group(self.process.pid, signal.SIGKILL)

    def wait_stopped(self) -> None:
        pgid = self.process.pid  # start_new_session=True: the master leads its group
        try:
            self.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            _signal_group(pgid, signal.SIGKILL)
            self.process.wait(timeout=STOP_TIMEOUT_S)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while _group_alive(pgid) and time.monotonic() < deadline:
            time.sleep(0.05)
        _signal_group(pgid, signal.SIGKILL)  # orphaned workers, if any


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _group_alive(pgid: int) -> bool:
    """Whether a process of the group still runs. A killed worker stays a zombie until
    init reaps it (a second or more in some containers), but holds no port, file or
    connection any more, so zombies do not count."""
    proc = Path("/proc")
    if not proc.is_dir():  # not Linux: ask the kernel, zombies included
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return True
    for stat in proc.glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            # "pid (comm) state ppid pgrp ...": comm may hold spaces, so split after ")".
            state, _ppid, group = stat.read_text().rsplit(")", 1)[1].split()[:3]
            if int(group) == pgid and state != "Z":
                return True
    return False


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _server_env(
    database_url: str, folder: Path, extra: dict[str, str] | None = None
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FHIR_FACADE_")}
    env.update(
        FHIR_FACADE_DATABASE_URL=database_url,
        FHIR_FACADE_JWT_SECRET=TEST_SECRET,
        FHIR_FACADE_INSTANCE_PATH=str(folder / "instance"),
        # gunicorn's control socket defaults to one path per user; give each server its own.
        XDG_RUNTIME_DIR=str(folder),
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")])),
        PYTHONUNBUFFERED="1",
    )
    env.update(extra or {})
    return env


def _launch(database_url: str, folder: Path, env: dict[str, str] | None = None) -> Server:
    folder.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    command = [
        sys.executable,
        "-m",
        "fhir_facade.cli",
        "serve",
        "--port",
        str(port),
        "--workers",
        "2",
    ]
    with (folder / "stdout.log").open("wb") as out, (folder / "stderr.log").open("wb") as err:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            env=_server_env(database_url, folder, env),
            cwd=folder,
            start_new_session=True,
        )
    return Server(port, process, folder)


def _wait_ready(server: Server) -> str | None:
    """None once GET /fhir/metadata answers 200; otherwise why the server is not up."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            return f"exited with status {server.process.returncode}"
        with contextlib.suppress(requests.RequestException):
            response = requests.get(
                f"{server.base}/metadata", headers={"Connection": "close"}, timeout=2
            )
            if response.status_code == 200:
                return None
        time.sleep(0.1)
    return f"no answer from {server.base}/metadata within {STARTUP_TIMEOUT_S:.0f} s"


class ServerPool:
    """Starts servers against a database URL (side by side) and kills them all at the end."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.running: list[Server] = []

    def _launch(self, database_url: str) -> Server:
        server = _launch(database_url, self.folder / f"server-{len(self.running) + 1}")
        self.running.append(server)
        return server

    def start(self, database_url: str, count: int = 1) -> list[Server]:
        servers = [self._launch(database_url) for _ in range(count)]  # boot side by side
        for index, server in enumerate(servers):
            for attempt in range(3):
                problem = _wait_ready(server)
                if problem is None:
                    break
                server.stop()
                # The OS may have handed "our" free port to someone else first: try another.
                if "in use" not in server.stderr_tail() or attempt == 2:
                    pytest.fail(
                        f"fhir-facade server did not start ({problem}); stderr:\n"
                        f"{server.stderr_tail()}"
                    )
                server = servers[index] = self._launch(database_url)
        return servers

    def kill_all(self) -> None:
        for server in self.running:  # all at once: shutdowns overlap
            server.kill()
        for server in self.running:
            server.wait_stopped()


def _servers_for(database_url: str) -> int:
    """One server on SQLite; two sharing the database on PostgreSQL."""
    return 1 if database_url.startswith("sqlite") else 2


@pytest.fixture
def start_servers(tmp_path: Path) -> Iterator[Callable[[str, int], list[Server]]]:
    """Start `count` servers against one database URL (in parallel); all stop at teardown."""
    pool = ServerPool(tmp_path)
    yield pool.start
    pool.kill_all()


@pytest.fixture
def server(database_url: str, start_servers: Callable[[str, int], list[Server]]) -> Server:
    """One server on the test's database."""
    return start_servers(database_url, 1)[0]


@pytest.fixture
def servers(database_url: str, start_servers: Callable[[str, int], list[Server]]) -> list[Server]:
    """One server on SQLite; two sharing the database on PostgreSQL."""
    return start_servers(database_url, _servers_for(database_url))


@pytest.fixture(scope="module")
def shared_pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerPool]:
    """Servers kept for a whole module (see `shared_database_url`)."""
    pool = ServerPool(tmp_path_factory.mktemp("servers"))
    yield pool
    pool.kill_all()


@pytest.fixture(scope="module")
def shared_server(shared_database_url: str, shared_pool: ServerPool) -> Server:
    """One server on the module's shared database, for all of the module's tests."""
    return shared_pool.start(shared_database_url, 1)[0]


@pytest.fixture(scope="module")
def shared_servers(shared_database_url: str, shared_pool: ServerPool) -> list[Server]:
    """`servers`, on the module's shared database, for all of the module's tests."""
    return shared_pool.start(shared_database_url, _servers_for(shared_database_url))


@pytest.fixture(scope="session")
def auth() -> dict[str, str]:
    """Headers with a bearer token the servers accept (signed with the test key)."""
    token = TokenService(Settings(jwt_secret=TEST_SECRET)).mint(
        "e2e-tester", TEST_SCOPE, dt.timedelta(hours=2)
    )
    # Connection: close, because a stopping gunicorn lingers on kept-alive connections.
    return {
        "Authorization": f"Bearer {token}",
        "Accept": "application/fhir+json",
        "Connection": "close",
    }


@pytest.fixture
def http(auth: dict[str, str]) -> Iterator[requests.Session]:
    """A requests session that sends the test token."""
    with requests.Session() as session:
        session.headers.update(auth)
        yield session
