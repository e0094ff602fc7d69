"""Blocked (restricted) patients do not exist for a caller without `__patient.blocked`
(DESIGN §7).

The world and the walk are in `leak_walk`: a restricted patient R with every kind of
record, walked as a user with `user/*.cruds` but without the permission. Each probe
below is one request; for every answer (status, body, every header), a request naming
none of R's secrets shows none, and one naming a secret answers exactly as the same
request naming a nonexistent value of the same length. The probe catalogues are the
list of paths walked. With the permission, R is found, labelled and booked.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import pytest
from sqlalchemy import select

from mappings.search_params import SEARCHES
from store.models import AuditRecord, Booking
from tests.factories import (
    MONDAY,
    MRN,
    Clinic,
    make_coverage,
    make_patient,
    make_session,
)
from tests.integration.helpers import (
    BOOKING_ID_SYSTEM,
    appointment,
    capacity_of,
    entries,
    fhir,
    ids,
    state,
)
from tests.integration.leak_walk import (
    FAMILY,
    FAMILY_MEMBER,
    GIVEN,
    PAYER,
    R_BOOKING,
    R_MEMBER,
    R_MRN,
    R_PHONE,
    R_SSN,
    TIMING,
    Probe,
    Secrets,
    Walk,
    World,
    book_parameters,
    build_world,
    get,
    post,
    proposal_for,
    put,
    search_form,
    set_restriction,
)
from tests.integration.privacy_helpers import (
    ACT_CODE,
    MEMBER,
    PLAIN_AUDITOR,
    PRIVACY_OFFICER,
    RESTRICTED,
    SELF_PAY,
    SSN,
    STAFF,
    coverage_body,
    create,
    patient_body,
    send,
    token,
)

# -- the walk ------------------------------------------------------------------------------


def read_probes(w: World) -> list[Probe]:
    """Every read, search, include, revinclude, chain and read-only operation."""
    R, V = w.restricted, w.visible
    prac, dept, sched = w.clinic.provider_id, w.clinic.department_id, w.clinic.schedule_id
    v_only, none = (V,), ()
    mrn, ssn = f"{MRN}|{R_MRN}", f"{SSN}|{R_SSN}"
    patient_queries: list[tuple[tuple[str, str], ...]] = [
        (("_id", R),),
        (("_id", f"{R},{V}"),),
        (("family", "zzy"),),
        (("family", FAMILY),),
        (("family:exact", FAMILY),),
        (("family:contains", "yzx"),),
        (("given", "quil"),),
        (("given", GIVEN),),
        (("given:exact", GIVEN),),
        (("name", "zz"),),
        (("name", GIVEN),),
        (("name:contains", "uillo"),),
        (("identifier", mrn),),
        (("identifier", R_MRN),),
        (("identifier", ssn),),
        (("identifier", f"{SSN}|512447391"),),
        (("identifier", f"{SSN}|***-**-7391"),),
        (("phone", R_PHONE),),
        (("phone", "555.019.7733"),),
        (("phone", "+1 555 019 7733"),),
        (("phone", "5550197733"),),
        (("telecom", "phone|555.019.7733"),),
        (("telecom", R_PHONE),),
        (("family", "zzy"), ("given", "quil")),
    ]
    probes = [get("/fhir/Patient", expect_ids=v_only)]
    probes += [
        get("/fhir/Patient", *q, expect_ids=(V,) if q[0][1].endswith(V) else none)
        for q in patient_queries
    ]
    probes += [
        search_form("/fhir/Patient/_search", *q, expect_ids=none)
        for q in patient_queries
        if q[0][0] != "_id"
    ]
    probes += [
        get("/fhir/Patient", ("birthdate", "1980-05-17"), expect_ids=v_only),
        get("/fhir/Patient", ("birthdate", "ge1900"), ("gender", "female"), expect_ids=v_only),
        get("/fhir/Patient", ("gender", "female"), ("_sort", "-family"), expect_ids=v_only),
        get("/fhir/Patient", ("_lastUpdated", "ge2000-01-01"), expect_ids=v_only),
        get(
            "/fhir/Patient",
            ("_lastUpdated", "ge2000"),
            ("_sort", "-_lastUpdated"),
            expect_ids=v_only,
        ),
        get(f"/fhir/Patient/{R}", status=404),
        get(f"/fhir/Patient/{R}/_history", status=404),
        get(f"/fhir/Patient/{R}/_history/1", status=404),
    ]

    appointments = [
        (("_id", w.restricted_appointment), none),
        (("patient", f"Patient/{R}"), none),
        (("patient", R), none),
        (("patient:Patient", R), none),
        (("actor", f"Patient/{R}"), none),
        (("actor", R), none),
        (("actor", f"Practitioner/{prac}"), (w.visible_appointment,)),
        (("actor", f"Location/{dept}"), (w.visible_appointment,)),
        (("practitioner", f"Practitioner/{prac}"), (w.visible_appointment,)),
        (("location", f"Location/{dept}"), (w.visible_appointment,)),
        (("date", "2027-01-04"), (w.visible_appointment,)),
        (("date", "ge2027-01-01"), (w.visible_appointment,)),
        (("status", "booked"), (w.visible_appointment,)),
        (("status:not", "cancelled"), (w.visible_appointment,)),
        (("slot", f"Slot/{w.session}"), (w.visible_appointment,)),
        (("appointment-type", "group-therapy"), (w.visible_appointment,)),
        (("identifier", f"{BOOKING_ID_SYSTEM}|{R_BOOKING}"), none),
        (("identifier", R_BOOKING), none),
        (("patient.family", "zzy"), none),
        (("patient.family", FAMILY), none),
        (("patient.given", GIVEN), none),
        (("patient.name", "quil"), none),
        (("patient.identifier", mrn), none),
        (("patient.identifier", ssn), none),
        (("patient.phone", "555.019.7733"), none),
        (("patient.telecom", R_PHONE), none),
        (("patient.birthdate", "1980-05-17"), (w.visible_appointment,)),
        (("patient.gender", "female"), (w.visible_appointment,)),
        (("patient._id", R), none),
        (("_lastUpdated", "ge2000-01-01"), (w.visible_appointment,)),
        (("patient._lastUpdated", "ge2000-01-01"), (w.visible_appointment,)),
    ]
    probes += [get("/fhir/Appointment", expect_ids=(w.visible_appointment,))]
    probes += [get("/fhir/Appointment", q, expect_ids=ids) for q, ids in appointments]
    probes += [
        get(
            "/fhir/Appointment",
            ("slot", f"Slot/{w.session}"),
            ("_include", include),
            expect_ids=(w.visible_appointment,),
        )
        for include in (
            "Appointment:patient",
            "Appointment:slot",
            "Appointment:practitioner",
            "Appointment:location",
        )
    ]
    probes += [get(f"/fhir/Appointment/{w.restricted_appointment}", status=404)]

    probes += [
        get(f"/fhir/Slot/{w.session}"),
        get("/fhir/Slot", ("_id", w.session), ("_revinclude", "Appointment:slot")),
        get(
            "/fhir/Slot",
            ("schedule", f"Schedule/{sched}"),
            ("_include", "Slot:schedule"),
            ("_revinclude", "Appointment:slot"),
        ),
        get("/fhir/Slot", ("start", "2027-01-04"), ("_revinclude", "Appointment:slot")),
        get("/fhir/Slot", ("status", "free"), ("_revinclude", "Appointment:slot")),
        get("/fhir/Schedule", ("_id", sched), ("_revinclude", "Slot:schedule")),
    ]

    v_coverages = (w.visible_self_pay, w.visible_plan)
    coverages = [
        (("_id", w.restricted_plan), none),
        (("_id", w.family_plan), none),
        (("patient", f"Patient/{R}"), none),
        (("patient", R), none),
        (("patient", f"Patient/{V}"), v_coverages),
        (("beneficiary", f"Patient/{R}"), none),
        (("beneficiary", V), v_coverages),
        (("subscriber", f"Patient/{R}"), none),
        (("payor", f"Patient/{R}"), none),
        (("payor", R), none),
        (("payor", f"Organization/{PAYER}"), (w.visible_plan,)),
        (("status", "active"), v_coverages),
        (("status:not", "cancelled"), v_coverages),
        (("type", f"{SELF_PAY}|pay"), (w.visible_self_pay,)),
        (("type", f"{ACT_CODE}|EHCPOL"), (w.visible_plan,)),
        (("identifier", f"{MEMBER}|{R_MEMBER}"), none),
        (("identifier", R_MEMBER), none),
        (("identifier", FAMILY_MEMBER), none),
        (("patient.family", FAMILY), none),
        (("patient.phone", "5550197733"), none),
        (("beneficiary.identifier", mrn), none),
        (("beneficiary.name", "zzy"), none),
        (("subscriber.family", "zzy"), none),
        (("subscriber.given", GIVEN), none),
        (("subscriber._id", R), none),
        (("patient._id", R), none),
        (("_lastUpdated", "ge2000-01-01"), v_coverages),
        (("beneficiary._lastUpdated", "ge2000-01-01"), v_coverages),
    ]
    probes += [get("/fhir/Coverage", expect_ids=v_coverages)]
    probes += [get("/fhir/Coverage", q, expect_ids=ids) for q, ids in coverages]
    probes += [
        get(
            "/fhir/Coverage",
            ("payor", f"Organization/{PAYER}"),
            ("_include", "Coverage:payor"),
            expect_ids=(w.visible_plan,),
        ),
        get(
            "/fhir/Coverage",
            ("patient", V),
            ("_include", "Coverage:payor"),
            ("_include", "Coverage:beneficiary"),
            expect_ids=v_coverages,
        ),
        get(
            "/fhir/Coverage",
            ("status", "active"),
            ("_include", "Coverage:payor"),
            ("_include", "Coverage:beneficiary"),
            expect_ids=v_coverages,
        ),
    ]
    probes += [
        get(f"/fhir/Coverage/{c}", status=404)
        for c in (w.restricted_plan, w.restricted_self_pay, w.family_plan)
    ]

    probes += [
        post("/fhir/Appointment/$find", find_parameters(w, R), 404),
        post("/fhir/Appointment/$find", find_parameters(w, V), 200),
    ]
    probes += error_probes(w)
    return probes


def error_probes(w: World) -> list[Probe]:
    R = w.restricted
    return [
        get(f"/fhir/Patient/{R}", status=401, scope=None),
        get(f"/fhir/Patient/{R}", status=403, scope="user/Slot.rs"),
        get("/fhir/Patient", ("family", FAMILY), status=403, scope="user/Slot.rs"),
        Probe("DELETE", f"/fhir/Patient/{R}", status=405),
        Probe("DELETE", f"/fhir/Appointment/{w.restricted_appointment}", status=405),
        get("/fhir/AuditEvent", status=403),
        get("/fhir/AuditEvent", ("patient", f"Patient/{R}"), status=403),
        get(f"/fhir/AuditEvent/{R}", status=403),
        get("/fhir/Patient", ("family", FAMILY), ("birthdate", "soon"), status=400),
        get("/fhir/Patient", ("identifier", R_MRN), ("shoe-size", "42"), status=400),
        get("/fhir/Patient", ("_id", R), ("_sort", "shoe-size"), status=400),
        get("/fhir/Appointment", ("patient", f"Patient/{R}"), ("status", "maybe"), status=400),
        get("/fhir/Appointment", ("patient", f"Group/{R}"), status=400),
        get("/fhir/Appointment", ("patient.family", FAMILY), ("patient.shoe", "1"), status=400),
        get("/fhir/Coverage", ("patient", R), ("_include", "Coverage:subscriber"), status=400),
        get("/fhir/Slot", ("_id", w.session), ("_revinclude", "Appointment:patient"), status=400),
    ]


def find_parameters(w: World, patient: str) -> dict[str, Any]:
    return {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "patient", "valueReference": {"reference": f"Patient/{patient}"}},
            {
                "name": "practitioner",
                "valueReference": {"reference": f"Practitioner/{w.clinic.provider_id}"},
            },
            {"name": "timing", "valueTiming": TIMING},
        ],
    }


def proposal(w: World, patient: str) -> dict[str, Any]:
    """The second occurrence as $find proposes it (into the empty session)."""
    return proposal_for(w.spare_session, w.clinic, patient)


def write_probes(w: World, privileged_view: Callable[[str], dict[str, Any]]) -> list[Probe]:
    """Every write that names R or R's records; each must act as if they did not exist."""
    R, V = w.restricted, w.visible
    r_appointment = privileged_view(f"/fhir/Appointment/{w.restricted_appointment}")
    v_appointment = privileged_view(f"/fhir/Appointment/{w.visible_appointment}")
    r_patient = privileged_view(f"/fhir/Patient/{R}")
    r_plan = privileged_view(f"/fhir/Coverage/{w.restricted_plan}")
    cancelled = {**r_appointment, "status": "cancelled"}
    moved = {
        **v_appointment,
        "participant": [{"actor": {"reference": f"Patient/{R}"}, "status": "accepted"}],
    }
    twin = patient_body("Newcomb", "Nia", mrn=R_MRN)
    acme = f"Organization/{PAYER}"
    return [
        post("/fhir/Patient", twin, 201, headers=(("If-None-Exist", f"identifier={MRN}|{R_MRN}"),)),
        post(
            "/fhir/Patient",
            patient_body("Newcomb", "Nia"),
            201,
            headers=(("If-None-Exist", f"family={FAMILY}&given={GIVEN}"),),
        ),
        post(
            "/fhir/Patient",
            patient_body("Newcomb", "Nia", ssn=R_SSN),
            201,
            headers=(("If-None-Exist", f"identifier={SSN}|{R_SSN}"),),
        ),
        post(
            "/fhir/Coverage",
            coverage_body(V, payor=acme, member=R_MEMBER),
            201,
            headers=(("If-None-Exist", f"identifier={MEMBER}|{R_MEMBER}"),),
        ),
        post("/fhir/Coverage", coverage_body(R, payor=acme), 404),
        post("/fhir/Coverage", coverage_body(V, payor=acme, subscriber=R), 404),
        post("/fhir/Coverage", coverage_body(V, payor=f"Patient/{R}", self_pay=True), 404),
        post("/fhir/Appointment", appointment(w.spare_session, R), 404),
        post("/fhir/Appointment", appointment(w.session, R), 404),
        post(
            "/fhir/Appointment",
            appointment(
                w.spare_session,
                V,
                supportingInformation=[{"reference": f"Coverage/{w.restricted_plan}"}],
            ),
            404,
        ),
        post(
            "/fhir/Appointment",
            appointment(
                w.spare_session,
                V,
                supportingInformation=[
                    {"reference": f"Coverage/{w.visible_plan}"},
                    {"reference": f"Coverage/{w.family_plan}"},
                ],
            ),
            404,
        ),
        put(f"/fhir/Appointment/{w.restricted_appointment}", cancelled, 404),
        put(f"/fhir/Appointment/{w.visible_appointment}", moved, 422),
        put(f"/fhir/Patient/{R}", {**r_patient, "gender": "other"}, 404),
        put(f"/fhir/Patient/{R}", r_patient, 404, headers=(("If-Match", 'W/"7"'),)),
        put(f"/fhir/Patient/{R}", {**r_patient, "id": V}, 400),
        put(f"/fhir/Patient/{R}", {**r_patient, "shoeSize": 42}, 400),
        put(f"/fhir/Coverage/{w.restricted_plan}", {**r_plan, "status": "cancelled"}, 404),
        post("/fhir/Appointment/$book", book_parameters([proposal(w, R)]), 404),
        post("/fhir/Appointment/$book", book_parameters([proposal(w, V)], w.restricted_plan), 404),
        post(
            "/fhir/Appointment/$book",
            book_parameters(
                [{**r_appointment, "slot": [{"reference": f"Slot/{w.spare_session}"}]}]
            ),
            404,
        ),
        post(
            f"/fhir/Appointment/{w.restricted_appointment}/$cancel-series",
            {"resourceType": "Parameters", "parameter": [{"name": "scope", "valueCode": "all"}]},
            404,
        ),
        post("/fhir", _bundle("batch", *_reads_of_r(w)), 200),
        post(
            "/fhir",
            _bundle(
                "batch",
                ("PUT", f"Patient/{R}", {**r_patient, "gender": "other"}),
                ("POST", "Appointment", appointment(w.spare_session, R)),
            ),
            200,
        ),
        post(
            "/fhir", _bundle("transaction", ("POST", "Appointment", appointment(w.session, R))), 404
        ),
        post(
            "/fhir",
            _bundle(
                "transaction",
                ("POST", "Patient", patient_body("Newcomb", "Nia")),
                (
                    "POST",
                    "Appointment",
                    appointment(
                        w.spare_session,
                        V,
                        supportingInformation=[{"reference": f"Coverage/{w.restricted_plan}"}],
                    ),
                ),
            ),
            404,
        ),
    ]


