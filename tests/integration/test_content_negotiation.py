"""Content negotiation as FHIR R4 defines it (http.html#mime): Accept and Content-Type with
`charset` and `fhirVersion` parameters, `_format` spellings, and a clear 406 for anything
other than FHIR 4.0 JSON."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest

from tests.factories import make_clinic, make_patient, make_session
from tests.integration.helpers import FHIR_JSON, appointment, fhir, outcome


@pytest.fixture
def world(database):
    def build(db):
        clinic = make_clinic(db)
        return make_session(db, clinic).id, make_patient(db).id

    return database.write(build)


@pytest.mark.parametrize(
    "accept",
    [
        "application/fhir+json; charset=utf-8",
        "application/fhir+json; fhirVersion=4.0",
        "application/fhir+json;fhirVersion=4.0.1;charset=UTF-8",
        "application/json",
        "application/json+fhir",
        "*/*",
        "application/fhir+xml, application/fhir+json;q=0.5",
        "application/fhir+json; fhirVersion=3.0, application/json; fhirVersion=4.0",
    ],
)
def test_standard_accept_forms_of_fhir_r4_json_are_served(client, mint, world, accept):
    session_id, _ = world

    response = client.get(f"/fhir/Slot/{session_id}", headers={**mint(), "Accept": accept})

    assert fhir(response, 200)["id"] == session_id


@pytest.mark.parametrize(
    "value",
    ["json", "application/json", "application/fhir+json", "application/fhir+json; fhirVersion=4.0"],
)
def test_every_json_spelling_of_format_is_served_on_read_and_search(client, mint, world, value):
    session_id, _ = world
    headers = {**mint(), "Accept": "application/fhir+xml"}  # _format overrides Accept

    read = client.get(f"/fhir/Slot/{session_id}?_format={quote(value)}", headers=headers)
    search = client.get(f"/fhir/Slot?_id={session_id}&_format={quote(value)}", headers=headers)

    assert fhir(read, 200)["id"] == session_id
    assert fhir(search, 200)["total"] == 1


@pytest.mark.parametrize(
    ("accept", "words"),
    [
        ("application/fhir+json; fhirVersion=3.0", "fhirVersion=3.0"),
        ("application/fhir+json; fhirVersion=5.0", "FHIR 4.0"),
        ("application/fhir+xml", "not XML"),
        ("application/fhir+json; charset=iso-8859-1", "utf-8"),
        ("text/html", FHIR_JSON),
        ("application/fhir+json;q=0", FHIR_JSON),
    ],
)
def test_another_fhir_version_xml_or_charset_is_refused_with_406_saying_why(
    client, mint, world, accept, words
):
    session_id, _ = world

    response = client.get(f"/fhir/Slot/{session_id}", headers={**mint(), "Accept": accept})

    issue = outcome(response, 406, code="not-supported", expression="Accept")
    assert words in issue["details"]["text"], issue


@pytest.mark.parametrize(
    "value", ["xml", "application/fhir+xml", "application/fhir+json; fhirVersion=3.0"]
)
def test_a_format_we_do_not_serve_is_406_naming_format(client, mint, world, value):
    session_id, _ = world

    response = client.get(f"/fhir/Slot/{session_id}?_format={quote(value)}", headers=mint())

    outcome(response, 406, code="not-supported", expression="_format")


@pytest.mark.parametrize(
    "content_type",
    [
        "application/fhir+json; charset=utf-8",
        "application/fhir+json; fhirVersion=4.0",
        "application/json; charset=UTF-8",
    ],
)
def test_a_body_sent_with_charset_or_fhir_version_is_accepted(client, mint, world, content_type):
    session_id, patient_id = world

    response = client.post(
        "/fhir/Appointment",
        data=json.dumps(appointment(session_id, patient_id)),
        headers={**mint(), "Content-Type": content_type},
    )

    assert fhir(response, 201)["status"] == "booked"


@pytest.mark.parametrize(
    "content_type", ["application/fhir+json; fhirVersion=3.0", "application/fhir+xml", "text/plain"]
)
def test_a_body_of_another_fhir_version_or_format_is_415_and_books_nothing(
    client, mint, world, content_type
):
    session_id, patient_id = world

    response = client.post(
        "/fhir/Appointment",
        data=json.dumps(appointment(session_id, patient_id)),
        headers={**mint(), "Content-Type": content_type},
    )

    outcome(response, 415, code="not-supported", expression="Content-Type")
    slot = fhir(client.get(f"/fhir/Slot/{session_id}", headers=mint()), 200)
    assert slot["meta"]["versionId"] == "1"
