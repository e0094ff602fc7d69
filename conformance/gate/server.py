"""A throwaway fhir-facade for the gate: fresh SQLite, the demo clinic, its own key.

`fhir-facade db load-demo` then `fhir-facade serve` on a free port, in a process group
of its own (stopped with SIGTERM, then SIGKILL), output in files under `folder`.
Tokens are minted with `fhir-facade token` against the same instance.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import requests

REPO_ROOT = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT_S = 60.0
FULL_SCOPE = "user/*.cruds __schedule.manage __patient.blocked __audit.read"
LIMITED_SCOPE = "user/Patient.rs user/Slot.rs"


@dataclass
class LocalServer:
    folder: Path
    env: dict[str, str]
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}/fhir"

    def cli(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "fhir_facade.cli", *args],
            env=self.env,
            cwd=self.folder,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"fhir-facade {' '.join(args)} failed:\n{done.stderr[-3000:]}")
        return done.stdout.strip()

    def token(self, scope: str) -> str:
        return self.cli("token", "--scope", scope, "--subject", "validator-gate", "--hours", "2")

    def stderr_tail(self) -> str:
        with contextlib.suppress(OSError):
            return (self.folder / "stderr.log").read_text(errors="replace")[-4000:]
        return ""

    def start(self) -> None:
        self.cli("db", "load-demo")
        for _ in range(3):
            self.port = _free_port()
            with (
                (self.folder / "stdout.log").open("wb") as out,
                (self.folder / "stderr.log").open("wb") as err,
            ):
                self.process = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "fhir_facade.cli",
                        "serve",
                        "--port",
                        str(self.port),
                        "--workers",
                        "2",
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    env=self.env,
                    cwd=self.folder,
                    start_new_session=True,
                )
            if self._wait_ready():
                return
            self.stop()
            if "in use" not in self.stderr_tail():
                break
        raise RuntimeError(f"fhir-facade did not start; stderr:\n{self.stderr_tail()}")

    def _wait_ready(self) -> bool:
        assert self.process is not None
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            with contextlib.suppress(requests.RequestException):
                answer = requests.get(
                    f"{self.base}/metadata", timeout=2, headers={"Connection": "close"}
                )
                if answer.status_code == 200:
                    return True
            time.sleep(0.1)
        return False

    def stop(self) -> None:
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=15)
        self.process = None


def local_server(folder: Path) -> LocalServer:
    folder.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FHIR_FACADE_")}
    env.update(
        FHIR_FACADE_DATABASE_URL=f"sqlite:///{folder / 'gate.sqlite3'}",
        FHIR_FACADE_INSTANCE_PATH=str(folder / "instance"),
        FHIR_FACADE_JWT_SECRET=secrets.token_hex(32),
        XDG_RUNTIME_DIR=str(folder),  # gunicorn's control socket: one per server
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")])),
        PYTHONUNBUFFERED="1",
    )
    return LocalServer(folder, env)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
