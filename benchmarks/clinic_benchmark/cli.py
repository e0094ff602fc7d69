"""The command line: one run per backend and scale, then the report."""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import random
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.clinic_benchmark.booking import measure_booking
from benchmarks.clinic_benchmark.harness import (
    DEFAULT_PG,
    FHIR_JSON,
    SCOPE,
    SECRET,
    SSN_KEYS,
    Bench,
    StatementCounter,
    machine,
    migrate,
    start_server,
    target_database,
)
from benchmarks.clinic_benchmark.profiles import profile
from benchmarks.clinic_benchmark.reads import (
    measure_page,
    measure_patient_search,
    measure_week_view,
)
from benchmarks.clinic_benchmark.report import checks, flatness, render, render_checks, targets
from benchmarks.clinic_benchmark.series import measure_series
from benchmarks.clinic_data import build
from fhir_facade import create_app
from fhir_facade.auth import ssn_hasher
from fhir_facade.config import Settings

#: `--quick`: a smoke test of this code (about 1,000 patients, few samples, a short
#: booking load), whose checks, not timings, are the result. Options given still win.
QUICK = {
    "scale": 0.01,
    "iterations": 5,
    "series_patients": 1,
    "workers": 2,
    "threads": 2,
    "clients": 4,
    "load_sessions": 5,
    "capacity": 4,
}


def run_one(backend: str, scale: float, args: argparse.Namespace, root: Path) -> dict[str, Any]:
    with target_database(backend, scale, args.postgres_url, root) as target:
        migrate(target)
        keys = ssn_hasher(Settings(ssn_keys=SSN_KEYS))  # the app's own hasher and key
        print(f"[{backend} x{scale:g}] building ...", flush=True)
        shape = build(target.writer(), scale, keys)
        print(
            f"[{backend} x{scale:g}] built in {shape.build_seconds:.1f} s: {shape.counts}",
            flush=True,
        )
        app = create_app(
            {
                "database_url": target.url,
                "instance_path": target.folder / "instance",
                "jwt_secret": SECRET,
                "ssn_keys": SSN_KEYS,
                "base_url": "http://bench/fhir",
            }
        )
        token = app.extensions["fhir_facade.tokens"].mint("bench", SCOPE, dt.timedelta(hours=4))
        # As `serve` does before its workers start (fhir_facade.cli): the app's objects
        # (and this run's data shape) out of the collector's sight, so an in-process
        # request pays for collecting its own garbage only, as a worker's does, not for
        # walking some 150,000 long-lived objects in each full collection.
        gc.collect()
        gc.freeze()
        database = app.extensions["fhir_facade.db"]
        bench = Bench(
            target,
            shape,
            app,
            app.test_client(),
            {"Authorization": f"Bearer {token}", "Accept": FHIR_JSON},
            token,
            StatementCounter(database.engine),
            random.Random(1),
            args.iterations,
        )
        result: dict[str, Any] = {
            "backend": backend,
            "scale": scale,
            "build_seconds": round(shape.build_seconds, 1),
            "rows": shape.counts,
        }
        server = start_server(target, args.workers, args.threads)
        try:
            result["server"] = {"workers": args.workers, "threads": args.threads}
            steps: list[tuple[str, Callable[[], Any]]] = [
                ("week_view", lambda: measure_week_view(bench, server)),
                ("page_500", lambda: measure_page(bench, server)),
                ("patient_search", lambda: measure_patient_search(bench, server)),
                (
                    "booking",
                    lambda: measure_booking(
                        bench,
                        server,
                        args.clients,
                        args.load_sessions,
                        args.capacity,
                        (args.workers, args.threads),
                    ),
                ),
                ("series", lambda: measure_series(bench, args.series_patients)),
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
        gc.unfreeze()
        return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--backend",
        action="append",
        choices=("sqlite", "postgresql"),
        help="repeat for both (default: sqlite)",
    )
    parser.add_argument("--scale", type=float, default=1.0, help="data size, 1 = the default")
    parser.add_argument("--scales", help="comma-separated scales, e.g. 1,4,16 (overrides --scale)")
    parser.add_argument(
        "--postgres-url",
        default=DEFAULT_PG,
        help="a PostgreSQL the benchmark may create databases on",
    )
    parser.add_argument("--out", help="write the JSON report here")
    parser.add_argument("--iterations", type=int, default=300, help="samples per latency")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn workers")
    parser.add_argument("--threads", type=int, default=4, help="gunicorn threads per worker")
    parser.add_argument("--clients", type=int, default=16, help="concurrent booking clients")
    parser.add_argument(
        "--load-sessions",
        type=int,
        default=200,
        help="sessions the concurrent booking load goes into",
    )
    parser.add_argument("--capacity", type=int, default=20, help="places per load session")
    parser.add_argument(
        "--series-patients", type=int, help="patients booked into a series (default: all 12)"
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=("week_view", "page_500", "patient_search", "booking", "series"),
    )
    parser.add_argument("--profile", help="write pyinstrument profiles to this folder")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="check the benchmark itself on small data in well under a minute: correctness "
        "only (0 overbooked, statuses as expected), no timings; exit status 1 if a check fails",
    )
    args = parser.parse_args(argv)
    if args.quick:
        parser.set_defaults(**QUICK)
        args = parser.parse_args(argv)
    backends = args.backend or ["sqlite"]
    scales = [float(s) for s in args.scales.split(",")] if args.scales else [args.scale]
    report: dict[str, Any] = {
        "machine": machine(),
        "command": " ".join(
            [
                Path(sys.executable).name,
                "-m",
                "benchmarks.clinic_benchmark",
                *(argv if argv is not None else sys.argv[1:]),
            ]
        ),
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
    print(render_checks(report) if args.quick else render(report))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2, default=str))
        print(f"\nreport written to {args.out}")
    if args.quick and not all(passed for run in report["runs"] for *_, passed in checks(run)):
        raise SystemExit(1)
