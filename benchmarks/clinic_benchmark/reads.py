"""Reads: the week view, a 500-Slot page against the orjson floor, patient search and its plans."""

from __future__ import annotations

import datetime as dt
import gc
import json
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import requests

from benchmarks.clinic_benchmark.harness import (
    COMMON_FAMILY,
    FAMILY_ONE_ENTRY,
    FHIR_JSON,
    MRN_SYSTEM,
    Bench,
    Server,
    stats,
    timed,
)
from benchmarks.clinic_data import phone_of
from fhir_facade.http import json_bytes
from fhir_facade.registry import RESOURCE_TYPES
from fhir_facade.searchset import searchset
from mappings.search import parse_search
from mappings.slot import slot_to_fhir
from store import search as store_search
from store.access import Access
from store.ssn import SSN_SYSTEM


def week_urls(bench: Bench, n: int) -> list[str]:
    """Random provider, random week within 20 weeks of today: the calendar tab."""
    rng = bench.rng
    urls = []
    for _ in range(n):
        schedule = rng.choice(bench.shape.schedules)
        monday = bench.shape.this_monday + dt.timedelta(weeks=rng.randrange(-20, 20))
        sunday_next = monday + dt.timedelta(days=7)
        urls.append(
            f"/fhir/Slot?schedule=Schedule/{schedule}&start=ge{monday}&start=lt{sunday_next}"
        )
    return urls


def measure_week_view(bench: Bench, server: Server | None) -> dict[str, Any]:
    n = bench.iterations
    urls = week_urls(bench, n + 20)
    sizes = [len(bench.get(u).get("entry", [])) for u in urls[:20]]
    result: dict[str, Any] = {
        "slots_per_week": round(statistics.fmean(sizes), 1),
        "in_process_ms": stats(timed(lambda i: bench.get(urls[i]), n, 20)),
    }
    if server is not None:
        with requests.Session() as http:
            http.headers.update({"Authorization": f"Bearer {bench.token}", "Accept": FHIR_JSON})

            def call(i: int) -> None:
                response = http.get(server.base + urls[i].removeprefix("/fhir"))
                assert response.status_code == 200, response.text[:300]

            result["http_ms"] = stats(timed(call, n, 20))

            def metadata(_: int) -> None:
                response = http.get(server.base + "/metadata")
                assert response.status_code == 200, response.text[:300]

            # The same server's cheapest FHIR answer: what HTTP, Flask and JSON cost alone.
            result["metadata_http_ms"] = stats(timed(metadata, n, 20))
            result["http_vs_metadata"] = round(
                result["http_ms"]["p50"] / result["metadata_http_ms"]["p50"], 2
            )
    return result


