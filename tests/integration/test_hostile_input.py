"""Hostile input, generated: every search parameter and every writable element of each
resource type gets odd strings (NUL, control characters, lone surrogates, odd Unicode,
values longer than any column), dates at the calendar's limits and numbers.

The same requests go, in the same order, to two servers over the same demo clinic:
one on SQLite, one on PostgreSQL. Every answer must be below 500 and FHIR (an
OperationOutcome for every refusal), a refusal must leave the data as it was, and the
two backends must answer alike (status, issue codes, totals). The budget is small and
the examples fixed (derandomized), so CI sees the same cases every run.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from werkzeug.test import TestResponse

from fhir_facade import create_app
from fhir_facade.registry import RESOURCE_TYPES
from mappings.codes import EXT_GROUP_CAPACITY
from mappings.search import RESULT_PARAMS
from mappings.search_params import SEARCHES
from store.models import AuditRecord, Base
from tests.conftest import TEST_SECRET, empty_database
from tests.demo_snapshot import DemoSnapshots, copy_demo
from tests.validation import assert_valid

SCOPES = "user/*.cruds __schedule.manage __patient.blocked __audit.read"
TODAY = dt.date(2027, 1, 4)

#: Strings no column or FHIR string should take, and some that only look odd.
ODD = [
    "\x00",
    "a\x00b",
    "\x01",
    "\x1f",
    "\x7f",
    "\x85",
    "\u00a0",
    "\u3000",
    "\u2028",
    "\ufeff",
    "\ufffe",
    "\ud800",
    "\udfff",
    "\U0001f600",
    "\ufdfa" * 8,  # NFKD: 18 characters each, so its folded form is longer
    "ß" * 60,
    "²" * 30,  # digits to Python, so part of a phone's digits
    "x" * 101,
    "x" * 201,
    "x" * 5000,
    "9" * 41,
    "",
    " ",
    "\t",
    "a,b",
    "a\\,b",
    "a|b|c",
    "|",
    "%00",
    "Patient/x",
    "../Patient",
]
DATES = [
    "9999-12-31T23:59:59Z",
    "9999-12-31T23:59:59-14:00",
    "9999-12-31T23:00:00+14:00",
    "9999-12-31",
    "9999-12",
    "9999",
    "0001-01-01T00:00:00+14:00",
    "0001-01-01T00:00:00Z",
    "0001-01-01",
    "0001",
    "0000-01-01",
    "10000-01-01",
    "2027-02-30",
    "2027-01-04T10:00:00",
    "2027-01-04T24:00:00Z",
    "2027-01-04T10:00:00.123456789Z",
]
NUMBERS: list[Any] = [-1, 0, 1, 2**31, 2**63, 10**30, 1e308, 0.5, -0.0, True, False, None]
PREFIXES = ["", "eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap"]
MODIFIERS = ["", ":exact", ":contains", ":not", ":missing", ":Patient", ":text"]

odd_text = st.one_of(
    st.sampled_from(ODD),
    st.text(st.characters(codec=None, exclude_categories=()), max_size=12),
    st.builds(lambda a, b: a + b, st.sampled_from(ODD), st.text(max_size=6)),
)
dates = st.builds(lambda p, d: p + d, st.sampled_from(PREFIXES), st.sampled_from(DATES))
many = st.builds(lambda n, v: ",".join([v] * n), st.sampled_from([99, 100, 101, 1500]), odd_text)
search_values = st.one_of(
    odd_text, dates, many, st.sampled_from(NUMBERS).map(lambda n: json.dumps(n))
)
element_values = st.one_of(odd_text, st.sampled_from(DATES), st.sampled_from(NUMBERS))


@dataclass
class Backend:
    name: str
    app: Flask
    client: FlaskClient
    auth: dict[str, str]

    def rows(self) -> dict[str, int]:
        """Rows per table, the audit trail aside (a refused write is audited on purpose)."""
        with self.app.extensions["fhir_facade.db"].reading() as db:
            return {
                table.name: db.scalar(select(func.count()).select_from(table)) or 0
                for table in Base.metadata.sorted_tables
                if table.name != AuditRecord.__tablename__
            }


def _backend(name: str, url: str, folder: Path) -> Backend:
    app = create_app(
        {
            "database_url": url,
            "instance_path": folder / name,
            "jwt_secret": TEST_SECRET,
            "base_url": "http://testserver/fhir",
        }
    )
    app.config["TESTING"] = True
    token = app.extensions["fhir_facade.tokens"].mint("fuzzer", SCOPES, dt.timedelta(hours=1))
    return Backend(name, app, app.test_client(), {"Authorization": f"Bearer {token}"})


@pytest.fixture
def backends(
    request: pytest.FixtureRequest,
    sqlite_template: Path,
    demo_snapshots: DemoSnapshots,
    tmp_path: Path,
) -> Iterator[list[Backend]]:
    """The demo clinic on SQLite and on PostgreSQL (skipped or failed as the suite's
    PostgreSQL runs are, see tests/conftest.py)."""
    postgres = request.getfixturevalue("postgres_url")
    path = tmp_path / "facade.sqlite3"
    shutil.copy(sqlite_template, path)
    copy_demo(demo_snapshots.rows("sqlite", TODAY), f"sqlite:///{path}")
    copy_demo(demo_snapshots.rows("postgresql", TODAY), postgres)
    pair = [_backend("sqlite", f"sqlite:///{path}", tmp_path), _backend("pg", postgres, tmp_path)]
    yield pair
    for backend in pair:
        backend.app.extensions["fhir_facade.db"].dispose()
    empty_database(postgres)


def _answer(backend: Backend, response: TestResponse) -> tuple[Any, ...]:
    """What must match across backends: status, issue codes, or a search's total."""
    assert response.status_code < 500, (backend.name, response.get_data(as_text=True))
    assert response.mimetype == "application/fhir+json", response.get_data(as_text=True)[:300]
    body = response.get_json(force=True)
    assert_valid(body)
    if response.status_code >= 400:
        assert body["resourceType"] == "OperationOutcome", body
        return response.status_code, tuple(i["code"] for i in body["issue"])
    return response.status_code, body.get("total")


