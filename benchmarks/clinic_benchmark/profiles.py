"""pyinstrument profiles of the in-process paths."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import text

from benchmarks.clinic_benchmark.booking import appointment_body, load_plan, make_load_sessions
from benchmarks.clinic_benchmark.harness import COMMON_FAMILY, FHIR_JSON, Bench
from benchmarks.clinic_benchmark.reads import patient_queries, week_urls
from benchmarks.clinic_benchmark.series import series_book_body, series_find_body


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
    jobs["patient_family"] = lambda i: bench.get(queries[COMMON_FAMILY](i))
    jobs["patient_phone"] = lambda i: bench.get(queries["phone"](i))
    sessions = make_load_sessions(bench, "load-prof", 40, 10)
    plan = load_plan(bench, sessions, 10, 0.0, offset=23)

    def book(i: int) -> None:
        session, patient = plan[i]
        response = bench.client.post(
            "/fhir/Appointment",
            data=appointment_body(session, patient),
            content_type=FHIR_JSON,
            headers=bench.headers,
        )
        assert response.status_code == 201, response.get_data(as_text=True)[:300]

    jobs["booking"] = book

    def find(i: int) -> None:
        body = series_find_body(bench.shape, bench.shape.series_patients[0])
        response = bench.client.post(
            "/fhir/Appointment/$find",
            data=orjson.dumps(body),
            content_type=FHIR_JSON,
            headers=bench.headers,
        )
        assert response.status_code == 200, response.get_data(as_text=True)[:300]

    jobs["series_find"] = find
    extra = [f"pat-series-prof-{i}" for i in range(12)]
    with bench.engine.begin() as conn:  # patients with a self-pay coverage and no bookings
        now = dt.datetime.now(dt.UTC)
        for pid in extra:
            conn.execute(
                text(
                    "INSERT INTO patient (id, family, given, family_folded, given_folded, gender, "
                    "restricted, version, last_updated) VALUES (:id, 'Prof', 'Ile', 'prof', 'ile', "
                    "'other', :f, 1, :now)"
                ),
                {"id": pid, "f": False, "now": now.replace(tzinfo=None)},
            )
            conn.execute(
                text(
                    "INSERT INTO coverage (id, beneficiary_id, payor_kind, payor_id, status, "
                    "type_system, type_code, self_pay, version, last_updated) VALUES (:c, :id, "
                    "'patient', :id, 'active', 'http://terminology.hl7.org/CodeSystem/coverage-selfpay',"
                    " 'pay', :t, 1, :now)"
                ),
                {"c": f"cov-{pid}", "id": pid, "t": True, "now": now.replace(tzinfo=None)},
            )
    previews = []
    for n, pid in enumerate(extra):  # each with a provider of its own, as measured
        response = bench.client.post(
            "/fhir/Appointment/$find",
            data=orjson.dumps(series_find_body(bench.shape, pid, n % len(bench.shape.providers))),
            content_type=FHIR_JSON,
            headers=bench.headers,
        )
        previews.append(series_book_body(orjson.loads(response.get_data())))

    def series_book(i: int) -> None:
        response = bench.client.post(
            "/fhir/Appointment/$book",
            data=orjson.dumps(previews[i]),
            content_type=FHIR_JSON,
            headers=bench.headers,
        )
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
        session = profiler.last_session
        shares = _by_package(session.root_frame() if session else None, repeat)
        if session is not None:  # for `pyinstrument --load=FILE` (the whole call tree)
            session.save(str(path.with_suffix(".pyisession")))
        path.write_text(shares + profiler.output_text(unicode=False, color=False, show_all=False))
        written[name] = str(path)
    return written


#: A psycopg connection's wait for PostgreSQL's answer: the database's time, not ours.
WAITING = "(waiting for PostgreSQL)"


def _package(file_path: str | None) -> str:
    """The package a frame's code belongs to: a project package, an installed one, or
    Python's own library."""
    if not file_path:
        return "(unknown)"
    parts = Path(file_path).parts
    if "site-packages" in parts:
        rest = parts[parts.index("site-packages") + 1 :]
        return rest[0].removesuffix(".py") if rest else "(unknown)"
    for ours in ("fhir_facade", "store", "mappings", "benchmarks"):
        if ours in parts:
            return ours
    return "python (stdlib and C)" if "python3" in file_path else "(other)"


def _by_package(root: Any, calls: int) -> str:
    """Each package's own time (not its callees'), per call and as a share: which library
    a path's time is spent in, whoever called it."""
    if root is None:
        return ""
    spent: Counter[str] = Counter()

    def walk(frame: Any, owner: str) -> None:
        if frame.is_synthetic or owner == WAITING or (frame.file_path or "<").startswith("<"):
            package = owner  # C functions and [self] count for their caller
        else:
            package = _package(frame.file_path)
            if package == "psycopg" and frame.function.startswith("wait"):
                package = WAITING
        spent[package] += frame.time - sum(child.time for child in frame.children)
        for child in frame.children:
            walk(child, package)

    walk(root, "(unknown)")
    total = sum(spent.values()) or 1.0
    lines = [f"Own time by package, per call ({calls} calls):"]
    for package, seconds in spent.most_common():
        if seconds / total >= 0.005:
            lines.append(
                f"  {package:<28} {seconds * 1000 / max(calls, 1):7.3f} ms  {seconds / total:6.1%}"
            )
    return "\n".join(lines) + "\n"
