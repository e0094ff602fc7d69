"""The same mistake gets the same answer on every path a booking can take: a single
create, an entry of a transaction Bundle, and a kept Appointment of `$book`.

Each path names where the mistake sits in its own request; the status and the
issue code are the same.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from flask.testing import FlaskClient

from store.db import Database
from tests.factories import MONDAY, make_clinic, make_patient, make_session
from tests.integration.helpers import fhir, instant, monday_series_find, post, state

Appointment = dict[str, Any]


def _end_before_start(appointment: Appointment) -> Appointment:
    return {**appointment, "end": instant(MONDAY - dt.timedelta(minutes=1))}


def _unknown_slot(appointment: Appointment) -> Appointment:
    return {**appointment, "slot": [{"reference": "Slot/no-such-session"}]}


MISTAKES: dict[str, tuple[Callable[[Appointment], Appointment], int, str, str]] = {
    "an end before the start": (_end_before_start, 422, "business-rule", "end"),
    "an unknown slot": (_unknown_slot, 404, "not-found", "slot"),
}


@pytest.mark.parametrize(
    ("mistake", "status", "code", "element"), MISTAKES.values(), ids=MISTAKES.keys()
)
def test_a_mistake_gets_the_same_status_and_code_alone_in_a_bundle_and_in_book(
    client: FlaskClient,
    mint: Callable[..., dict[str, str]],
    database: Database,
    mistake: Callable[[Appointment], Appointment],
    status: int,
    code: str,
    element: str,
) -> None:
    def build(db: Any) -> tuple[str, str]:
        clinic = make_clinic(db)
        make_session(db, clinic)  # Monday 2027-01-04 10:00 New York
        return clinic.provider_id, make_patient(db).id

    provider, patient = database.write(build)
    headers = mint()
    find = monday_series_find(patient, provider, "2027-01-04", 1)
    preview = fhir(post(client, "/fhir/Appointment/$find", find, headers), 200)
    (proposal,) = [e["resource"] for e in preview["entry"] if e["search"]["mode"] == "match"]
    wrong = mistake(proposal)
    before = state(database)

    alone = fhir(post(client, "/fhir/Appointment", _new(wrong), headers), status)
    transaction = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"resource": _new(wrong), "request": {"method": "POST", "url": "Appointment"}}],
    }
    in_bundle = fhir(post(client, "/fhir", transaction, headers), status)
    kept = {
        "resourceType": "Parameters",
        "parameter": [{"name": "appointment-resource", "resource": wrong}],
    }
    in_book = fhir(post(client, "/fhir/Appointment/$book", kept, headers), status)

    answers = {"alone": alone, "bundle": in_bundle, "$book": in_book}
    assert {path: _only_issue(a)["code"] for path, a in answers.items()} == dict.fromkeys(
        answers, code
    )
    assert _only_issue(alone)["expression"] == [f"Appointment.{element}"]
    assert _only_issue(in_bundle)["expression"] == [f"Bundle.entry[0].resource.{element}"]
    assert _only_issue(in_book)["expression"][0].endswith(f".{element}")
    assert state(database) == before


def _new(proposal: Appointment) -> Appointment:
    """A $find proposal as a plain create: booked, without the series' extensions."""
    plain = {k: v for k, v in proposal.items() if k not in ("id", "meta", "extension")}
    return {**plain, "status": "booked"}


def _only_issue(outcome: dict[str, Any]) -> dict[str, Any]:
    assert outcome["resourceType"] == "OperationOutcome", outcome
    (issue,) = outcome["issue"]
    return issue