def _same_everywhere(backends: list[Backend], send: Any) -> None:
    answers = []
    for backend in backends:
        before = backend.rows()
        response = send(backend)
        answer = _answer(backend, response)
        if response.status_code >= 400:
            assert backend.rows() == before, (backend.name, "a refused request changed data")
        answers.append(answer)
    assert answers[0] == answers[1], answers


def _fuzz_settings(examples: int) -> Any:
    return settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,
        # Shrinking runs only after a failure, to print the smallest failing request.
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )


#: Every search parameter of every type, the result parameters, and chains into Patient.
SEARCH_PARAMS = sorted(
    (resource_type, name)
    for resource_type, spec in SEARCHES.items()
    for name in [
        *spec.params,
        *RESULT_PARAMS,
        *(f"{chain}.{inner}" for chain in spec.chains for inner in SEARCHES["Patient"].params),
    ]
)


@pytest.mark.slow
def test_generated_search_values_get_the_same_fhir_answer_on_both_backends(
    backends: list[Backend],
) -> None:
    @_fuzz_settings(120)
    @given(
        target=st.sampled_from(SEARCH_PARAMS),
        modifier=st.sampled_from(MODIFIERS),
        value=search_values,
        post=st.booleans(),
        repeat=st.sampled_from([1, 1, 1, 2, 51]),
    )
    def search(target: tuple[str, str], modifier: str, value: str, post: bool, repeat: int) -> None:
        resource_type, name = target
        pair = f"{quote(name + modifier)}={quote(value, errors='surrogatepass')}"
        query = "&".join([pair] * repeat)

        def send(backend: Backend) -> TestResponse:
            if post:
                return backend.client.post(
                    f"/fhir/{resource_type}/_search",
                    data=query,
                    content_type="application/x-www-form-urlencoded",
                    headers=backend.auth,
                )
            return backend.client.get(f"/fhir/{resource_type}?{query}", headers=backend.auth)

        _same_everywhere(backends, send)

    search()


