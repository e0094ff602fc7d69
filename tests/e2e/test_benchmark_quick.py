"""The benchmark's own smoke test, as the README runs it: `python -m
benchmarks.clinic_benchmark --quick` builds a small clinic, drives a real server with
concurrent bookings and a series, and checks what must hold whatever the timings."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.clinic_benchmark.report import checks
from tests.conftest import PG_URL, REQUIRE_PG

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_the_quick_benchmark_fills_every_place_once_and_books_whole_series(
    backend: str, tmp_path: Path
) -> None:
    if backend == "postgresql" and not PG_URL:
        if REQUIRE_PG:
            pytest.fail("FHIR_FACADE_REQUIRE_POSTGRES=1 but FHIR_FACADE_TEST_POSTGRES_URL is unset")
        pytest.skip("PostgreSQL not configured (set FHIR_FACADE_TEST_POSTGRES_URL)")
    report = tmp_path / "report.json"
    command = [sys.executable, "-m", "benchmarks.clinic_benchmark", "--quick"]
    command += ["--backend", backend, "--out", str(report)]
    if PG_URL:
        command += ["--postgres-url", PG_URL]

    done = subprocess.run(
        command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, check=False
    )

    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (run,) = json.loads(report.read_text())["runs"]
    found = {name: (passed, seen) for name, seen, passed in checks(run)}
    assert len(found) == (9 if backend == "postgresql" else 8), found  # + the bare server
    assert all(passed for passed, _ in found.values()), found
    assert " ms" not in done.stdout.split("| run | check |", 1)[1], "--quick prints no timings"
