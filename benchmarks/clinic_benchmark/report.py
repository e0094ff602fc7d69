"""The targets each run is held to, and the markdown tables."""

from __future__ import annotations

from typing import Any, NamedTuple

from benchmarks.clinic_benchmark.harness import (
    CLIENT_CPU,
    COMMON_FAMILY,
    FAMILY_ONE_ENTRY,
    POSTGRES_CPU,
    SERVER_CPU,
)


def targets(run: dict[str, Any]) -> list[tuple[str, str, bool | None]]:
    """(target, measured, met) for one run (None: not measured or not applicable)."""
    out: list[tuple[str, str, bool | None]] = []
    pg = run["backend"] == "postgresql"
    if "week_view" in run:
        w = run["week_view"]
        out.append(
            (
                "week view p50 <= 2 ms in-process",
                f"{w['in_process_ms']['p50']:.2f} ms",
                w["in_process_ms"]["p50"] <= 2,
            )
        )
        if "http_ms" in w:
            out.append(
                (
                    "week view p50 <= 5 ms over HTTP",
                    f"{w['http_ms']['p50']:.2f} ms",
                    w["http_ms"]["p50"] <= 5,
                )
            )
        if "http_vs_metadata" in w:
            out.append(
                (
                    "week view over HTTP <= 2x /metadata",
                    f"{w['http_vs_metadata']:.2f}x",
                    w["http_vs_metadata"] <= 2,
                )
            )
    if "page_500" in run:
        p = run["page_500"]
        out.append(
            (
                "500-Slot page <= 30 ms (server, p50)",
                f"{p['server_ms']['p50']:.1f} ms",
                p["server_ms"]["p50"] <= 30,
            )
        )
        out.append(
            (
                "output building <= 2x orjson floor",
                f"{p['output_vs_floor']:.1f}x "
                f"({p['output_ms']:.1f} ms vs {p['parts_p50_ms']['floor_same_dicts']:.2f} ms)",
                p["output_vs_floor"] <= 2,
            )
        )
    if "patient_search" in run:
        for name, entry in run["patient_search"].items():
            out.append(
                (
                    f"patient search {name} p50 <= 5 ms",
                    f"{entry['in_process_ms']['p50']:.2f} ms (total {entry['total']})",
                    entry["in_process_ms"]["p50"] <= 5,
                )
            )
            if True:  # the target names PostgreSQL; SQLite's plan is shown as well
                out.append(
                    (
                        f"  plan uses indexes only: {name}",
                        "yes"
                        if entry["plan"]["index_only"]
                        else "whole-table scan of "
                        + ", ".join(
                            sorted(
                                {
                                    t
                                    for s in entry["plan"]["statements"]
                                    for t in s["seq_scans_on_big_tables"]
                                }
                            )
                        ),
                        entry["plan"]["index_only"],
                    )
                )
        searches = run["patient_search"]
        mrn = searches.get("identifier=MRN")
        family = searches.get(COMMON_FAMILY)
        if mrn and family:
            ratio = family["in_process_ms"]["p50"] / mrn["in_process_ms"]["p50"]
            out.append(
                (
                    f"{COMMON_FAMILY.split(' ')[0]} within the time of an MRN search",
                    f"{ratio:.2f}x",
                    ratio <= 1,
                )
            )
        one = searches.get(FAMILY_ONE_ENTRY)
        if mrn and one:
            ratio = one["in_process_ms"]["p50"] / mrn["in_process_ms"]["p50"]
            out.append(
                (
                    "  the name lookup alone: family=garc&_count=1 vs the MRN search",
                    f"{ratio:.2f}x: the rest is the page's other 49 patients",
                    None,
                )
            )
        if mrn and family and "statements_ms" in family:
            extra = family["statements_ms"]["p50"] - mrn["statements_ms"]["p50"]
            out.append(
                (
                    "  the page's statements alone: family=garc minus the MRN search's",
                    f"{extra:.2f} ms = {extra / mrn['in_process_ms']['p50'] * 100:.0f}% of the "
                    "MRN search, before any of the page's patients is rendered",
                    None,
                )
            )
    if "booking" in run:
        b = run["booking"]
        rate = b["http"]["bookings_per_s"]
        out.append(
            (
                "booking >= 400/s" + ("" if pg else " (target is for PostgreSQL)"),
                f"{rate:.0f}/s, p95 {b['http']['booking_ms'].get('p95', 0):.0f} ms",
                rate >= 400 if pg else None,
            )
        )
        out.append(
            (
                "0 overbooked sessions",
                str(b["check"]["overbooked_sessions"])
                + f" (count mismatches {b['check']['count_mismatches']})",
                b["check"]["overbooked_sessions"] == 0 and b["check"]["count_mismatches"] == 0,
            )
        )
        out.append(
            (
                "booking >= 25% of the driver's own rate",
                f"{b['ratio_to_driver'] * 100:.0f}% of {b['driver']['bookings_per_s']:.0f}/s",
                b["ratio_to_driver"] >= 0.25 if pg else None,
            )
        )
        for floor in _FLOORS:
            if floor.key in b:
                rate = b[floor.key][f"{floor.unit}_per_s"]
                share = rate / max(b["driver"]["bookings_per_s"], 0.001)
                found = f"{share:.0%} ({rate:.0f}/s): {floor.meaning}"
                out.append((f"  the floor: {floor.label}", found, None))
        budget = _budget_at_a_quarter(b) if pg else None
        if budget is not None:
            out.append(("  the budget at 25%: CPU per booking, all processes", budget, None))
        cpu = b["http"]["cpu"]
        server = _dig(cpu, (SERVER_CPU, "cpu_ms_per_booking"))
        database = _dig(cpu, (POSTGRES_CPU, "cpu_ms_per_booking"))
        if pg and server is not None and database:
            out.append(
                (
                    "server CPU per booking <= 3x PostgreSQL's",
                    f"{server / database:.1f}x ({server} ms vs {database} ms)",
                    server / database <= 3,
                )
            )
        rss = max(v for k, v in b["server_rss_mb_after_load"].items() if k != "master")
        out.append(("RSS <= 150 MB (largest worker after load)", f"{rss:.0f} MB", rss <= 150))
    if "series" in run:
        s = run["series"]
        out.append(
            (
                "$find 52-week series <= 15 ms",
                f"{s['find_ms']['p50']:.1f} ms",
                s["find_ms"]["p50"] <= 15,
            )
        )
        out.append(("$find <= 3 SQL statements", str(max(s["find_sql"])), max(s["find_sql"]) <= 3))
        out.append(
            (
                "$book <= 60 ms",
                f"{s['book_ms']['p50']:.1f} ms ({max(s['book_sql'])} SQL)",
                s["book_ms"]["p50"] <= 60,
            )
        )
        ratio = s["book_ms"]["p50"] / s["find_ms"]["p50"]
        out.append(("$book <= 3x its $find", f"{ratio:.2f}x", ratio <= 3))
        if "book_statements_ms" in s:
            alone = s["book_statements_ms"]["p50"]
            out.append(
                (
                    "  $book's statements, summed (driver and database time; the bookings' "
                    "and their audit's INSERTs run beside the request's own work)",
                    f"{alone:.1f} ms = {alone / s['find_ms']['p50']:.1f}x its $find",
                    None,
                )
            )
        if s.get("book_phases_ms"):
            largest = list(s["book_phases_ms"].items())[:12]
            out.append(
                (
                    "  where $book's time goes (median ms; a phase includes those it calls)",
                    "; ".join(f"{name} {ms:.1f}" for name, ms in largest),
                    None,
                )
            )
    return out


