"""A synthetic clinic network, written straight into the tables in bulk.

Scale 1: 50 providers, each with one schedule holding 15 group sessions a week
(Mon-Fri at 10:00, 13:00 and 16:00 in the department's zone) for 104 weeks
(78,000 Slots); 100,000 patients with an MRN, a phone and folded names (5,000 of
them with a keyed SSN hash); 150,000 coverages; about 250,000 bookings with their
provider and coverage rows. Every size multiplies by the scale.

Rows are written with PostgreSQL COPY (psycopg) or one SQLite executemany per
chunk, bypassing the ORM, so the invariants the store keeps are kept here by
construction:
  * group_session.booked == number of bookings holding a place in it;
  * booked <= capacity;
  * at most one active booking per patient per session (patients drawn without
    replacement per session).
"""

from __future__ import annotations

import datetime as dt
import random
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from store.models import HOLDS_PLACE
from store.ssn import SSN_SYSTEM, SsnHasher
from store.text import fold, phone_digits

MRN_SYSTEM = "http://fhir-facade.org/fhir/sid/mrn"
SELF_PAY_SYSTEM = "http://terminology.hl7.org/CodeSystem/coverage-selfpay"
ZONES = ("America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles")
LOCAL_TIMES = (dt.time(10, 0), dt.time(13, 0), dt.time(16, 0))
WEEKS = 104
WEEKS_BEFORE_NOW = 51  # the calendar runs from 51 weeks ago to 53 weeks ahead
SESSION_MINUTES = 90
CAPACITY = 10
CHUNK = 20_000
SERIES_PATIENTS = 12  # each books a series ($find, then $book): the first is a warm-up

# Common surnames (accents included, so folding matters) get most of the weight;
# a long tail of syllable-made names gets the rest.
COMMON_FAMILIES = (
    "García",
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Rodríguez",
    "Miller",
    "Davis",
    "Martínez",
    "Hernández",
    "López",
    "González",
    "Wilson",
    "Anderson",
    "Thomas",
    "Taylor",
    "Moore",
    "Jackson",
    "Martin",
    "Lee",
    "Pérez",
    "Thompson",
    "White",
    "Harris",
    "Sánchez",
    "Clark",
    "Ramírez",
    "Lewis",
    "Robinson",
    "Walker",
    "Young",
    "Allen",
    "King",
    "Wright",
    "Scott",
    "Torres",
    "Nguyễn",
    "Hill",
    "Flores",
    "Green",
    "Adams",
    "Nelson",
    "Baker",
    "Hall",
    "Rivera",
    "Campbell",
    "Mitchell",
    "Carter",
    "Roberts",
    "Müller",
    "Kowalczyk",
    "O'Brien",
    "Søren",
    "Chen",
    "Wang",
    "Kim",
    "Patel",
    "Cohen",
    "Novák",
)
_HEADS = (
    "Ab",
    "Bar",
    "Cal",
    "Dor",
    "El",
    "Fen",
    "Gar",
    "Hol",
    "Ist",
    "Jor",
    "Kel",
    "Lam",
    "Mor",
    "Nor",
    "Ols",
    "Pen",
    "Quin",
    "Ros",
    "Sal",
    "Tor",
    "Ulm",
    "Var",
    "Wes",
    "Yor",
    "Zel",
    "Brad",
    "Crom",
    "Dray",
    "Esk",
    "Fair",
    "Grim",
    "Hart",
    "Ives",
    "Kirk",
    "Lind",
    "Mar",
)
_TAILS = (
    "ley",
    "ton",
    "son",
    "berg",
    "wick",
    "ford",
    "man",
    "ner",
    "ski",
    "ova",
    "ez",
    "ini",
    "ard",
    "ell",
    "ham",
    "ing",
    "ley",
    "more",
    "rick",
    "stead",
    "well",
    "worth",
    "ino",
    "ek",
    "gaard",
    "holm",
    "lund",
    "quist",
    "ström",
    "dóttir",
    "escu",
    "opoulos",
    "idis",
    "enko",
)
GIVENS = (
    "Maria",
    "José",
    "James",
    "Mary",
    "Robert",
    "Patricia",
    "John",
    "Jennifer",
    "Michael",
    "Linda",
    "David",
    "Elizabeth",
    "William",
    "Barbara",
    "Richard",
    "Susan",
    "Joseph",
    "Jessica",
    "Thomas",
    "Sarah",
    "Zoë",
    "Chloé",
    "Ana",
    "Luis",
    "Wei",
    "Mei",
    "Aarav",
    "Priya",
    "Noah",
    "Emma",
    "Liam",
    "Olivia",
    "Mateo",
    "Sofía",
    "Elijah",
    "Amara",
    "Björn",
    "Ingrid",
    "Omar",
)