def _templates(client: FlaskClient, auth: dict[str, str]) -> dict[str, dict[str, Any]]:
    """A valid body per writable resource type, rich in elements, on the demo clinic."""
    slots = client.get("/fhir/Slot?schedule=sched-rivera-bk&status=free&_count=1", headers=auth)
    session = slots.get_json()["entry"][0]["resource"]
    schedule = client.get("/fhir/Schedule/sched-rivera-bk", headers=auth).get_json()
    department = next(
        a["reference"] for a in schedule["actor"] if a["reference"].startswith("Location/")
    )
    identifier = [{"use": "usual", "system": "urn:example:ids", "value": "id-1"}]
    return {
        "Patient": {
            "resourceType": "Patient",
            "identifier": identifier,
            "name": [{"use": "official", "family": "Okafor", "given": ["Ada", "B"]}],
            "telecom": [{"system": "phone", "value": "555-010-9999", "use": "home"}],
            "gender": "female",
            "birthDate": "1980-02-03",
        },
        "Coverage": {
            "resourceType": "Coverage",
            "status": "active",
            "identifier": identifier,
            "type": {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/coverage-selfpay",
                        "code": "pay",
                    }
                ]
            },
            "subscriberId": "S-1",
            "beneficiary": {"reference": "Patient/pat-003"},
            "payor": [{"reference": "Patient/pat-003"}],
            "period": {"start": "2026-01-01", "end": "2030-12-31"},
            "order": 3,
        },
        "Appointment": {
            "resourceType": "Appointment",
            "status": "booked",
            "identifier": identifier,
            "comment": "first visit",
            "start": session["start"],
            "end": session["end"],
            "slot": [{"reference": f"Slot/{session['id']}"}],
            "participant": [{"actor": {"reference": "Patient/pat-005"}, "status": "accepted"}],
        },
        "Slot": {
            "resourceType": "Slot",
            "extension": [
                {
                    "url": EXT_GROUP_CAPACITY,
                    "extension": [{"url": "capacity", "valueUnsignedInt": 8}],
                }
            ],
            "schedule": {"reference": "Schedule/sched-rivera-bk"},
            "status": "free",
            "start": "2027-03-01T20:00:00Z",
            "end": "2027-03-01T21:00:00Z",
            "comment": "evening group",
        },
        "Schedule": {
            "resourceType": "Schedule",
            "active": True,
            "identifier": identifier,
            "actor": [{"reference": "Practitioner/prac-rivera"}, {"reference": department}],
            "planningHorizon": {"start": "2027-01-01T00:00:00Z", "end": "2027-12-31T00:00:00Z"},
            "comment": "evenings",
        },
        "Organization": {
            "resourceType": "Organization",
            "identifier": identifier,
            "name": "Harbor Annex",
        },
        "Location": {
            "resourceType": "Location",
            "identifier": identifier,
            "name": "Annex",
            "managingOrganization": {"reference": "Organization/org-harbor"},
        },
        "Practitioner": {
            "resourceType": "Practitioner",
            "identifier": identifier,
            "name": [{"family": "Lee", "given": ["Sam"], "prefix": ["Dr."]}],
        },
    }


def _leaves(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """The path of every primitive in a JSON document: its writable elements."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _leaves(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _leaves(item, (*path, index))
    else:
        yield path


def _replaced(body: Any, path: tuple[Any, ...], value: Any) -> Any:
    copy = json.loads(json.dumps(body))
    target = copy
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return copy


@pytest.mark.slow
def test_generated_element_values_get_the_same_fhir_answer_on_both_backends(
    backends: list[Backend],
) -> None:
    first = backends[0]
    templates = _templates(first.client, first.auth)
    writable = sorted(name for name, spec in RESOURCE_TYPES.items() if spec.create or spec.update)
    assert set(writable) <= set(templates), "every writable type needs a template here"
    targets = [(t, leaf) for t in writable for leaf in _leaves(templates[t])]

    @_fuzz_settings(120)
    @given(
        target=st.sampled_from(targets),
        value=element_values,
        header=st.sampled_from([None, "If-None-Exist", "If-Match", "Prefer"]),
        header_value=odd_text.filter(lambda v: "\n" not in v and "\r" not in v),
    )
    def write(
        target: tuple[str, tuple[Any, ...]], value: Any, header: str | None, header_value: str
    ) -> None:
        resource_type, leaf = target
        data = json.dumps(_replaced(templates[resource_type], leaf, value))

        def send(backend: Backend) -> TestResponse:
            headers = dict(backend.auth)
            if header is not None:
                headers[header] = (
                    f"identifier={header_value}" if header == "If-None-Exist" else header_value
                )
            return backend.client.post(
                f"/fhir/{resource_type}",
                data=data,
                content_type="application/fhir+json",
                headers=headers,
            )

        _same_everywhere(backends, send)

    write()


@pytest.mark.slow
def test_odd_ids_in_the_url_get_the_same_answer_on_both_backends(
    backends: list[Backend],
) -> None:
    for ident in [*ODD, "a" * 65, "é", "9" * 20, "2147483648", "-1"]:
        path = quote(ident, safe="", errors="surrogatepass")
        urls = (
            f"/fhir/Patient/{path}",
            f"/fhir/Slot/{path}",
            f"/fhir/Coverage/{path}/_history",
            f"/fhir/Patient/pat-003/_history/{path}",
        )
        for url in urls:
            _same_everywhere(backends, lambda b, url=url: b.client.get(url, headers=b.auth))
