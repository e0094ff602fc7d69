"""The README's first command and its walkthrough: `fhir-facade demo` loads the clinic,
prints a token and serves; every shell block of "Walking through the clinic workflow"
runs as written (curl, jq, GNU date) and reaches a closed and a full session, also on a
demo loaded three months before."""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from tests.receiver import notification_type, receiving
from tests.validation import assert_valid

README = Path(__file__).resolve().parents[2] / "README.md"
CLOSED = {
    "url": "http://fhir-facade.org/fhir/StructureDefinition/closed-session",
    "valueBoolean": True,
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FHIR_FACADE_")}
    return env | {"FHIR_FACADE_INSTANCE_PATH": str(tmp_path / "instance"), "PYTHONUNBUFFERED": "1"}


def _cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fhir_facade.cli", *args],
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@contextmanager
def demo(tmp_path: Path, port: int) -> Iterator[tuple[str, str, Path]]:
    """`fhir-facade demo --port PORT`: (base URL, token, its output file)."""
    out = tmp_path / f"demo-{port}.out"
    with out.open("w") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "fhir_facade.cli", "demo", "--port", str(port)],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=_env(tmp_path),
            start_new_session=True,
        )
    try:
        base = f"http://127.0.0.1:{port}/fhir"
        yield base, _wait_for_token_and_server(out, base), out
    finally:
        # SIGKILL: the test is over and its files are thrown away; a graceful stop would
        # wait out gunicorn's graceful timeout (5 s) on idle workers.
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=15)


def _slots(base: str, headers: dict[str, str], **params: str) -> list[dict]:
    bundle = requests.get(
        f"{base}/Slot", params={"_count": "1000", **params}, headers=headers, timeout=10
    ).json()
    assert_valid(bundle)
    return [e["resource"] for e in bundle.get("entry", [])]


@pytest.mark.slow
def test_the_demo_command_serves_the_demo_clinic_with_a_working_token(tmp_path: Path) -> None:
    with demo(tmp_path, _free_port()) as (base, token, _):
        headers = {"Authorization": f"Bearer {token}"}
        schedules = requests.get(
            f"{base}/Schedule",
            params={"actor": "Practitioner/prac-rivera"},
            headers=headers,
            timeout=10,
        ).json()
        assert_valid(schedules)
        assert [e["resource"]["id"] for e in schedules["entry"]] == ["sched-rivera-bk"]
        slots = _slots(base, headers)
        assert [s["status"] for s in slots].count("busy") == 1, "one full session"
        assert len([s for s in slots if CLOSED in s["extension"]]) == 1, "one closed session"
        assert len(slots) == 9 * 12, "nine weekly sessions over twelve weeks"
        patients = requests.get(f"{base}/Patient", headers=headers, timeout=10).json()
        assert patients["total"] >= 50
        free = next(s for s in slots if s["status"] == "free" and CLOSED not in s["extension"])
        _notifications_are_delivered_in_process(base, headers, free, patients)


def _notifications_are_delivered_in_process(
    base: str, headers: dict[str, str], free: dict, patients: dict
) -> None:
    """The demo delivers Subscription notifications itself (no `fhir-facade worker`), and
    its token may subscribe: a local receiver gets the handshake, then the booking."""
    with receiving() as receiver:
        subscription = {
            "resourceType": "Subscription",
            "status": "requested",
            "reason": "demo",
            "criteria": "http://fhir-facade.org/fhir/SubscriptionTopic/appointment",
            "channel": {"type": "rest-hook", "endpoint": receiver.url},
        }
        created = requests.post(f"{base}/Subscription", json=subscription, headers=headers)
        assert created.status_code == 201, created.text
        patient = patients["entry"][0]["resource"]["id"]
        booking = {
            "resourceType": "Appointment",
            "status": "booked",
            "slot": [{"reference": f"Slot/{free['id']}"}],
            "participant": [{"actor": {"reference": f"Patient/{patient}"}, "status": "accepted"}],
        }
        booked = requests.post(f"{base}/Appointment", json=booking, headers=headers, timeout=10)
        assert booked.status_code == 201, booked.text
        deadline = time.monotonic() + 20
        while not receiver.events() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert notification_type(receiver.notifications[0]) == "handshake"
        ((number, event),) = receiver.events().items()
        assert (number, event["focus"]) == (1, f"Appointment/{booked.json()['id']}")


def walkthrough_blocks() -> list[str]:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Walking through the clinic workflow", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.*?)```", section, flags=re.S)


@pytest.mark.slow
@pytest.mark.skipif(
    not all(shutil.which(tool) for tool in ("bash", "curl", "jq", "date")),
    reason="the walkthrough needs bash, curl, jq and GNU date",
)
def test_the_readme_walkthrough_runs_as_written_on_a_demo_loaded_three_months_ago(
    tmp_path: Path,
) -> None:
    today = dt.date.today()
    loaded = _cli(tmp_path, "db", "load-demo", "--as-of", str(today - dt.timedelta(days=91)))
    assert loaded.returncode == 0, loaded.stderr
    port = _free_port()
    with demo(tmp_path, port) as (base, token, out):
        assert "demo sessions added for the weeks ahead" in out.read_text()
        headers = {"Authorization": f"Bearer {token}"}
        ahead = _slots(base, headers, start=f"ge{today}")
        weeks = {dt.date.fromisoformat(s["start"][:10]).isocalendar()[:2] for s in ahead}
        assert len(weeks) >= 11, "sessions in the weeks ahead of today, not of the load"

        outputs = run_blocks(walkthrough_blocks(), token, port, tmp_path)

    by_content = dict(zip(walkthrough_blocks(), outputs, strict=True))
    booking = next(o for b, o in by_content.items() if "visit-0001" in b)
    assert re.search(r"HTTP/1.1 201", booking), booking
    assert re.search(r"(?im)^warning: 299 fhir-facade \".*closed", booking), booking
    full = next(o for b, o in by_content.items() if "FULL=" in b)
    assert '"status":"busy"' in full and '"valueUnsignedInt":6' in full, full
    assert '{"code":"conflict","detail":"session-full"}' in full, full
    calendar = next(o for b, o in by_content.items() if "Schedule?actor" in b)
    assert '"sched-rivera-bk"' in calendar, calendar
    cancel = next(o for b, o in by_content.items() if "cancelled" in b)
    assert cancel.strip() == '"cancelled"', cancel
    department = next(o for b, o in by_content.items() if '"$B/Location"' in b)
    assert '"name":"Berlin Behavioral Health"' in department and "Europe/Berlin" in department
    assert department.strip().endswith("1"), department
    booked = next(o for b, o in by_content.items() if "$book" in b)
    assert '"status":"booked"' in booked and '"status":"proposed"' in booked, booked


def run_blocks(blocks: list[str], token: str, port: int, folder: Path) -> list[str]:
    """Every block in one bash, as a reader pastes them; each block's output apart."""
    marker = "@@ block done @@"
    script = [f"export TOKEN={token}", "set -o pipefail"]
    for block in blocks:
        script += [block.replace(":8080/", f":{port}/"), f"echo; echo '{marker}'"]
    done = subprocess.run(
        ["bash", "-e", "-c", "\n".join(script)],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    outputs = done.stdout.split(marker + "\n")[: len(blocks)]
    assert len(outputs) == len(blocks), done.stdout
    return outputs


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
