"""The insurance recorded on every booking (issue 3, point 3; DESIGN §4).

`Appointment.supportingInformation` carries the primary Coverage (or the self-pay one)
first and optionally a secondary. A coverage that is not the patient's, not active, or
whose period does not include the session date is refused with 422 naming it; when the
client sends none, the patient's active coverages of lowest `order` are used (README),
and a patient with no usable coverage is refused. A refusal changes nothing.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from store.models import Booking
from tests.factories import MONDAY, Clinic, make_clinic, make_coverage, make_patient, make_session
from tests.integration.helpers import appointment, fhir, outcome, state
from tests.integration.privacy_helpers import (
    STAFF,
    coverage_body,
    create,
    make_payer,
    send,
    token,
)

DAY = dt.timedelta(days=1)
INFO = "Appointment.supportingInformation"


@dataclass
class Insured:
    clinic: Clinic
    session: str
    later_session: str
    patient: str
    primary: str
    secondary: str
    self_pay: str
    other_patient: str
    others_coverage: str
    cancelled: str
    ended: str
    not_yet: str


def insured(database) -> Insured:
    """A patient with a primary (order 1), a secondary (order 2), self-pay, a cancelled
    plan, one that ended before the session and one that starts after it."""

    def build(db):
        clinic = make_clinic(db)
        payer = make_payer(db, f"payer-{clinic.group_id}")
        session = make_session(db, clinic)
        later = make_session(db, clinic, start=MONDAY + 7 * DAY)
        patient = make_patient(db, self_pay=False).id
        other = make_patient(db, family="Other", self_pay=False).id

        def plan(owner: str, **options: Any) -> str:
            return make_coverage(db, owner, payor_id=payer, **options).id

        return Insured(
            clinic=clinic,
            session=session.id,
            later_session=later.id,
            patient=patient,
            primary=plan(patient, order=1),
            secondary=plan(patient, order=2),
            self_pay=make_coverage(db, patient, self_pay=True).id,
            other_patient=other,
            others_coverage=plan(other, order=1),
            cancelled=plan(patient, order=3, status="cancelled"),
            ended=plan(patient, order=4, period=(MONDAY - 30 * DAY, MONDAY - DAY)),
            not_yet=plan(patient, order=5, period=(MONDAY + DAY, None)),
        )

    return database.write(build)


def booking(session: str, patient: str, *coverages: str) -> dict[str, Any]:
    return appointment(
        session,
        patient,
        supportingInformation=[{"reference": f"Coverage/{c}"} for c in coverages],
    )


def book(client, headers, resource: dict[str, Any]):
    return send(client, "POST", "/fhir/Appointment", resource, headers)


def chosen(resource: dict[str, Any]) -> list[str]:
    return [r["reference"] for r in resource.get("supportingInformation", [])]


def stored_coverages(database, booking_id: str) -> list[str]:
    with database.reading() as db:
        return [c.coverage_id for c in db.get(Booking, booking_id).coverages]


def test_a_booking_keeps_primary_and_secondary_coverage_in_the_order_sent(app, client, database):
    w = insured(database)
    headers = token(app, STAFF)

    made = fhir(book(client, headers, booking(w.session, w.patient, w.primary, w.secondary)), 201)

    assert chosen(made) == [f"Coverage/{w.primary}", f"Coverage/{w.secondary}"]
    read = fhir(client.get(f"/fhir/Appointment/{made['id']}", headers=headers), 200)
    assert chosen(read) == chosen(made)
    assert stored_coverages(database, made["id"]) == [w.primary, w.secondary]
    # The client's order is kept, even against the coverages' own `order`.
    swapped = booking(w.later_session, w.patient, w.secondary, w.primary)
    made = fhir(book(client, headers, swapped), 201)
    assert chosen(made) == [f"Coverage/{w.secondary}", f"Coverage/{w.primary}"]


def test_a_self_pay_booking_carries_the_self_pay_coverage_alone(app, client, database):
    w = insured(database)
    headers = token(app, STAFF)

    made = fhir(book(client, headers, booking(w.session, w.patient, w.self_pay)), 201)

    assert chosen(made) == [f"Coverage/{w.self_pay}"]
    with_secondary = booking(w.later_session, w.patient, w.self_pay, w.secondary)
    before = state(database)
    outcome(book(client, headers, with_secondary), 422, code="business-rule", expression=INFO)
    assert state(database) == before


def test_a_booking_with_a_coverage_made_through_the_api_as_self_pay_is_accepted(
    app, client, database
):
    headers = token(app, STAFF)
    session, patient = database.write(
        lambda db: (make_session(db, make_clinic(db)).id, make_patient(db, self_pay=False).id)
    )
    self_pay = create(
        client, coverage_body(patient, payor=f"Patient/{patient}", self_pay=True), headers
    )

    made = fhir(book(client, headers, booking(session, patient, self_pay["id"])), 201)

    assert chosen(made) == [f"Coverage/{self_pay['id']}"]


def test_an_unusable_coverage_is_refused_with_422_naming_it_and_nothing_changes(
    app, client, database
):
    w = insured(database)
    headers = token(app, STAFF)
    cases = [
        ((w.others_coverage,), f"{INFO}[0]", "not this patient's"),
        ((w.cancelled,), f"{INFO}[0]", "not active"),
        ((w.ended,), f"{INFO}[0]", "does not cover 2027-01-04"),
        ((w.not_yet,), f"{INFO}[0]", "does not cover 2027-01-04"),
        ((w.primary, w.others_coverage), f"{INFO}[1]", "not this patient's"),
        ((w.primary, w.cancelled), f"{INFO}[1]", "not active"),
        ((w.primary, w.secondary, w.self_pay), INFO, "at most a primary and a secondary"),
        ((w.primary, w.primary), INFO, "twice"),
    ]
    before = state(database)
    for coverages, expression, reason in cases:
        response = book(client, headers, booking(w.session, w.patient, *coverages))

        issue = outcome(response, 422, code="business-rule", expression=expression)
        assert reason in issue["details"]["text"], (coverages, issue)
        if expression != INFO:
            named = coverages[int(expression[-2])]
            assert f"Coverage/{named}" in issue["details"]["text"], issue
        assert state(database) == before, coverages


def test_an_unknown_coverage_is_404_naming_where_it_was_given(app, client, database):
    w = insured(database)
    before = state(database)

    response = book(client, token(app, STAFF), booking(w.session, w.patient, w.primary, "nope"))

    outcome(response, 404, code="not-found", expression=f"{INFO}[1]")
    assert state(database) == before


def test_a_coverage_period_is_inclusive_of_its_end_date(app, client, database):
    w = insured(database)
    headers = token(app, STAFF)
    same_day = create(
        client,
        coverage_body(
            w.patient,
            payor=f"Organization/payer-{w.clinic.group_id}",
            period=("2027-01-04", "2027-01-04"),
        ),
        headers,
    )
    day_before = create(
        client,
        coverage_body(
            w.patient,
            payor=f"Organization/payer-{w.clinic.group_id}",
            period=("2026-01-01", "2027-01-03"),
        ),
        headers,
    )

    made = fhir(book(client, headers, booking(w.session, w.patient, same_day["id"])), 201)

    assert chosen(made) == [f"Coverage/{same_day['id']}"]
    refused = book(client, headers, booking(w.later_session, w.patient, same_day["id"]))
    outcome(refused, 422, expression=f"{INFO}[0]")
    refused = book(client, headers, booking(w.later_session, w.patient, day_before["id"]))
    outcome(refused, 422, expression=f"{INFO}[0]")


def test_without_a_choice_the_lowest_order_active_coverages_valid_that_day_are_used(
    app, client, database
):
    w = insured(database)
    headers = token(app, STAFF)

    made = fhir(book(client, headers, appointment(w.session, w.patient)), 201)

    assert chosen(made) == [f"Coverage/{w.primary}", f"Coverage/{w.secondary}"]


def test_without_a_choice_insurance_goes_before_self_pay_and_self_pay_is_used_alone(
    app, client, database
):
    def build(db):
        clinic = make_clinic(db)
        payer = make_payer(db, "payer-solo")
        session = make_session(db, clinic).id
        insured_once = make_patient(db)  # self-pay (no order) ...
        plan = make_coverage(db, insured_once.id, payor_id=payer, order=7).id  # ... and a plan
        only_self = make_patient(db).id  # self-pay only
        return session, insured_once.id, plan, only_self

    session, insured_once, plan, only_self = database.write(build)
    headers = token(app, STAFF)

    with_plan = fhir(book(client, headers, appointment(session, insured_once)), 201)
    self_paid = fhir(book(client, headers, appointment(session, only_self)), 201)

    assert chosen(with_plan) == [f"Coverage/{plan}"]
    (reference,) = chosen(self_paid)
    coverage = fhir(client.get(f"/fhir/{reference}", headers=headers), 200)
    assert coverage["type"]["coding"][0]["code"] == "pay"
    assert coverage["payor"] == [{"reference": f"Patient/{only_self}"}]


def test_a_patient_without_a_usable_coverage_is_refused_when_none_is_chosen(app, client, database):
    def build(db):
        clinic = make_clinic(db)
        session = make_session(db, clinic).id
        patient = make_patient(db, self_pay=False).id
        make_coverage(db, patient, self_pay=True, status="cancelled")
        return session, patient

    session, patient = database.write(build)
    before = state(database)

    response = book(client, token(app, STAFF), appointment(session, patient))

    issue = outcome(response, 422, code="business-rule", expression=INFO)
    assert "no active coverage for 2027-01-04" in issue["details"]["text"]
    assert state(database) == before


def test_a_patient_with_no_coverage_at_all_is_refused_as_uninsured_not_as_unknown(
    app, client, database
):
    session, patient = database.write(
        lambda db: (make_session(db, make_clinic(db)).id, make_patient(db, self_pay=False).id)
    )

    response = book(client, token(app, STAFF), appointment(session, patient))

    outcome(response, 422, code="business-rule", expression=INFO)


def test_updating_a_booking_checks_the_new_coverage_choice_the_same_way(app, client, database):
    w = insured(database)
    headers = token(app, STAFF)
    made = fhir(book(client, headers, booking(w.session, w.patient, w.primary)), 201)
    url = f"/fhir/Appointment/{made['id']}"

    refused = send(
        client,
        "PUT",
        url,
        {**made, "supportingInformation": [{"reference": f"Coverage/{w.cancelled}"}]},
        headers,
    )

    outcome(refused, 422, expression=f"{INFO}[0]")
    assert stored_coverages(database, made["id"]) == [w.primary]
    changed = {**made, "supportingInformation": [{"reference": f"Coverage/{w.self_pay}"}]}
    assert chosen(fhir(send(client, "PUT", url, changed, headers), 200)) == [
        f"Coverage/{w.self_pay}"
    ]
    assert stored_coverages(database, made["id"]) == [w.self_pay]
