"""FHIR search through the API: parameters, paging, strictness, and hostile strings."""

from __future__ import annotations

import datetime as dt

import pytest

from store.access import STAFF
from store.booking import BookingRequest, book_patient, update_booking
from store.models import BookingStatus, Department, ProviderGroup
from tests.factories import MONDAY, MRN, make_clinic, make_patient, make_session
from tests.integration.helpers import BOOKING_ID_SYSTEM, entries, fhir, ids, outcome
from tests.validation import assert_valid

NPI = "http://hl7.org/fhir/sid/us-npi"
ORG_SYSTEM = "urn:example:org"
DEPT_SYSTEM = "urn:example:dept"


def search(client, mint, url: str, **kwargs) -> dict:
    return fhir(client.get(url, headers=mint(), **kwargs), 200)


# -- Appointment ---------------------------------------------------------------------


@pytest.fixture
def bookings(database):
    """Four bookings over two clinics; returns the names the tests use, by key."""

    def build(db):
        brooklyn = make_clinic(db)
        denver = make_clinic(db)
        monday = make_session(db, brooklyn)
        tuesday = make_session(db, brooklyn, start=MONDAY + dt.timedelta(days=1))
        next_week = make_session(db, denver, start=MONDAY + dt.timedelta(days=7))
        ana, ben = make_patient(db, given="Ana").id, make_patient(db, given="Ben").id

        def booking(patient, session, **options):
            request = BookingRequest(patient_id=patient, session_id=session.id, **options)
            return book_patient(db, request, STAFF).booking.id

        names = {
            "b1": booking(ana, monday, identifiers=((BOOKING_ID_SYSTEM, "v1"),)),
            "b2": booking(
                ben,
                monday,
                appointment_type="dbt-skills",
                provider_ids=(brooklyn.provider_id, brooklyn.other_provider_id),
            ),
            "b3": booking(ana, tuesday),
            "b4": booking(ben, next_week),
        }
        cancel = BookingRequest(ana, tuesday.id, status=BookingStatus.CANCELLED)
        update_booking(db, names["b3"], cancel, STAFF)
        refs = {
            "ana": ana,
            "ben": ben,
            "monday": monday.id,
            "prov1": brooklyn.provider_id,
            "prov2": brooklyn.other_provider_id,
            "dept1": brooklyn.department_id,
            "dept2": denver.department_id,
        }
        return names, refs

    return database.write(build)


APPOINTMENT_QUERIES = [
    ("patient=Patient/{ana}", ["b1", "b3"]),
    ("patient={ben}", ["b2", "b4"]),
    ("actor=Patient/{ben}", ["b2", "b4"]),
    ("actor=Practitioner/{prov2}", ["b2"]),
    ("actor=Location/{dept2}", ["b4"]),
    ("practitioner=Practitioner/{prov1}", ["b1", "b2", "b3"]),
    ("location=Location/{dept1}", ["b1", "b2", "b3"]),
    ("date=2027-01-04", ["b1", "b2"]),
    ("date=ge2027-01-05", ["b3", "b4"]),
    ("date=ge2027-01-05&date=lt2027-01-06", ["b3"]),
    ("status=cancelled", ["b3"]),
    ("status=booked", ["b1", "b2", "b4"]),
    ("status=booked,cancelled&patient=Patient/{ana}", ["b1", "b3"]),
    ("slot=Slot/{monday}", ["b1", "b2"]),
    ("appointment-type=dbt-skills", ["b2"]),
    (
        "appointment-type=http://fhir-facade.org/fhir/CodeSystem/group-appointment-type"
        "|group-therapy",
        ["b1", "b3", "b4"],
    ),
    ("appointment-type=CHECKUP", []),
    (f"identifier={BOOKING_ID_SYSTEM}|v1", ["b1"]),
    ("identifier=v1", ["b1"]),
    ("identifier=urn:other|v1", []),
]


