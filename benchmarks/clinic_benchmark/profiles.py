"""pyinstrument profiles of the in-process paths."""

from __future__ import annotations

import datetime as dt
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
    for pid in extra:
        response = bench.client.post(
            "/fhir/Appointment/$find",
            data=orjson.dumps(series_find_body(bench.shape, pid)),
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
        path.write_text(profiler.output_text(unicode=False, color=False, show_all=False))
        written[name] = str(path)
    return written
