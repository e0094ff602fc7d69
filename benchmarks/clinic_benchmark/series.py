"""`$find` and `$book` of a 52-week Mon/Wed/Fri series."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import orjson

from benchmarks.clinic_benchmark.harness import FHIR_JSON, Bench, stats
from benchmarks.clinic_benchmark.phases import Phases, medians
from benchmarks.clinic_data import LOCAL_TIMES, ClinicShape


def series_find_body(shape: ClinicShape, patient: str, provider: int = 0) -> dict[str, Any]:
    """Mondays, Wednesdays and Fridays at 10:00 (the department's zone) for 52 weeks, with
    the `provider`-th provider."""
    first = shape.this_monday + dt.timedelta(weeks=1)
    return {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "patient", "valueReference": {"reference": f"Patient/{patient}"}},
            {
                "name": "practitioner",
                "valueReference": {"reference": f"Practitioner/{shape.providers[provider]}"},
            },
            {
                "name": "timing",
                "valueTiming": {
                    "repeat": {
                        "boundsPeriod": {"start": first.isoformat()},
                        "count": 156,
                        "periodUnit": "wk",
                        "period": 1,
                        "frequency": 1,
                        "dayOfWeek": ["mon", "wed", "fri"],
                        "timeOfDay": [LOCAL_TIMES[0].strftime("%H:%M:%S")],
                        "duration": 90,
                        "durationUnit": "min",
                    }
                },
            },
        ],
    }


def series_book_body(preview: dict[str, Any]) -> dict[str, Any]:
    kept = [e["resource"] for e in preview["entry"] if e["search"]["mode"] == "match"]
    return {
        "resourceType": "Parameters",
        "parameter": [{"name": "appointment-resource", "resource": k} for k in kept],
    }


def measure_series(bench: Bench, patients: int | None = None) -> dict[str, Any]:
    """`$find` then `$book` for each of the first `patients` series patients (all: None)."""
    shape = bench.shape
    find_ms, book_ms, find_sql, book_sql, matched, booked = [], [], [], [], [], []
    book_driver_ms: list[float] = []
    book_phases: list[dict[str, float]] = []
    phases = Phases(bench.counter)

    def timed(operation: str, body: dict[str, Any], ms: list[float], sql: list[int]) -> Any:
        """POST an operation in-process; record its time and SQL statements (for `$book`
        also its statements' own time, in the driver and the database)."""
        data = orjson.dumps(body)
        bench.counter.reset()
        phases.start()
        started = time.perf_counter()
        response = bench.client.post(
            f"/fhir/Appointment/{operation}",
            data=data,
            content_type=FHIR_JSON,
            headers=bench.headers,
        )
        ms.append((time.perf_counter() - started) * 1000)
        sql.append(bench.counter.count)
        if operation == "$book":
            book_driver_ms.append(bench.counter.seconds * 1000)
            book_phases.append(phases.take())
        assert response.status_code == 200, response.get_data(as_text=True)[:500]
        return orjson.loads(response.get_data())

    try:
        # Each series with a provider of its own while there are enough: every one finds
        # its sessions as the data left them, not filled by the series before it.
        for n, patient in enumerate(shape.series_patients[:patients]):
            body = series_find_body(shape, patient, n % len(shape.providers))
            preview = timed("$find", body, find_ms, find_sql)
            book = series_book_body(preview)
            matched.append(sum(1 for p in book["parameter"] if p["resource"].get("slot")))
            answer = timed("$book", book, book_ms, book_sql)
            booked.append(
                sum(
                    1
                    for e in answer["entry"]
                    if e["resource"].get("resourceType") == "Appointment"
                    and e["resource"].get("status") == "booked"
                )
            )
    finally:
        phases.close()
    return {
        "providers": min(len(find_ms), len(shape.providers)),
        "occurrences": 156,
        "matched_with_slot": matched,
        "booked": booked,
        "find_ms": stats(find_ms[1:] or find_ms),
        "find_ms_first_call": round(find_ms[0], 2),
        "find_sql": find_sql,
        "book_ms": stats(book_ms[1:] or book_ms),
        "book_ms_first_call": round(book_ms[0], 2),
        "book_sql": book_sql,
        "book_statements_ms": stats(book_driver_ms[1:] or book_driver_ms),
        # Real time by phase (nested phases are inside their callers': not a sum).
        "book_phases_ms": medians(book_phases[1:] or book_phases),
    }