def test_appointments_are_found_by_each_search_parameter(client, mint, bookings):
    names, refs = bookings

    for query, expected in APPOINTMENT_QUERIES:
        bundle = search(client, mint, "/fhir/Appointment?" + query.format(**refs))

        assert sorted(ids(bundle)) == sorted(names[key] for key in expected), query
        assert bundle["total"] == len(expected), query


def test_appointments_can_include_their_patient_and_slot(client, mint, bookings):
    names, refs = bookings

    bundle = search(
        client,
        mint,
        f"/fhir/Appointment?slot=Slot/{refs['monday']}"
        "&_include=Appointment:patient&_include=Appointment:slot",
    )

    assert sorted(ids(bundle)) == sorted([names["b1"], names["b2"]])
    included = {(r["resourceType"], r["id"]) for r in entries(bundle, "include")}
    assert included == {
        ("Patient", refs["ana"]),
        ("Patient", refs["ben"]),
        ("Slot", refs["monday"]),
    }


# -- Patient -------------------------------------------------------------------------


@pytest.fixture
def patients(database):
    def build(db):
        return {
            "garcia": make_patient(db, family="García", given="María"),
            "garcia_lopez": make_patient(db, family="Garcia-Lopez", given="Luis"),
            "muller": make_patient(db, family="Müller", given="Zoë"),
            "obrien": make_patient(db, family="O'Brien", given="Sean"),
            "lopez": make_patient(db, family="Lopez", given="Ana"),
        }

    made = database.write(build)
    return {key: (p.id, p.identifiers[0].value) for key, p in made.items()}


FAMILY_QUERIES = [
    ("family=garc", ["garcia", "garcia_lopez"]),
    ("family=GARCÍA", ["garcia", "garcia_lopez"]),
    ("family=garcía-", ["garcia_lopez"]),
    ("family=muller", ["muller"]),
    ("family=MÜL", ["muller"]),
    ("family=lopez", ["lopez"]),  # a prefix match, not a substring match
    ("family:contains=lopez", ["garcia_lopez", "lopez"]),
    ("family:exact=García", ["garcia"]),
    ("family:exact=garcia", []),  # exact means case- and accent-sensitive
    ("given:exact=María", ["garcia"]),
    ("family=o'brien", ["obrien"]),
    ("family=zz", []),
]


def test_patients_are_found_by_family_name_prefix_ignoring_case_and_accents(client, mint, patients):
    for query, expected in FAMILY_QUERIES:
        bundle = search(client, mint, f"/fhir/Patient?{query}")

        assert sorted(ids(bundle)) == sorted(patients[key][0] for key in expected), query


def test_a_patient_is_found_by_id(client, mint, patients):
    patient_id, _ = patients["muller"]

    bundle = search(client, mint, f"/fhir/Patient?_id={patient_id}")

    (patient,) = entries(bundle)
    assert patient["id"] == patient_id
    assert patient["name"] == [{"family": "Müller", "given": ["Zoë"]}]


@pytest.mark.parametrize("with_system", [True, False])
def test_a_patient_is_found_by_mrn(client, mint, patients, with_system):
    patient_id, mrn = patients["obrien"]
    value = f"{MRN}|{mrn}" if with_system else mrn

    bundle = search(client, mint, "/fhir/Patient", query_string={"identifier": value})

    assert ids(bundle) == [patient_id]
    assert entries(bundle)[0]["identifier"][0]["value"] == mrn


def test_a_patient_mrn_under_another_system_matches_nothing(client, mint, patients):
    _, mrn = patients["obrien"]

    bundle = search(client, mint, "/fhir/Patient", query_string={"identifier": f"urn:x|{mrn}"})

    assert ids(bundle) == []
    assert bundle["total"] == 0


def test_paging_gives_the_total_and_next_links_that_walk_every_match_once(client, mint, database):
    database.write(lambda db: [make_patient(db, family="Pager", given=g) for g in "ABCDE"])

    pages = [search(client, mint, "/fhir/Patient?family=pager&_count=2")]
    while nexts := [link["url"] for link in pages[-1]["link"] if link["relation"] == "next"]:
        pages.append(search(client, mint, nexts[0]))

    assert [p["total"] for p in pages] == [5, 5, 5]
    assert [len(entries(p)) for p in pages] == [2, 2, 1]
    given = [r["name"][0]["given"][0] for p in pages for r in entries(p)]
    assert given == list("ABCDE")
    assert pages[0]["link"][0]["relation"] == "self"
    assert [link["relation"] for link in pages[-1]["link"]] == ["self", "previous"]