def measure_page(bench: Bench, server: Server | None) -> dict[str, Any]:
    """A 500-Slot page: the whole request, and its parts in the same run."""
    monday = bench.shape.this_monday + dt.timedelta(weeks=2)
    url = f"/fhir/Slot?start=ge{monday}&start=lt{monday + dt.timedelta(days=14)}&_count=500"
    first = bench.get(url)
    n = max(10, bench.iterations // 10)
    total = stats(timed(lambda i: bench.get(url), n, 3))
    pairs = [(k, v) for k, v in (p.split("=", 1) for p in url.split("?", 1)[1].split("&"))]
    access = Access()
    render = RESOURCE_TYPES["Slot"].read_fhir
    ssn = bench.app.extensions["fhir_facade.ssn"]
    database = bench.app.extensions["fhir_facade.db"]
    parts: dict[str, list[float]] = {
        k: []
        for k in (
            "parse",
            "sql",
            "query_rows",
            "render",
            "render_uncached",
            "bundle",
            "dumps",
            "floor_same_dicts",
            "floor_plain_records",
        )
    }
    for _ in range(n):
        # Each part pays for its own garbage only: a collection set off by what an
        # earlier iteration or part left (the Slots rendered anew make ~20,000 objects)
        # would land in whichever part happens to allocate next.
        gc.collect()
        t0 = time.perf_counter()
        parsed = parse_search("Slot", pairs, access, ssn=ssn)
        t1 = time.perf_counter()
        bench.counter.reset()
        with database.reading() as db:
            page = store_search.run(db, parsed.query)
            t2 = time.perf_counter()
            sql = bench.counter.seconds
            # As the server renders: from the worker's shared renderings (this page was
            # served before); each Slot rendered anew, for comparison, comes last.
            t_render = time.perf_counter()
            matches = [render(row) for row in page.rows]
            t3 = time.perf_counter()
            bundle = searchset("http://bench/fhir", parsed, matches, [], page.total)
            t4 = time.perf_counter()
            body = json_bytes(bundle)  # as the server writes it
            t5 = time.perf_counter()
            # Floor 1: the same document, already built as plain dicts, dumped again.
            prebuilt = orjson.loads(body)
            t6 = time.perf_counter()
            orjson.dumps(prebuilt)
            t7 = time.perf_counter()
            # Floor 2: the rows' own values as flat plain dicts (no FHIR shape), dumped.
            plain = [
                {
                    "id": r.id,
                    "schedule": r.schedule_id,
                    "start": r.start,
                    "end": r.end,
                    "capacity": r.capacity,
                    "booked": r.booked,
                    "closed": r.closed,
                    "blocked": r.blocked,
                    "appointment_type": r.appointment_type,
                    "service_type": r.service_type,
                    "version": r.version,
                    "last_updated": r.last_updated,
                }
                for r in page.rows
            ]
            t8 = time.perf_counter()
            orjson.dumps(plain)
            t9 = time.perf_counter()
            gc.collect()
            t_uncached = time.perf_counter()
            for row in page.rows:
                slot_to_fhir(row)
            uncached = time.perf_counter() - t_uncached
        for key, value in (
            ("parse", t1 - t0),
            ("sql", sql),
            ("query_rows", t2 - t1 - sql),
            ("render", t3 - t_render),
            ("render_uncached", uncached),
            ("bundle", t4 - t3),
            ("dumps", t5 - t4),
            ("floor_same_dicts", t7 - t6),
            ("floor_plain_records", t9 - t8),
        ):
            parts[key].append(value * 1000)
    p50 = {k: round(statistics.median(v), 3) for k, v in parts.items()}
    output = p50["render"] + p50["bundle"] + p50["dumps"]
    output_uncached = p50["render_uncached"] + p50["bundle"] + p50["dumps"]
    result: dict[str, Any] = {
        "url": url,
        "entries": len(first.get("entry", [])),
        "total": first.get("total"),
        "bytes": len(orjson.dumps(first)),
        "server_ms": total,
        "parts_p50_ms": p50,
        "output_ms": round(output, 3),
        "output_share_of_server": round(output / total["p50"], 3),
        "output_vs_floor": round(output / p50["floor_same_dicts"], 2),
        "output_uncached_vs_floor": round(output_uncached / p50["floor_same_dicts"], 2),
        "output_vs_plain_records_floor": round(output / p50["floor_plain_records"], 2),
    }
    if server is not None:
        with requests.Session() as http:
            http.headers.update({"Authorization": f"Bearer {bench.token}", "Accept": FHIR_JSON})
            result["http_ms"] = stats(
                timed(lambda i: http.get(server.base + url.removeprefix("/fhir")), n, 3)
            )
    return result


PREFIXES = ("smit", "rodr", "mart", "nguy", "brad", "lind", "hart", "mull")


def patient_queries(bench: Bench) -> dict[str, Callable[[int], str]]:
    rng = bench.rng
    shape = bench.shape
    ssns = shape.ssn_patients
    pool = shape.unrestricted

    def phone(_: int) -> str:
        digits = phone_of(rng.choice(pool)).replace("(", "").replace(") ", ".").replace("-", ".")
        return f"/fhir/Patient?phone={digits}"

    def ssn(_: int) -> str:
        digits = rng.choice(ssns)[1]
        return f"/fhir/Patient?identifier={SSN_SYSTEM}|{digits[:3]}-{digits[3:5]}-{digits[5:]}"

    def mrn(_: int) -> str:
        return f"/fhir/Patient?identifier={MRN_SYSTEM}|MRN{rng.choice(pool):08d}"

    return {
        COMMON_FAMILY: lambda _: "/fhir/Patient?family=garc",
        FAMILY_ONE_ENTRY: lambda _: "/fhir/Patient?family=garc&_count=1",
        "family=kirkst (rare)": lambda _: "/fhir/Patient?family=kirkst",
        "family=<random 4 letters of a name>": lambda _: (
            f"/fhir/Patient?family={rng.choice(PREFIXES)}"
        ),
        "phone": phone,
        "identifier=SSN": ssn,
        "identifier=MRN": mrn,
    }


def measure_patient_search(bench: Bench, server: Server | None) -> dict[str, Any]:
    results: dict[str, Any] = {}
    n = bench.iterations
    for name, make in patient_queries(bench).items():
        urls = [make(i) for i in range(n + 10)]
        sample = bench.get(urls[0])
        statements_ms: list[float] = []

        def search(i: int, u: list[str] = urls, into: list[float] = statements_ms) -> None:
            bench.counter.reset()
            bench.get(u[i])
            into.append(bench.counter.seconds * 1000)

        entry: dict[str, Any] = {
            "example": urls[0],
            "total": sample.get("total"),
            "returned": len(sample.get("entry", [])),
            "in_process_ms": stats(timed(search, n, 10)),
        }
        # The search's statements alone, in the driver and the database (warm-up left out).
        entry["statements_ms"] = stats(statements_ms[min(10, n) :])
        if server is not None:
            with requests.Session() as http:
                http.headers.update({"Authorization": f"Bearer {bench.token}", "Accept": FHIR_JSON})
                entry["http_ms"] = stats(
                    timed(
                        lambda i, u=urls: http.get(server.base + u[i].removeprefix("/fhir")), n, 10
                    )
                )
        entry["plan"] = explain(bench, urls[0])
        results[name] = entry
    return results


_BIG_TABLES = {
    "patient",
    "patient_phone",
    "patient_identifier",
    "booking",
    "group_session",
    "coverage",
}


def explain(bench: Bench, url: str) -> dict[str, Any]:
    """The statements one request issued, each with its plan; whether only indexes served."""
    bench.counter.captured = []
    try:
        bench.get(url)
        captured = bench.counter.captured
    finally:
        bench.counter.captured = None
    plans = []
    with bench.engine.connect() as conn:
        for statement, parameters in captured:
            if not statement.lstrip().upper().startswith("SELECT"):
                continue
            if bench.target.backend == "postgresql":
                raw = conn.exec_driver_sql(
                    "EXPLAIN (ANALYZE, FORMAT JSON) " + statement, parameters
                ).scalar_one()
                plan = raw[0] if isinstance(raw, list) else json.loads(raw)[0]
                nodes = list(_plan_nodes(plan["Plan"]))
                plans.append(
                    {
                        "sql": " ".join(statement.split())[:400],
                        "execution_ms": plan.get("Execution Time"),
                        "nodes": [_describe(n) for n in nodes if "Scan" in n["Node Type"]],
                        # A Seq Scan, or an Index Scan with no Index Cond (the whole index walked
                        # for its order, every row filtered), reads the whole big table.
                        "seq_scans_on_big_tables": sorted(
                            {
                                n["Relation Name"]
                                for n in nodes
                                if n.get("Relation Name") in _BIG_TABLES
                                and (
                                    n["Node Type"] == "Seq Scan"
                                    or (
                                        n["Node Type"] in ("Index Scan", "Index Only Scan")
                                        and "Index Cond" not in n
                                    )
                                )
                            }
                        ),
                    }
                )
            else:
                rows = conn.exec_driver_sql(
                    "EXPLAIN QUERY PLAN " + statement, parameters
                ).fetchall()
                details = [str(r[-1]) for r in rows]
                plans.append(
                    {
                        "sql": " ".join(statement.split())[:400],
                        "nodes": details,
                        # SCAN (unlike SEARCH) walks the whole table, even "USING INDEX"
                        # (for order).
                        "seq_scans_on_big_tables": sorted(
                            {
                                d.split()[1]
                                for d in details
                                if d.startswith("SCAN ") and d.split()[1] in _BIG_TABLES
                            }
                        ),
                    }
                )
    return {
        "statements": plans,
        "index_only": all(not p["seq_scans_on_big_tables"] for p in plans),
    }


def _describe(n: dict[str, Any]) -> str:
    text_ = n["Node Type"]
    if "Index Name" in n:
        text_ += f" using {n['Index Name']}"
    if "Relation Name" in n:
        text_ += f" on {n['Relation Name']}"
    if "Index Cond" in n:
        text_ += f" [cond {n['Index Cond']}]"
    elif n["Node Type"] in ("Index Scan", "Index Only Scan"):
        text_ += " [no Index Cond: whole index walked]"
    if "Filter" in n:
        text_ += f" [filter {n['Filter']}; removed {n.get('Rows Removed by Filter', 0)}]"
    return text_ + f" rows={n.get('Actual Rows')}"


def _plan_nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", []):
        yield from _plan_nodes(child)
