"""Search result parameters real clients send: `_elements` (read and search), `_summary`,
`_total` and `_sort` on many keys, `_id` and `_lastUpdated`. Every answer still validates."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from mappings import search as search_mappings
from tests.factories import MONDAY, make_clinic, make_patient, make_session
from tests.integration.helpers import appointment, fhir, ids, outcome, post

SUBSETTED = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "code": "SUBSETTED",
    "display": "subsetted",
}


@pytest.fixture
def clinic(database):
    def build(db):
        clinic = make_clinic(db)
        sessions = [
            make_session(db, clinic, start=MONDAY + dt.timedelta(days=7 * i)).id for i in range(3)
        ]
        patients = [
            make_patient(db, family=family, given=given).id
            for family, given in (("Abbott", "Zoe"), ("Abbott", "Amy"), ("Young", "Bea"))
        ]
        return sessions, patients

    return database.write(build)


def test_elements_on_read_keeps_what_was_asked_and_what_is_mandatory(client, mint, clinic):
    sessions, _ = clinic

    slot = fhir(client.get(f"/fhir/Slot/{sessions[0]}?_elements=comment", headers=mint()), 200)
    whole = fhir(client.get(f"/fhir/Slot/{sessions[0]}", headers=mint()), 200)

    # schedule, status, start and end are mandatory (min 1) in R4: always there.
    assert set(slot) == {"resourceType", "id", "meta", "schedule", "status", "start", "end"}
    assert SUBSETTED in slot["meta"]["tag"]
    assert "extension" in whole and "tag" not in whole["meta"]


def test_elements_may_name_resource_type_and_id_as_client_libraries_do(client, mint, clinic):
    sessions, _ = clinic

    # fhirpy's .elements() always adds "id,resourceType": both are there anyway.
    asked = f"/fhir/Slot/{sessions[0]}?_elements=id,resourceType,comment"
    slot = fhir(client.get(asked, headers=mint()), 200)

    assert set(slot) == {"resourceType", "id", "meta", "schedule", "status", "start", "end"}
    assert SUBSETTED in slot["meta"]["tag"]


def test_elements_on_search_cuts_every_match_and_keeps_it_in_the_next_link(client, mint, clinic):
    sessions, _ = clinic

    bundle = fhir(
        client.get("/fhir/Slot?_elements=Slot.extension,serviceType&_count=2", headers=mint()),
        200,
    )

    for entry in bundle["entry"]:
        resource = entry["resource"]
        assert set(resource) == {
            "resourceType", "id", "meta", "schedule", "status", "start", "end",
            "extension", "serviceType",
        }  # fmt: skip
        assert SUBSETTED in resource["meta"]["tag"]
    next_url = next(link["url"] for link in bundle["link"] if link["relation"] == "next")
    assert "_elements=" in next_url
    rest = fhir(client.get(next_url.removeprefix("http://testserver"), headers=mint()), 200)
    assert ids(rest) == [sessions[2]] and "comment" not in rest["entry"][0]["resource"]


def test_included_resources_are_not_cut_by_elements(client, mint, clinic):
    sessions, _ = clinic

    bundle = fhir(
        client.get(
            f"/fhir/Slot?_id={sessions[0]}&_elements=status&_include=Slot:schedule", headers=mint()
        ),
        200,
    )

    included = [e["resource"] for e in bundle["entry"] if e["search"]["mode"] == "include"]
    assert [r["resourceType"] for r in included] == ["Schedule"]
    assert "tag" not in included[0]["meta"]  # whole: SUBSETTED marks only the matches


def test_summary_true_keeps_the_r4_summary_elements_and_the_mandatory_ones(client, mint, clinic):
    sessions, patients = clinic
    booked = fhir(
        post(client, "/fhir/Appointment", appointment(sessions[0], patients[0]), mint()), 201
    )

    patient = fhir(client.get(f"/fhir/Patient/{patients[0]}?_summary=true", headers=mint()), 200)
    bundle = fhir(
        client.get(f"/fhir/Appointment?_id={booked['id']}&_summary=true", headers=mint()), 200
    )

    assert {"name", "identifier", "birthDate", "gender", "telecom"} <= set(patient)
    assert SUBSETTED in patient["meta"]["tag"]
    summary = bundle["entry"][0]["resource"]
    assert summary["status"] == "booked" and summary["participant"]  # participant: min 1
    assert "slot" not in summary and "supportingInformation" not in summary  # not summary
    assert "extension" not in summary


def test_summary_text_and_data(client, mint, clinic):
    sessions, _ = clinic

    text = fhir(client.get(f"/fhir/Slot/{sessions[0]}?_summary=text", headers=mint()), 200)
    data = fhir(client.get(f"/fhir/Slot/{sessions[0]}?_summary=data", headers=mint()), 200)

    assert set(text) == {"resourceType", "id", "meta", "schedule", "status", "start", "end"}
    assert "extension" in data and "text" not in data and SUBSETTED in data["meta"]["tag"]


@pytest.mark.parametrize(
    ("query", "expression"),
    [
        ("_elements=nonsense", "_elements"),
        ("_summary=maybe", "_summary"),
        ("_summary=true&_elements=status", "_elements"),
        ("_total=some", "_total"),
        ("_sort=comment", "_sort"),
    ],
)
def test_bad_result_parameters_are_400_naming_the_parameter(
    client, mint, clinic, query, expression
):
    outcome(client.get(f"/fhir/Slot?{query}", headers=mint()), 400, expression=expression)


def test_total_none_leaves_the_total_out_but_keeps_paging(client, mint, clinic):
    sessions, _ = clinic

    none = fhir(client.get("/fhir/Slot?_total=none&_count=2", headers=mint()), 200)
    accurate = fhir(client.get("/fhir/Slot?_total=accurate&_count=2", headers=mint()), 200)
    estimate = fhir(client.get("/fhir/Slot?_total=estimate&_count=2", headers=mint()), 200)

    assert "total" not in none and ids(none) == sessions[:2]
    next_url = next(link["url"] for link in none["link"] if link["relation"] == "next")
    last = fhir(client.get(next_url.removeprefix("http://testserver"), headers=mint()), 200)
    assert ids(last) == sessions[2:] and not [k for k in last["link"] if k["relation"] == "next"]
    assert accurate["total"] == estimate["total"] == 3


def test_an_estimated_total_is_exact_up_to_its_bound_and_never_below_it(
    client, mint, clinic, database, monkeypatch
):
    monkeypatch.setattr(search_mappings, "EXACT_TOTAL_UP_TO", 1)

    estimate = fhir(client.get("/fhir/Slot?_count=1", headers=mint()), 200)
    accurate = fhir(client.get("/fhir/Slot?_total=accurate&_count=1", headers=mint()), 200)
    within = fhir(client.get("/fhir/Slot?_count=1&_id=" + clinic[0][0], headers=mint()), 200)

    assert accurate["total"] == 3 and within["total"] == 1
    if database.engine.dialect.name == "postgresql":  # past the bound: the planner's estimate
        assert isinstance(estimate["total"], int) and estimate["total"] >= 2
    else:  # SQLite has no estimate to give: it counts
        assert estimate["total"] == 3
    assert any(link["relation"] == "next" for link in estimate["link"])


def test_past_the_bound_a_caller_kept_from_some_patients_gets_no_estimate_only_paging(
    client, mint, clinic, database, monkeypatch
):
    """The planner's estimate is drawn from the whole table's statistics, restricted
    patients included: staff without the privacy permission get no total past the bound
    (exact counts below it, and the next link either way); the privacy officer gets one."""
    monkeypatch.setattr(search_mappings, "EXACT_TOTAL_UP_TO", 1)
    database.write(lambda db: make_patient(db, family="Abbott", restricted=True))

    staff = fhir(client.get("/fhir/Patient?family=abbott&_count=1", headers=mint()), 200)
    last = fhir(client.get("/fhir/Patient?family=abbott&_count=1&_offset=1", headers=mint()), 200)
    officer = mint("user/*.cruds __patient.blocked")
    everyone = fhir(client.get("/fhir/Patient?family=abbott&_count=1", headers=officer), 200)
    accurate = fhir(
        client.get("/fhir/Patient?family=abbott&_count=1&_total=accurate", headers=mint()), 200
    )

    assert accurate["total"] == 2  # the two visible Abbotts
    assert any(link["relation"] == "next" for link in staff["link"])
    assert not any(link["relation"] == "next" for link in last["link"])
    if database.engine.dialect.name == "postgresql":
        assert "total" not in staff and "total" not in last
        assert isinstance(everyone["total"], int) and everyone["total"] >= 2
    else:  # SQLite counts exactly, and only what the caller may see
        assert staff["total"] == last["total"] == 2 and everyone["total"] == 3


def test_a_patient_total_counts_only_visible_matches_on_full_empty_and_count_only_pages(
    client, mint, clinic, database
):
    """A patient page brings its count in its own statement; a page past the last match,
    or `_summary=count`, has no row to bring it and counts apart: the same total."""
    database.write(lambda db: make_patient(db, family="Abbott", restricted=True))
    officer = mint("user/*.cruds __patient.blocked")

    def total(query: str, headers: dict[str, str]) -> Any:
        return fhir(client.get(f"/fhir/Patient?family=abbott&{query}", headers=headers), 200)

    full, past, only = (total(q, mint()) for q in ("_count=1", "_offset=5", "_summary=count"))
    assert full["total"] == past["total"] == only["total"] == 2
    assert len(ids(full)) == 1 and ids(past) == []
    assert any(link["relation"] == "next" for link in full["link"])
    assert [total(q, officer)["total"] for q in ("_count=1", "_offset=5")] == [3, 3]


def test_sort_takes_several_keys_each_way_and_id_and_last_updated(client, mint, clinic):
    _, patients = clinic
    abbott_zoe, abbott_amy, young_bea = patients

    by_name = fhir(client.get("/fhir/Patient?_sort=family,-given", headers=mint()), 200)
    by_name_desc = fhir(client.get("/fhir/Patient?_sort=-name", headers=mint()), 200)
    by_id = fhir(client.get("/fhir/Patient?_sort=-_id", headers=mint()), 200)
    by_update = fhir(client.get("/fhir/Patient?_sort=-_lastUpdated,_id", headers=mint()), 200)

    assert ids(by_name) == [abbott_zoe, abbott_amy, young_bea]
    assert ids(by_name_desc) == [young_bea, abbott_zoe, abbott_amy]
    assert ids(by_id) == sorted(patients, reverse=True)
    assert len(ids(by_update)) == 3


def test_last_updated_is_a_search_parameter_on_every_type(client, mint, clinic):
    sessions, _ = clinic
    slot = fhir(client.get(f"/fhir/Slot/{sessions[0]}", headers=mint()), 200)
    changed = slot["meta"]["lastUpdated"]

    same = fhir(client.get(f"/fhir/Slot?_lastUpdated={changed}", headers=mint()), 200)
    later = fhir(client.get(f"/fhir/Slot?_lastUpdated=gt{changed}", headers=mint()), 200)

    assert sessions[0] in ids(same)
    assert sessions[0] not in ids(later)