# -- Organization, Location, Practitioner --------------------------------------------


@pytest.fixture
def directory(database):
    def build(db):
        harbor, summit = make_clinic(db), make_clinic(db)
        db.get(ProviderGroup, harbor.group_id).identifier_system = ORG_SYSTEM
        db.get(ProviderGroup, harbor.group_id).identifier_value = "HG-1"
        db.get(ProviderGroup, summit.group_id).name = "Summit Behavioral"
        db.get(Department, summit.department_id).name = "Denver"
        db.get(Department, summit.department_id).identifier_system = DEPT_SYSTEM
        db.get(Department, summit.department_id).identifier_value = "DEN"
        return harbor, summit

    return database.write(build)


def test_organizations_are_found_by_name_and_identifier(client, mint, directory):
    harbor, summit = directory

    by_name = search(client, mint, "/fhir/Organization?name=summit")
    by_identifier = search(client, mint, f"/fhir/Organization?identifier={ORG_SYSTEM}|HG-1")

    assert ids(by_name) == [summit.group_id]
    assert ids(by_identifier) == [harbor.group_id]


def test_locations_are_found_by_name_and_identifier_with_their_time_zone(client, mint, directory):
    harbor, summit = directory

    by_name = search(client, mint, "/fhir/Location?name=brook")
    by_identifier = search(client, mint, f"/fhir/Location?identifier={DEPT_SYSTEM}|DEN")

    assert ids(by_name) == [harbor.department_id]
    assert ids(by_identifier) == [summit.department_id]
    (location,) = entries(by_name)
    assert location["managingOrganization"] == {"reference": f"Organization/{harbor.group_id}"}
    assert {
        "url": "http://hl7.org/fhir/StructureDefinition/timezone",
        "valueCode": "America/New_York",
    } in location["extension"]


def test_practitioners_are_found_by_name_and_npi(client, mint, directory, database):
    harbor, summit = directory
    with database.reading() as db:
        from store.models import Provider

        npi = db.get(Provider, summit.provider_id).identifier_value

    by_family = search(client, mint, "/fhir/Practitioner?name=rivera")
    by_given = search(client, mint, "/fhir/Practitioner?name=wei")
    by_npi = search(client, mint, f"/fhir/Practitioner?identifier={NPI}|{npi}")

    assert sorted(ids(by_family)) == sorted([harbor.provider_id, summit.provider_id])
    assert sorted(ids(by_given)) == sorted([harbor.other_provider_id, summit.other_provider_id])
    assert ids(by_npi) == [summit.provider_id]


def test_directory_resources_are_read_and_found_by_id(client, mint, directory):
    harbor, _ = directory
    wanted = [
        ("Organization", harbor.group_id),
        ("Location", harbor.department_id),
        ("Practitioner", harbor.provider_id),
        ("Schedule", harbor.schedule_id),
    ]

    for resource_type, ident in wanted:
        bundle = search(client, mint, f"/fhir/{resource_type}?_id={ident}")
        read = fhir(client.get(f"/fhir/{resource_type}/{ident}", headers=mint()), 200)

        assert entries(bundle) == [read], resource_type
        assert read["id"] == ident


# -- strictness ----------------------------------------------------------------------


def test_an_unknown_search_parameter_is_refused(client, mint, patients):
    response = client.get("/fhir/Patient?family=garc&shoe-size=42", headers=mint())

    outcome(response, 400, code="invalid", expression="shoe-size")


