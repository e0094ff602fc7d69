"""The README's first command: `fhir-facade demo` loads the clinic, prints a token, serves."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

from tests.validation import assert_valid


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_demo_command_serves_the_demo_clinic_with_a_working_token(tmp_path: Path) -> None:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FHIR_FACADE_")}
    env |= {"FHIR_FACADE_INSTANCE_PATH": str(tmp_path / "instance"), "PYTHONUNBUFFERED": "1"}
    out = tmp_path / "demo.out"
    with out.open("w") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "fhir_facade.cli", "demo", "--port", str(port)],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    try:
        base = f"http://127.0.0.1:{port}/fhir"
        token = _wait_for_token_and_server(out, base)
        headers = {"Authorization": f"Bearer {token}"}
        schedules = requests.get(
            f"{base}/Schedule",
            params={"actor": "Practitioner/prac-rivera"},
            headers=headers,
            timeout=10,
        ).json()
        assert_valid(schedules)
        assert [e["resource"]["id"] for e in schedules["entry"]] == ["sched-rivera-bk"]
        slots = requests.get(
            f"{base}/Slot", params={"_count": "500"}, headers=headers, timeout=10
        ).json()
        assert_valid(slots)
        statuses = [e["resource"]["status"] for e in slots["entry"]]
        assert statuses.count("busy") == 1, "the demo has exactly one full session"
        closed = [
            e["resource"]["id"]
            for e in slots["entry"]
            if {
                "url": "http://fhir-facade.org/fhir/StructureDefinition/closed-session",
                "valueBoolean": True,
            }
            in e["resource"]["extension"]
        ]
        assert len(closed) == 1, "the demo has exactly one closed session"
        assert slots["total"] == 9 * 12, "nine weekly sessions over twelve weeks"
        patients = requests.get(f"{base}/Patient", headers=headers, timeout=10).json()
        assert patients["total"] >= 50
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=15)


def _wait_for_token_and_server(out: Path, base: str) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        match = re.search(r"export TOKEN=(\S+)", out.read_text())
        if match:
            try:
                if requests.get(f"{base}/metadata", timeout=2).status_code == 200:
                    return match.group(1)
            except requests.ConnectionError:
                pass
        time.sleep(0.2)
    raise AssertionError(f"demo did not come up:\n{out.read_text()}")