@dataclass
class ClinicShape:
    """What was built: ids the measurements need, and row counts."""

    scale: float
    week0: dt.datetime  # Monday 00:00 UTC of the first week
    this_monday: dt.date  # Monday of the current week (local date)
    providers: list[str] = field(default_factory=list)
    schedules: list[str] = field(default_factory=list)
    schedule_zone: dict[str, str] = field(default_factory=dict)
    schedule_department: dict[str, str] = field(default_factory=dict)
    patients: int = 0
    ssn_patients: list[tuple[str, str]] = field(default_factory=list)  # (patient id, digits)
    series_patients: list[str] = field(default_factory=list)
    unrestricted: list[int] = field(default_factory=list)  # patient numbers
    counts: dict[str, int] = field(default_factory=dict)
    build_seconds: float = 0.0


def patient_id(n: int) -> str:
    return f"pat-{n:08d}"


def phone_of(n: int) -> str:
    number = 2_000_000 + n  # 555-2000000 onward: unique per patient
    return f"(555) {number // 10_000:03d}-{number % 10_000:04d}"


def ssn_of(n: int) -> str:
    return f"{100 + n % 700:03d}{10 + n % 89:02d}{n % 10_000:04d}"


def _families() -> list[str]:
    return [h + t for h in _HEADS for t in _TAILS]


# -- writers -------------------------------------------------------------------


def _quoted(columns: Sequence[str]) -> str:
    return ", ".join(f'"{c}"' for c in columns)


class Writer:
    """Bulk-writes tuples into a table, by COPY (PostgreSQL) or executemany (SQLite)."""

    def write(self, table: str, columns: Sequence[str], rows: Iterable[tuple[Any, ...]]) -> int:
        raise NotImplementedError

    def finish(self) -> None:
        raise NotImplementedError


class PostgresWriter(Writer):
    def __init__(self, conninfo: str) -> None:
        import psycopg

        self.conn = psycopg.connect(conninfo)
        with self.conn.cursor() as cur:
            cur.execute("SET synchronous_commit = off")

    def write(self, table: str, columns: Sequence[str], rows: Iterable[tuple[Any, ...]]) -> int:
        n = 0
        with self.conn.cursor() as cur:
            statement = f"COPY {table} ({_quoted(columns)}) FROM STDIN"
            with cur.copy(statement) as copy:
                for row in rows:
                    copy.write_row(row)
                    n += 1
        self.conn.commit()
        return n

    def finish(self) -> None:
        self.conn.autocommit = True
        with self.conn.cursor() as cur:
            cur.execute("VACUUM ANALYZE")
            # Flush the bulk load's WAL now, not during the measurements.
            cur.execute("CHECKPOINT")
        self.conn.close()


def _sqlite_value(value: Any) -> Any:
    # The text forms SQLAlchemy's SQLite dialect reads and compares against.
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, bool):
        return int(value)
    return value