def test_an_unknown_search_parameter_is_ignored_when_the_client_prefers_lenient(
    client, mint, patients
):
    headers = mint() | {"Prefer": "handling=lenient"}

    bundle = fhir(client.get("/fhir/Patient?family=garc&shoe-size=42", headers=headers), 200)

    assert sorted(ids(bundle)) == sorted([patients["garcia"][0], patients["garcia_lopez"][0]])
    (self_link,) = [link["url"] for link in bundle["link"] if link["relation"] == "self"]
    assert "shoe-size" not in self_link


@pytest.mark.parametrize(
    ("url", "expression"),
    [
        ("/fhir/Slot?start=ge2027-13-01", "start"),
        ("/fhir/Appointment?date=tomorrow", "date"),
        ("/fhir/Appointment?status=maybe", "status"),
        ("/fhir/Patient?_count=lots", "_count"),
        ("/fhir/Patient?_sort=shoe-size", "_sort"),
        ("/fhir/Slot?_include=Slot:patient", "_include"),
    ],
)
def test_a_malformed_search_value_is_refused_with_400(client, mint, url, expression):
    outcome(client.get(url, headers=mint()), 400, code="invalid", expression=expression)


# -- hostile strings -----------------------------------------------------------------

SQL_STRINGS = [
    "%",
    "_",
    "L_pez",
    "%ez",
    "'",
    "' OR '1'='1",
    "x' OR 1=1 --",
    "'; DROP TABLE patient; --",
    "--",
    '"',
    "\\",
    "Lo\\%",
]


PATIENT_TEXT_PARAMS = (
    "family",
    "family:contains",
    "family:exact",
    "given",
    "name",
    "identifier",
    "_id",
)


def test_sql_meaningful_strings_in_patient_searches_are_only_data(client, mint, patients):
    for param in PATIENT_TEXT_PARAMS:
        for value in SQL_STRINGS:
            bundle = search(client, mint, "/fhir/Patient", query_string={param: value})

            # The only honest match: O'Brien contains a quote.
            honest = (param, value) == ("family:contains", "'")
            expected = [patients["obrien"][0]] if honest else []
            assert ids(bundle) == expected, (param, value)
            assert bundle["total"] == len(expected), (param, value)


def test_sql_meaningful_strings_in_directory_searches_are_only_data(client, mint, directory):
    for url in ("/fhir/Organization", "/fhir/Location", "/fhir/Practitioner"):
        for param in ("name", "name:contains", "identifier", "_id"):
            for value in SQL_STRINGS:
                bundle = search(client, mint, url, query_string={param: value})
                assert ids(bundle) == [], (url, param, value)


def test_a_name_containing_a_quote_is_found_exactly(client, mint, patients):
    bundle = search(client, mint, "/fhir/Patient", query_string={"family": "O'"})

    assert ids(bundle) == [patients["obrien"][0]]


def test_an_appointment_identifier_with_wildcards_matches_nothing(client, mint, bookings):
    for value in ("%|%", f"{BOOKING_ID_SYSTEM}|_1", f"{BOOKING_ID_SYSTEM}|' OR '1'='1"):
        bundle = search(client, mint, "/fhir/Appointment", query_string={"identifier": value})
        assert ids(bundle) == [], value


def test_a_hostile_reference_value_is_refused_or_matches_nothing(client, mint, bookings):
    for value in ("Patient/'--", "Patient/%", "' OR 1=1", "Patient/_"):
        response = client.get("/fhir/Appointment", query_string={"patient": value}, headers=mint())

        if response.status_code == 400:
            outcome(response, 400, code="invalid", expression="patient")
        else:
            assert ids(fhir(response, 200)) == [], value


def test_summary_count_gives_the_total_without_entries(client, database, mint):
    def build(db):
        clinic = make_clinic(db)
        for _ in range(3):
            make_session(db, clinic)
        return clinic.schedule_id

    schedule_id = database.write(build)
    response = client.get(
        f"/fhir/Slot?schedule=Schedule/{schedule_id}&_summary=count", headers=mint()
    )
    assert response.status_code == 200
    bundle = response.json
    assert_valid(bundle)
    assert bundle["total"] == 3
    assert "entry" not in bundle
    assert [link["relation"] for link in bundle["link"]] == ["self"]