def _budget_at_a_quarter(b: dict[str, Any]) -> str | None:
    """The CPU a booking may cost, all processes together, for the machine's cores to
    book at 25 % of the driver's rate; against it, what PostgreSQL spent per booking of
    this server's load, and what Flask, gunicorn and the clients spent per booking of the
    bare server's (its two statements and nothing else): what is left of the budget is
    what this server's own work may cost."""
    cpu, bare = b["http"]["cpu"], _dig(b, ("bare", "cpu"))
    database, ours = (_dig(cpu, (k, "cpu_ms_per_booking")) for k in (POSTGRES_CPU, SERVER_CPU))
    bare_server, bare_clients = (
        _dig(bare, (k, "cpu_ms_per_booking")) for k in (SERVER_CPU, CLIENT_CPU)
    )
    if None in (database, ours, bare_server, bare_clients):
        return None
    rate = b["driver"]["bookings_per_s"] / 4
    budget = cpu["cores"] * 1000 / rate
    stack = bare_server + bare_clients
    return (
        f"{budget:.2f} ms ({cpu['cores']} cores at {rate:.0f}/s); PostgreSQL's work for one of "
        f"this server's bookings {database:.2f} ms + Flask, gunicorn and the clients alone "
        f"(the bare server) {stack:.2f} ms leave {budget - database - stack:.2f} ms for this "
        f"server's own work, which took {ours - bare_server:.2f} ms more than the bare server's"
    )