class SqliteWriter(Writer):
    def __init__(self, path: str) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=OFF")
        self.conn.execute("PRAGMA cache_size=-200000")

    def write(self, table: str, columns: Sequence[str], rows: Iterable[tuple[Any, ...]]) -> int:
        statement = (
            f"INSERT INTO {table} ({_quoted(columns)}) VALUES ({', '.join('?' for _ in columns)})"
        )
        n = 0
        for chunk in _chunks(rows, CHUNK):
            self.conn.execute("BEGIN")
            self.conn.executemany(statement, [tuple(map(_sqlite_value, r)) for r in chunk])
            self.conn.execute("COMMIT")
            n += len(chunk)
        return n

    def finish(self) -> None:
        self.conn.execute("ANALYZE")
        self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self.conn.close()


def _chunks(rows: Iterable[tuple[Any, ...]], size: int) -> Iterator[list[tuple[Any, ...]]]:
    chunk: list[tuple[Any, ...]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


# -- the network ----------------------------------------------------------------


def build(writer: Writer, scale: float, hasher: SsnHasher, seed: int = 6) -> ClinicShape:
    started = time.perf_counter()
    rng = random.Random(seed)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0, tzinfo=None)
    today = now.date()
    this_monday = today - dt.timedelta(days=today.weekday())
    first_monday = this_monday - dt.timedelta(weeks=WEEKS_BEFORE_NOW)
    shape = ClinicShape(
        scale=scale,
        week0=dt.datetime.combine(first_monday, dt.time(0), dt.UTC),
        this_monday=this_monday,
    )
    counts = shape.counts
    n_providers = max(1, round(50 * scale))
    n_departments = max(1, round(10 * scale))
    n_patients = max(100, round(100_000 * scale))

    groups = [
        (f"org-clinic-{g}", f"Harbor Behavioral Health {g}", "provider-group") for g in range(5)
    ]
    payers = [(f"org-payer-{p}", f"Payer {p} Health Plan", "payer") for p in range(8)]
    counts["provider_group"] = writer.write(
        "provider_group",
        ("id", "name", "kind", "identifier_system", "identifier_value", "version", "last_updated"),
        ((i, n, k, None, None, 1, now) for i, n, k in groups + payers),
    )
    departments = [
        (f"dept-{d:04d}", f"Department {d}", ZONES[d % len(ZONES)], groups[d % 5][0])
        for d in range(n_departments)
    ]
    counts["department"] = writer.write(
        "department",
        ("id", "name", "timezone", "provider_group_id", "version", "last_updated"),
        ((i, n, z, g, 1, now) for i, n, z, g in departments),
    )
    families = _families()
    counts["provider"] = writer.write(
        "provider",
        (
            "id",
            "family",
            "given",
            "prefix",
            "identifier_system",
            "identifier_value",
            "version",
            "last_updated",
        ),
        (
            (
                f"prac-{p:05d}",
                families[p % len(families)],
                GIVENS[p % len(GIVENS)],
                "Dr.",
                "http://hl7.org/fhir/sid/us-npi",
                f"1{p:09d}",
                1,
                now,
            )
            for p in range(n_providers)
        ),
    )
    for p in range(n_providers):
        sched = f"sched-{p:05d}"
        dept = departments[p % n_departments]
        shape.providers.append(f"prac-{p:05d}")
        shape.schedules.append(sched)
        shape.schedule_zone[sched] = dept[2]
        shape.schedule_department[sched] = dept[0]
    counts["provider_schedule"] = writer.write(
        "provider_schedule",
        ("id", "provider_id", "department_id", "name", "active", "version", "last_updated"),
        (
            (s, shape.providers[i], shape.schedule_department[s], f"Groups {i}", True, 1, now)
            for i, s in enumerate(shape.schedules)
        ),
    )

    # Patients, their identifiers and phones.
    restricted = set(rng.sample(range(n_patients), n_patients // 100))
    family_of = []
    for _ in range(n_patients):
        if rng.random() < 0.3:  # each common name about 0.5% of patients, like Garcia in the US
            family_of.append(COMMON_FAMILIES[rng.randrange(len(COMMON_FAMILIES))])
        else:
            family_of.append(families[rng.randrange(len(families))])
    # A few extra patients with no bookings, for $find/$book.

    def patients() -> Iterator[tuple[Any, ...]]:
        for n in range(n_patients + SERIES_PATIENTS):
            family = family_of[n] if n < n_patients else "Series"
            given = GIVENS[n % len(GIVENS)]
            yield (
                patient_id(n),
                family,
                given,
                fold(family),
                fold(given),
                dt.date(1940, 1, 1) + dt.timedelta(days=(n * 7919) % 25_000),
                ("female", "male", "other")[n % 3],
                n in restricted,
                None,
                1,
                now,
            )

    counts["patient"] = writer.write(
        "patient",
        (
            "id",
            "family",
            "given",
            "family_folded",
            "given_folded",
            "birth_date",
            "gender",
            "restricted",
            "document",
            "version",
            "last_updated",
        ),
        patients(),
    )
    shape.patients = n_patients
    shape.unrestricted = [n for n in range(n_patients) if n not in restricted]
    shape.series_patients = [patient_id(n) for n in range(n_patients, n_patients + SERIES_PATIENTS)]
    ssn_every = 20  # 5,000 per 100,000 patients carry an SSN
    shape.ssn_patients = [
        (patient_id(n), ssn_of(n)) for n in range(0, n_patients, ssn_every) if n not in restricted
    ]

    def identifiers() -> Iterator[tuple[Any, ...]]:
        for n in range(n_patients + SERIES_PATIENTS):
            yield (patient_id(n), 0, MRN_SYSTEM, f"MRN{n:08d}", "MR", None)
            if n % ssn_every == 0 and n < n_patients:
                digits = ssn_of(n)
                yield (patient_id(n), 1, SSN_SYSTEM, hasher.digest(digits), "SS", digits[-4:])

    counts["patient_identifier"] = writer.write(
        "patient_identifier",
        ("patient_id", "position", "system", "value", "kind", "last4"),
        identifiers(),
    )
    counts["patient_phone"] = writer.write(
        "patient_phone",
        ("patient_id", "position", "value", "digits", "use"),
        (
            (patient_id(n), 0, phone_of(n), phone_digits(phone_of(n)), "mobile")
            for n in range(n_patients + SERIES_PATIENTS)
        ),
    )

    # Coverages: everyone has a primary (10% self-pay), half also a secondary.
    period_start = now - dt.timedelta(days=3 * 365)

    def coverages() -> Iterator[tuple[Any, ...]]:
        for n in range(n_patients + SERIES_PATIENTS):
            pid = patient_id(n)
            if n % 10 == 3 or n >= n_patients:
                yield (
                    f"cov-{n:08d}-a",
                    pid,
                    None,
                    None,
                    "patient",
                    pid,
                    "active",
                    SELF_PAY_SYSTEM,
                    "pay",
                    True,
                    None,
                    period_start,
                    None,
                    None,
                    1,
                    now,
                )
            else:
                yield (
                    f"cov-{n:08d}-a",
                    pid,
                    pid,
                    f"M{n:09d}",
                    "organization",
                    payers[n % len(payers)][0],
                    "active",
                    None,
                    None,
                    False,
                    1,
                    period_start,
                    None,
                    None,
                    1,
                    now,
                )
                if n % 2 == 0:
                    yield (
                        f"cov-{n:08d}-b",
                        pid,
                        pid,
                        f"S{n:09d}",
                        "organization",
                        payers[(n + 3) % len(payers)][0],
                        "active",
                        None,
                        None,
                        False,
                        2,
                        period_start,
                        None,
                        None,
                        1,
                        now,
                    )

    counts["coverage"] = writer.write(
        "coverage",
        (
            "id",
            "beneficiary_id",
            "subscriber_patient_id",
            "subscriber_id",
            "payor_kind",
            "payor_id",
            "status",
            "type_system",
            "type_code",
            "self_pay",
            "rank",
            "period_start",
            "period_end",
            "document",
            "version",
            "last_updated",
        ),
        coverages(),
    )

    # Sessions and their bookings. Places filled with p = 0.33 (about 3.2 of 10 on
    # average), 4% of the bookings cancelled (kept, not counted).
    utc_cache: dict[tuple[str, dt.date, dt.time], dt.datetime] = {}

    def utc(zone: str, day: dt.date, at: dt.time) -> dt.datetime:
        key = (zone, day, at)
        if key not in utc_cache:
            local = dt.datetime.combine(day, at, ZoneInfo(zone))
            utc_cache[key] = local.astimezone(dt.UTC).replace(tzinfo=None)
        return utc_cache[key]

    session_rows: list[tuple[Any, ...]] = []
    booking_rows: list[tuple[Any, ...]] = []
    booking_provider_rows: list[tuple[Any, ...]] = []
    booking_coverage_rows: list[tuple[Any, ...]] = []
    booking_counter = 0
    fill = 0.33
    status_past = ("fulfilled",) * 18 + ("noshow",)

    def flush_sessions() -> None:
        counts["group_session"] = counts.get("group_session", 0) + writer.write(
            "group_session",
            (
                "id",
                "schedule_id",
                "start_at",
                "end_at",
                "capacity",
                "booked",
                "appointment_type",
                "service_type",
                "closed",
                "blocked",
                "comment",
                "version",
                "last_updated",
            ),
            session_rows,
        )
        counts["booking"] = counts.get("booking", 0) + writer.write(
            "booking",
            (
                "id",
                "session_id",
                "patient_id",
                "status",
                "start_at",
                "end_at",
                "appointment_type",
                "department_id",
                "comment",
                "cancellation_reason",
                "created",
                "version",
                "last_updated",
            ),
            booking_rows,
        )
        counts["booking_provider"] = counts.get("booking_provider", 0) + writer.write(
            "booking_provider", ("booking_id", "provider_id", "position"), booking_provider_rows
        )
        counts["booking_coverage"] = counts.get("booking_coverage", 0) + writer.write(
            "booking_coverage", ("booking_id", "coverage_id", "rank"), booking_coverage_rows
        )
        for rows in (session_rows, booking_rows, booking_provider_rows, booking_coverage_rows):
            rows.clear()

    for index, sched in enumerate(shape.schedules):
        zone = shape.schedule_zone[sched]
        dept = shape.schedule_department[sched]
        provider = shape.providers[index]
        for week in range(WEEKS):
            monday = first_monday + dt.timedelta(weeks=week)
            for weekday in range(5):
                day = monday + dt.timedelta(days=weekday)
                for at in LOCAL_TIMES:
                    start = utc(zone, day, at)
                    end = start + dt.timedelta(minutes=SESSION_MINUTES)
                    sid = f"s{index:05d}-{day:%Y%m%d}-{at:%H%M}"
                    taking = sum(1 for _ in range(CAPACITY) if rng.random() < fill)
                    past = start < now
                    booked = 0
                    for patient in rng.sample(range(n_patients), taking):
                        booking_counter += 1
                        bid = f"bk-{booking_counter:09d}"
                        if rng.random() < 0.04:
                            status = "cancelled"
                        else:
                            status = rng.choice(status_past) if past else "booked"
                            booked += 1
                        assert (status in HOLDS_PLACE) == (status != "cancelled")
                        created = start - dt.timedelta(days=14)
                        booking_rows.append(
                            (
                                bid,
                                sid,
                                patient_id(patient),
                                status,
                                start,
                                end,
                                "group-therapy",
                                dept,
                                None,
                                "patient request" if status == "cancelled" else None,
                                created,
                                1,
                                created,
                            )
                        )
                        booking_provider_rows.append((bid, provider, 0))
                        booking_coverage_rows.append((bid, f"cov-{patient:08d}-a", 1))
                    session_rows.append(
                        (
                            sid,
                            sched,
                            start,
                            end,
                            CAPACITY,
                            booked,
                            "group-therapy",
                            "behavioral-health-group",
                            False,
                            False,
                            None,
                            1,
                            now,
                        )
                    )
        if len(booking_rows) > 200_000:
            flush_sessions()
    flush_sessions()
    writer.finish()
    shape.build_seconds = time.perf_counter() - started
    return shape