def _reads_of_r(w: World) -> list[tuple[str, str, Any]]:
    """The reads and searches a batch may carry, each naming R or R's records."""
    R = w.restricted
    return [
        ("GET", f"Patient/{R}", None),
        ("GET", f"Patient?family={FAMILY}", None),
        ("GET", f"Patient?identifier={quote(SSN)}|{R_SSN}", None),
        ("GET", f"Appointment/{w.restricted_appointment}", None),
        ("GET", f"Appointment?patient=Patient/{R}", None),
        ("GET", f"Appointment?patient.family={FAMILY}", None),
        ("GET", f"Coverage/{w.restricted_plan}", None),
        ("GET", f"Coverage?subscriber=Patient/{R}", None),
        ("GET", f"Slot?_id={w.session}&_revinclude=Appointment:slot", None),
    ]


def _bundle(kind: str, *entries: tuple[str, str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": kind,
        "entry": [
            {
                **({"resource": resource} if resource is not None else {}),
                **(
                    {"fullUrl": f"urn:uuid:00000000-0000-4000-8000-00000000000{i}"}
                    if method == "POST"
                    else {}
                ),
                "request": {"method": method, "url": url},
            }
            for i, (method, url, resource) in enumerate(entries)
        ],
    }


# -- the tests -----------------------------------------------------------------------------


@pytest.mark.slow
def test_without_the_permission_no_read_or_search_shows_a_trace_of_a_blocked_patient(
    app, client, database
):
    w = build_world(app, client, database)
    walk = Walk(app, client, Secrets.of(w))

    for probe in read_probes(w):
        walk.check(probe)
    paged = walk.follow_pages(get("/fhir/Patient", ("_count", "1")))

    assert paged == [w.visible]
    session = walk.check(get(f"/fhir/Slot/{w.session}"))
    assert capacity_of(session) == "2/10"  # the count carries no identity
    revincluded = walk.check(
        get("/fhir/Slot", ("_id", w.session), ("_revinclude", "Appointment:slot"))
    )
    assert [r["id"] for r in entries(revincluded, "include")] == [w.visible_appointment]
    assert len(walk.walked) > 140


@pytest.mark.slow
def test_without_the_permission_no_write_can_reach_a_blocked_patient(app, client, database):
    w = build_world(app, client, database)
    officer = token(app, PRIVACY_OFFICER, "privacy-officer")

    def privileged_view(path: str) -> dict[str, Any]:
        return fhir(client.get(path, headers=officer), 200)

    r_before = [
        privileged_view(f"/fhir/{path}")
        for path in (
            f"Patient/{w.restricted}",
            f"Appointment/{w.restricted_appointment}",
            f"Coverage/{w.restricted_plan}",
        )
    ]
    before = state(database)
    walk = Walk(app, client, Secrets.of(w))

    for probe in write_probes(w, privileged_view):
        walk.check(probe)

    after = state(database)
    assert after.booked == before.booked
    assert after.appointments == before.appointments
    assert after.versions == before.versions
    assert [privileged_view(f"/fhir/{r['resourceType']}/{r['id']}") for r in r_before] == r_before


def test_booking_with_a_hidden_bookings_identifier_answers_as_an_unused_one_would(
    app, client, database
):
    """R's booking carries R_BOOKING. Booking a visible patient with it, plainly or with
    `If-None-Exist` on it, books (201) exactly as with a value nobody uses: identifiers are
    unique per patient, so a hidden booking's identifier never collides with a visible
    patient's (store.models.BookingIdentifier)."""
    w = build_world(app, client, database)
    walk = Walk(app, client, Secrets.of(w))
    other = database.write(lambda db: make_patient(db, family="Other", given="Otto").id)
    database.write(lambda db: make_coverage(db, other, self_pay=True))
    staff = token(app, STAFF, "front-desk")

    def cancel(answer: dict[str, Any]) -> None:
        """Free the place again, so the same request with the unused value books too."""
        cancelled = {**answer, "status": "cancelled"}
        fhir(send(client, "PUT", f"/fhir/Appointment/{answer['id']}", cancelled, staff), 200)

    retried = post(
        "/fhir/Appointment",
        appointment(w.spare_session, w.visible, identifier=R_BOOKING),
        201,
        headers=(("If-None-Exist", f"identifier={BOOKING_ID_SYSTEM}|{R_BOOKING}"),),
    )
    plain = post(
        "/fhir/Appointment", appointment(w.spare_session, other, identifier=R_BOOKING), 201
    )

    for probe in (retried, plain):
        assert walk.check(probe, undo=cancel)["identifier"][0]["value"] == R_BOOKING
    assert capacity_of(fhir(client.get(f"/fhir/Slot/{w.spare_session}", headers=staff), 200)) == (
        "0/10"
    )


def audit_probes(w: World, r_event: str) -> list[Probe]:
    """The audit trail as an auditor without the privacy permission reads it."""
    R, auditor = w.restricted, PLAIN_AUDITOR
    entities = [f"Patient/{R}", f"Appointment/{w.restricted_appointment}"]
    entities += [f"Appointment/{w.restricted_draft}"] if w.restricted_draft else []
    entities += [f"Coverage/{c}" for c in (w.restricted_plan, w.restricted_self_pay, w.family_plan)]
    return [
        get("/fhir/AuditEvent", ("_count", "1000"), scope=auditor),
        get("/fhir/AuditEvent", ("patient", f"Patient/{R}"), scope=auditor, expect_ids=()),
        *(get("/fhir/AuditEvent", ("entity", e), scope=auditor, expect_ids=()) for e in entities),
        get(f"/fhir/AuditEvent/{r_event}", scope=auditor, status=404),
    ]


@pytest.mark.slow
def test_a_patient_restricted_after_their_records_exist_vanishes_and_returns_when_lifted(
    app, client, database
):
    """Everything derived from R (appointment, draft, coverages, the family plan R
    subscribes to, booking identifier, AuditEvents) follows R's *current* restriction,
    both ways: hidden everywhere once R is restricted, shown again once it is lifted."""
    w = build_world(app, client, database, restrict_later=True)
    with database.reading() as db:
        r_event = db.scalar(
            select(AuditRecord.id).where(AuditRecord.entity_id == w.family_plan).limit(1)
        )
    walk = Walk(app, client, Secrets.of(w))

    for probe in read_probes(w) + audit_probes(w, r_event):
        walk.check(probe)
    walk.check(get(f"/fhir/Appointment/{w.restricted_draft}", status=404))
    walk.check(get("/fhir/Appointment", ("status", "proposed"), expect_ids=()))
    histories = [
        f"Appointment/{w.restricted_appointment}",
        f"Appointment/{w.restricted_draft}",
        f"Coverage/{w.family_plan}",
    ]
    for path in histories:
        walk.check(get(f"/fhir/{path}/_history", status=404))
        walk.check(get(f"/fhir/{path}/_history/1", status=404))

    set_restriction(client, token(app, PRIVACY_OFFICER, "officer"), w.restricted, restricted=False)
    staff, auditor = token(app, STAFF, "front-desk"), token(app, PLAIN_AUDITOR, "auditor")

    def found(path: str, headers: dict[str, str], **params: str) -> list[str]:
        return ids(fhir(client.get(path, query_string=params, headers=headers), 200))

    for path in (
        f"Patient/{w.restricted}",
        f"Appointment/{w.restricted_appointment}",
        f"Appointment/{w.restricted_draft}",
        f"Coverage/{w.family_plan}",
        *(f"{path}/_history/1" for path in histories),
    ):
        fhir(client.get(f"/fhir/{path}", headers=staff), 200)
    assert sorted(found("/fhir/Coverage", staff, patient=w.restricted)) == sorted(
        [w.restricted_plan, w.restricted_self_pay]
    )
    assert found("/fhir/Appointment", staff, identifier=R_BOOKING) == [w.restricted_appointment]
    assert found("/fhir/AuditEvent", auditor, patient=f"Patient/{w.restricted}")
    assert found("/fhir/AuditEvent", auditor, entity=f"Coverage/{w.family_plan}") == [r_event]
    fhir(client.get(f"/fhir/AuditEvent/{r_event}", headers=auditor), 200)


def test_the_default_insurance_of_a_booking_is_never_a_plan_the_caller_cannot_see(
    app, client, database
):
    """V's family plan (order 2) has R as its subscriber: hidden, so a booking without a
    coverage choice takes V's own plan alone, never the hidden one as secondary."""
    w = build_world(app, client, database)
    walk = Walk(app, client, Secrets.of(w))

    made = walk.check(post("/fhir/Appointment", appointment(w.spare_session, w.visible), 201))

    assert made["supportingInformation"] == [{"reference": f"Coverage/{w.visible_plan}"}]


def test_with_the_permission_the_blocked_patient_is_found_labelled_and_booked(
    app, client, database
):
    w = build_world(app, client, database)
    officer = token(app, PRIVACY_OFFICER, "privacy-officer")

    def search(path: str, **params: str) -> dict[str, Any]:
        return fhir(client.get(path, query_string=params, headers=officer), 200)

    for params in (
        {"family": "zzy"},
        {"identifier": R_MRN},
        {"identifier": f"{SSN}|512447391"},
        {"phone": "+1 555 019 7733"},
        {"name": "quillon"},
    ):
        bundle = search("/fhir/Patient", **params)
        (patient,) = entries(bundle)
        assert patient["id"] == w.restricted, params
        assert patient["meta"]["security"] == [RESTRICTED]
        assert bundle["total"] == 1
    assert sorted(ids(search("/fhir/Patient"))) == sorted([w.visible, w.restricted])
    read = fhir(client.get(f"/fhir/Patient/{w.restricted}", headers=officer), 200)
    assert read["meta"]["security"] == [RESTRICTED]
    assert {"system": SSN, "value": "***-**-7391"} in read["identifier"]
    assert ids(search("/fhir/Appointment", **{"patient.family": "zzyzx"})) == [
        w.restricted_appointment
    ]
    assert sorted(ids(search("/fhir/Coverage", patient=w.restricted))) == sorted(
        [w.restricted_plan, w.restricted_self_pay]
    )
    assert ids(search("/fhir/Coverage", subscriber=w.restricted)) == [w.family_plan]
    with_bookings = search("/fhir/Slot", _id=w.session, _revinclude="Appointment:slot")
    assert sorted(r["id"] for r in entries(with_bookings, "include")) == sorted(
        [w.visible_appointment, w.restricted_appointment]
    )
    booked = send(
        client, "POST", "/fhir/Appointment", appointment(w.spare_session, w.restricted), officer
    )
    made = fhir(booked, 201)
    assert made["participant"][0]["actor"] == {"reference": f"Patient/{w.restricted}"}
    assert made["supportingInformation"] == [{"reference": f"Coverage/{w.restricted_plan}"}]
    with database.reading() as db:
        assert db.get(Booking, made["id"]).session_id == w.spare_session
    spare = fhir(client.get(f"/fhir/Slot/{w.spare_session}", headers=officer), 200)
    assert capacity_of(spare) == "1/10"
    shared = fhir(client.get(f"/fhir/Slot/{w.session}", headers=officer), 200)
    assert capacity_of(shared) == "2/10"


def test_the_walk_uses_every_search_parameter_include_and_revinclude():
    """If a search parameter is added, the leak walk must learn to use it."""
    w = World(Clinic("g", "d", "p", "p2", "s"), *(f"x{i}" for i in range(13)))
    probes = read_probes(w) + error_probes(w)
    used: dict[str, set[str]] = {}
    for probe in probes:
        kind = probe.path.split("/")[2]
        for name, value in probe.params:
            used.setdefault(kind, set()).add(name.partition(":")[0])
            if name in ("_include", "_revinclude"):
                used[kind].add(value)

    for kind in ("Patient", "Appointment", "Coverage", "Slot", "Schedule"):
        search = SEARCHES[kind]
        if kind in ("Patient", "Appointment", "Coverage"):
            assert set(search.params) <= used[kind], (kind, set(search.params) - used[kind])
        assert set(search.includes) <= used[kind], (kind, set(search.includes) - used[kind])
        assert set(search.revincludes) <= used[kind], (kind, search.revincludes.keys())
        for chain in search.chains:
            assert any(n.startswith(f"{chain}.") for n in used[kind]), (kind, chain)
    chained = {n.partition(".")[2] for k in ("Appointment", "Coverage") for n in used[k]}
    assert set(SEARCHES["Patient"].params) <= chained


def family_probes(w: World, booked: str, series: str) -> list[Probe]:
    """Every path that renders V's appointments booked on the family plan (subscriber R):
    `booked` (a single booking) and `series` (an occurrence of a series)."""
    V = w.visible
    mine = (w.visible_appointment, booked, series)
    return [
        *(get(f"/fhir/Appointment/{a}") for a in (booked, series)),
        *(get(f"/fhir/Appointment/{a}/_history") for a in (booked, series)),
        *(get(f"/fhir/Appointment/{a}/_history/1") for a in (booked, series)),
        get("/fhir/Appointment", ("patient", f"Patient/{V}"), expect_ids=mine),
        get("/fhir/Appointment", expect_ids=mine),
        get("/fhir/Appointment", ("_id", booked), ("_include", "Appointment:patient")),
        get("/fhir/Slot", ("_revinclude", "Appointment:slot")),
        get("/fhir/Coverage", ("patient", f"Patient/{V}")),
        get(f"/fhir/Patient/{V}"),
        get(f"/fhir/Patient/{V}/_history"),
        get("/fhir/Appointment", ("_id", booked), ("_include", "Appointment:patient")),
        post(
            "/fhir",
            _bundle(
                "batch",
                ("GET", f"Appointment/{booked}", None),
                ("GET", f"Appointment?patient=Patient/{V}", None),
                ("GET", f"Slot?_id={w.spare_session}&_revinclude=Appointment:slot", None),
            ),
            200,
        ),
    ]


@pytest.mark.slow
def test_a_visible_patients_booking_on_a_hidden_plan_keeps_the_plan_out_of_sight_and_stored(
    app, client, database
):
    """V's bookings on the family plan (its subscriber R restricted) show no trace of the
    plan to a caller without the permission, on every path and in every version, following
    R's restriction as it is now, both ways; with the permission the plan is there. An
    update by that caller keeps the link they cannot see (README, Security)."""
    w = build_world(app, client, database)
    officer = token(app, PRIVACY_OFFICER, "privacy-officer")
    staff = token(app, STAFF, "front-desk")
    other = database.write(
        lambda db: make_session(db, w.clinic, start=MONDAY + dt.timedelta(days=14)).id
    )
    family = [{"reference": f"Coverage/{w.family_plan}"}]
    booked = create(client, appointment(other, w.visible, supportingInformation=family), officer)[
        "id"
    ]
    on_family_plan = book_parameters([proposal(w, w.visible)], w.family_plan)
    made = fhir(send(client, "POST", "/fhir/Appointment/$book", on_family_plan, officer), 200)
    series = made["entry"][0]["resource"]["id"]
    # What an EHR sent and we keep as sent may name R too: V's link to R, V's plan's holder.
    v_patient = fhir(client.get(f"/fhir/Patient/{w.visible}", headers=officer), 200)
    related = {"other": {"reference": f"Patient/{w.restricted}"}, "type": "seealso"}
    fhir(send(client, "PUT", f"/fhir/Patient/{w.visible}", {**v_patient, "link": [related]},
              officer), 200)  # fmt: skip
    v_plan = fhir(client.get(f"/fhir/Coverage/{w.visible_plan}", headers=officer), 200)
    held = {**v_plan, "policyHolder": {"reference": f"Patient/{w.restricted}"}}
    fhir(send(client, "PUT", f"/fhir/Coverage/{w.visible_plan}", held, officer), 200)
    walk = Walk(app, client, Secrets.of(w))

    def seen(appointment_id: str, headers: dict[str, str]) -> dict[str, Any]:
        return fhir(client.get(f"/fhir/Appointment/{appointment_id}", headers=headers), 200)

    for probe in family_probes(w, booked, series):
        walk.check(probe)
    assert seen(booked, officer)["supportingInformation"] == family

    # An edit by staff: the plan they see replaces nothing they cannot see.
    edited = {**seen(booked, staff), "supportingInformation": [
        {"reference": f"Coverage/{w.visible_plan}"}]}  # fmt: skip
    answer = walk.check(put(f"/fhir/Appointment/{booked}", edited, 200))
    assert answer["supportingInformation"] == [{"reference": f"Coverage/{w.visible_plan}"}]
    assert seen(booked, officer)["supportingInformation"] == [
        *family,
        {"reference": f"Coverage/{w.visible_plan}"},
    ]
    # A cancel by staff, sending back what they see (no family plan): the link stays.
    cancelled = {**seen(series, staff), "status": "cancelled"}
    assert "supportingInformation" not in cancelled
    walk.check(put(f"/fhir/Appointment/{series}", cancelled, 200))
    kept = seen(series, officer)
    assert (kept["status"], kept["supportingInformation"]) == ("cancelled", family)
    # Staff update V and V's plan with what they see: the link and the holder stay.
    v_seen = fhir(client.get(f"/fhir/Patient/{w.visible}", headers=staff), 200)
    assert "link" not in v_seen
    walk.check(put(f"/fhir/Patient/{w.visible}", {**v_seen, "gender": "male"}, 200))
    plan_seen = fhir(client.get(f"/fhir/Coverage/{w.visible_plan}", headers=staff), 200)
    assert "policyHolder" not in plan_seen
    walk.check(put(f"/fhir/Coverage/{w.visible_plan}", {**plan_seen, "order": 3}, 200))
    v_kept = fhir(client.get(f"/fhir/Patient/{w.visible}", headers=officer), 200)
    assert (v_kept["gender"], v_kept["link"]) == ("male", [related])
    plan_kept = fhir(client.get(f"/fhir/Coverage/{w.visible_plan}", headers=officer), 200)
    assert (plan_kept["order"], plan_kept["policyHolder"]) == (3, held["policyHolder"])
    for probe in family_probes(w, booked, series):
        walk.check(probe)

    set_restriction(client, officer, w.restricted, restricted=False)
    assert seen(series, staff)["supportingInformation"] == family
    v_now = fhir(client.get(f"/fhir/Patient/{w.visible}", headers=staff), 200)
    assert v_now["link"] == [related]
    history = fhir(client.get(f"/fhir/Appointment/{booked}/_history", headers=staff), 200)
    assert [e["resource"].get("supportingInformation") for e in history["entry"]] == [
        [*family, {"reference": f"Coverage/{w.visible_plan}"}],
        family,
    ]
    set_restriction(client, officer, w.restricted, restricted=True)
    assert "supportingInformation" not in seen(series, staff)


def test_a_draft_resolved_by_staff_keeps_its_hidden_plan_in_the_version_it_gets(
    app, client, database
):
    """Staff resolve V's draft on the family plan (its subscriber R restricted): their
    answer leaves the plan out, but the version the resolution made, as kept for history,
    is the Appointment itself, plan and all (what the caller may not see is hidden as it
    is sent, never in what is stored)."""
    w = build_world(app, client, database)
    officer = token(app, PRIVACY_OFFICER, "privacy-officer")
    staff = token(app, STAFF, "front-desk")
    unmatched = {
        key: value
        for key, value in proposal_for(w.spare_session, w.clinic, w.visible).items()
        if key not in ("slot", "start", "end")
    } | {"requestedPeriod": [{"start": "2027-01-11T15:00:00Z", "end": "2027-01-11T16:30:00Z"}]}
    made = fhir(
        send(client, "POST", "/fhir/Appointment/$book",
             book_parameters([unmatched], w.family_plan), officer),
        200,
    )  # fmt: skip
    draft = made["entry"][0]["resource"]
    assert draft["status"] == "proposed"
    family = [{"reference": f"Coverage/{w.family_plan}"}]
    assert draft["supportingInformation"] == family

    seen = fhir(client.get(f"/fhir/Appointment/{draft['id']}", headers=staff), 200)
    assert "supportingInformation" not in seen
    choice = {k: v for k, v in seen.items() if k != "requestedPeriod"}
    choice["slot"] = [{"reference": f"Slot/{w.spare_session}"}]
    resolved = fhir(
        send(client, "POST", "/fhir/Appointment/$book", book_parameters([choice]), staff), 200
    )
    answer = resolved["entry"][0]["resource"]
    assert answer["status"] == "booked" and "supportingInformation" not in answer

    # Once a later version exists, version 2 is read from what history kept of it.
    current = fhir(client.get(f"/fhir/Appointment/{draft['id']}", headers=officer), 200)
    fhir(send(client, "PUT", f"/fhir/Appointment/{draft['id']}",
              {**current, "status": "cancelled"}, officer), 200)  # fmt: skip
    version = answer["meta"]["versionId"]
    kept = fhir(
        client.get(f"/fhir/Appointment/{draft['id']}/_history/{version}", headers=officer), 200
    )
    assert (kept["status"], kept["supportingInformation"]) == ("booked", family)