class _Floor(NamedTuple):
    """One of the booking rate's floors (`booking.measure_booking`): its key in the
    booking report, what it counts (its rate is `{unit}_per_s`), its line among the
    targets and its row in the table."""

    key: str
    unit: str
    label: str
    meaning: str
    row: str  # `{}`: the number of clients


_FLOORS = (
    _Floor(
        "floor",
        "requests",
        "/metadata at the same load vs the driver's rate",
        "no request of this server can go faster",
        "/metadata, {} clients, HTTP (no database)",
    ),
    _Floor(
        "bare",
        "bookings",
        "the driver's statements behind Flask/gunicorn, nothing else",
        "no booking through this stack can go faster",
        "bare server, {} clients, HTTP (the driver's statements only)",
    ),
)


def checks(run: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """(check, found, passed) for one run: what must hold whatever the timings, as
    `--quick` runs it in CI."""
    out: list[tuple[str, str, bool]] = []
    if "week_view" in run:
        slots = run["week_view"]["slots_per_week"]
        out.append(("a week view finds Slots", f"{slots} per week", slots > 0))
    if "page_500" in run:
        p = run["page_500"]
        wanted = min(500, p["total"] or 0)
        found = f"{p['entries']} of {p['total']}"
        out.append(
            (
                "the 500-Slot page search returns its matches, up to 500",
                found,
                wanted > 0 and p["entries"] == wanted,
            )
        )
    if "booking" in run:
        b = run["booking"]
        places = b["sessions"] * b["capacity"]
        loads = [("over HTTP", b["http"]), ("through the driver", b["driver"])]
        if "bare" in b:
            loads.append(("to the bare server", b["bare"]))
        for label, load in loads:
            expected = {"201": places, "409": load["requests"] - places}
            out.append(
                (
                    f"{b['clients']} clients {label}: every place booked, the rest refused 409",
                    f"statuses {load['statuses']}",
                    load["statuses"] == expected,
                )
            )
        sequential = b["sequential"]
        out.append(
            (
                "one client over HTTP: every booking into room is 201",
                f"statuses {sequential['statuses']}",
                sequential["statuses"] == {"201": sequential["requests"]},
            )
        )
        if "floor" in b:
            out.append(
                (
                    f"{b['clients']} clients asking /metadata: every answer is 200",
                    f"statuses {b['floor']['statuses']}",
                    b["floor"]["statuses"] == {"200": b["floor"]["requests"]},
                )
            )
        check = b["check"]
        out.append(
            (
                "0 overbooked sessions, booked counts match the bookings",
                f"{check['overbooked_sessions']} overbooked, "
                f"{check['count_mismatches']} mismatches in {check['sessions_checked']} sessions",
                check["overbooked_sessions"] == 0 and check["count_mismatches"] == 0,
            )
        )
    if "series" in run:
        s = run["series"]
        out.append(
            (
                "$book books every occurrence $find matched with a session",
                f"matched {s['matched_with_slot']}, booked {s['booked']}",
                sum(s["matched_with_slot"]) > 0 and s["booked"] == s["matched_with_slot"],
            )
        )
    return out


def render_checks(report: dict[str, Any]) -> str:
    lines = ["| run | check | found | passed |", "|---|---|---|---|"]
    for run in report["runs"]:
        for name, found, passed in checks(run):
            mark = "yes" if passed else "**NO**"
            lines.append(f"| {run['backend']} x{run['scale']:g} | {name} | {found} | {mark} |")
    return "\n".join(lines)


def flatness(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Week view and booking latency per scale, relative to the smallest scale."""
    rows = []
    by_backend: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        by_backend.setdefault(run["backend"], []).append(run)
    for backend, items in by_backend.items():
        items.sort(key=lambda r: r["scale"])
        base = items[0]
        for run in items:
            row: dict[str, Any] = {"backend": backend, "scale": run["scale"]}
            for key, path in (
                ("week_in_process_p50", ("week_view", "in_process_ms", "p50")),
                ("week_http_p50", ("week_view", "http_ms", "p50")),
                ("booking_sequential_p50", ("booking", "sequential", "booking_ms", "p50")),
                ("booking_16_clients_p95", ("booking", "http", "booking_ms", "p95")),
                ("bookings_per_s", ("booking", "http", "bookings_per_s")),
                ("family_p50", ("patient_search", COMMON_FAMILY, "in_process_ms", "p50")),
            ):
                value, ref = _dig(run, path), _dig(base, path)
                row[key] = value
                if value is not None and ref:
                    row[key + "_x"] = round(value / ref, 2)
            rows.append(row)
    return rows


def _dig(data: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def render(report: dict[str, Any]) -> str:
    lines = []
    m = report["machine"]
    lines.append(
        f"Machine: {m['nproc']} CPUs ({m['cpu']}), {m['ram_gb']} GB RAM, "
        f"Python {m['python']}; server: gunicorn {report['args']['workers']} workers x "
        f"{report['args']['threads']} threads; {report['args']['clients']} clients."
    )
    for run in report["runs"]:
        lines.append("")
        lines.append(
            f"### {run['backend']}, scale {run['scale']:g} "
            f"(built in {run['build_seconds']} s: "
            + ", ".join(
                f"{k} {v:,}"
                for k, v in run["rows"].items()
                if k in ("group_session", "patient", "coverage", "booking")
            )
            + ")"
        )
        lines.append("")
        lines.append("| measurement | p50 ms | p95 ms | notes |")
        lines.append("|---|---:|---:|---|")

        def row(name: str, s: dict[str, Any] | None, note: str = "") -> None:
            if s:
                lines.append(f"| {name} | {s.get('p50', '')} | {s.get('p95', '')} | {note} |")

        if "week_view" in run:
            w = run["week_view"]
            row("week view, in-process", w["in_process_ms"], f"{w['slots_per_week']} Slots")
            row("week view, HTTP", w.get("http_ms"))
            if "metadata_http_ms" in w:
                row(
                    "/metadata, HTTP (same server)",
                    w["metadata_http_ms"],
                    f"week view {w['http_vs_metadata']}x /metadata",
                )
        if "page_500" in run:
            p = run["page_500"]
            parts = p["parts_p50_ms"]
            row(
                "500-Slot page, in-process",
                p["server_ms"],
                f"{p['entries']} of {p['total']}, {p['bytes'] // 1024} KiB; SQL {parts['sql']}, "
                f"rows {parts['query_rows']}, render {parts['render']} (each Slot anew "
                f"{parts['render_uncached']}), bundle "
                f"{parts['bundle']}, dumps {parts['dumps']}; floor (same dicts) "
                f"{parts['floor_same_dicts']}, floor (plain records) "
                f"{parts['floor_plain_records']}; output {p['output_vs_floor']}x floor "
                f"({p['output_uncached_vs_floor']}x rendering each Slot anew), "
                f"{p['output_share_of_server'] * 100:.0f}% of server time",
            )
            row("500-Slot page, HTTP", p.get("http_ms"))
        for name, entry in run.get("patient_search", {}).items():
            plan = entry["plan"]
            note = f"total {entry['total']}, returned {entry['returned']}"
            note += "; plan: " + ("indexes only" if plan["index_only"] else "WHOLE-TABLE SCAN")
            row(f"Patient?{name}, in-process", entry["in_process_ms"], note)
            row(f"Patient?{name}, HTTP", entry.get("http_ms"))
        if "booking" in run:
            b = run["booking"]
            row(
                "booking, in-process (test client)",
                b["in_process"]["booking_ms"],
                f"{b['in_process']['sql_per_booking']} SQL statements per booking",
            )
            row(
                "booking, 1 client, HTTP",
                b["sequential"]["booking_ms"],
                f"{b['sequential']['bookings_per_s']}/s",
            )
            row(
                f"booking, {b['clients']} clients, HTTP",
                b["http"]["booking_ms"],
                f"**{b['http']['bookings_per_s']} bookings/s**, statuses {b['http']['statuses']}, "
                f"{b['check']['overbooked_sessions']} overbooked, "
                f"{b['check']['count_mismatches']} count mismatches",
            )
            row(
                f"driver only, {b['clients']} threads",
                b["driver"]["booking_ms"],
                f"{b['driver']['bookings_per_s']} bookings/s; HTTP = "
                f"{b['ratio_to_driver'] * 100:.0f}% of it",
            )
            for floor in _FLOORS:
                if floor.key in b:
                    rate = b[floor.key][f"{floor.unit}_per_s"]
                    share = rate / max(b["driver"]["bookings_per_s"], 0.001)
                    row(
                        floor.row.format(b["clients"]),
                        b[floor.key]["booking_ms"],
                        f"{rate} {floor.unit}/s = {share:.0%} of the driver's booking rate",
                    )
            lines.append(f"| RSS after load (MB) | | | {b['server_rss_mb_after_load']} |")
            loads = [("HTTP load", b["http"]["cpu"]), ("driver load", b["driver"]["cpu"])]
            if "floor" in b:
                loads.insert(1, ("/metadata load", b["floor"]["cpu"]))
            if "bare" in b:
                loads.insert(-1, ("bare server load", b["bare"]["cpu"]))
            for label, cpu in loads:
                parts = ", ".join(
                    f"{k} {v['cpu_ms_per_booking']} ms"
                    for k, v in cpu.items()
                    if isinstance(v, dict)
                )
                lines.append(
                    f"| CPU per request, {label} | | | {parts}; machine "
                    f"{cpu['machine_busy'] * 100:.0f}% busy |"
                )
        if "series" in run:
            s = run["series"]
            row(
                "$find 52 wk Mon/Wed/Fri",
                s["find_ms"],
                f"SQL {s['find_sql']}, matched {s['matched_with_slot']}, "
                f"first call {s['find_ms_first_call']} ms",
            )
            row("$book", s["book_ms"], f"SQL {s['book_sql']}, booked {s['booked']}")
        lines.append("")
        lines.append("| target | measured | met |")
        lines.append("|---|---|---|")
        for name, measured, met in targets(run):
            mark = "n/a" if met is None else ("yes" if met else "**NO**")
            lines.append(f"| {name} | {measured} | {mark} |")
    if len(report["runs"]) > 1 and report["flatness"]:
        lines.append("")
        lines.append("### Cost as data grows (ratio to the smallest scale)")
        lines.append("")
        lines.append(
            "| backend | scale | week p50 in-proc | week p50 HTTP "
            "| booking p50 (1 client) | booking p95 (16 clients) | bookings/s "
            "| family search p50 in-proc |"
        )
        lines.append("|---|---:|---|---|---|---|---|---|")
        for r in report["flatness"]:

            def cell(key: str, r: dict[str, Any] = r) -> str:
                value = r.get(key)
                if value is None:
                    return "-"
                ratio = r.get(key + "_x")
                return f"{value} ({ratio}x)" if ratio is not None else str(value)

            lines.append(
                f"| {r['backend']} | {r['scale']:g} | {cell('week_in_process_p50')} | "
                f"{cell('week_http_p50')} | {cell('booking_sequential_p50')} | "
                f"{cell('booking_16_clients_p95')} | {cell('bookings_per_s')} | "
                f"{cell('family_p50')} |"
            )
    return "\n".join(lines)
