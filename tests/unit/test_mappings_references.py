"""Leaving out references to records the reader may not see (mappings.references)."""

from __future__ import annotations

from mappings.references import checked_references, resources_in, without_references

HIDDEN = {("Coverage", "cov-r"), ("Patient", "pat-r")}


def _appointment(*coverages: str) -> dict:
    return {
        "resourceType": "Appointment",
        "id": "a1",
        "supportingInformation": [{"reference": f"Coverage/{c}"} for c in coverages],
        "participant": [{"actor": {"reference": "Patient/pat-v"}, "status": "accepted"}],
    }


def test_every_resource_of_a_batch_response_is_found_but_not_its_bundles():
    inner = {"resourceType": "Bundle", "entry": [{"resource": _appointment("cov-r")}]}
    outer = {"resourceType": "Bundle", "entry": [{"resource": inner}, {"resource": _appointment()}]}

    assert [r["resourceType"] for r in resources_in(outer)] == ["Appointment", "Appointment"]


def test_a_hidden_coverage_leaves_the_appointment_and_a_visible_one_stays():
    appointment = _appointment("cov-r", "cov-v")

    without_references(appointment, HIDDEN)

    assert appointment["supportingInformation"] == [{"reference": "Coverage/cov-v"}]


def test_an_appointment_on_a_hidden_coverage_alone_has_no_supporting_information_left():
    appointment = _appointment("cov-r")

    without_references(appointment, HIDDEN)

    assert "supportingInformation" not in appointment
    assert appointment["participant"][0]["actor"] == {"reference": "Patient/pat-v"}


def test_the_elements_that_define_a_record_are_never_checked_nor_touched():
    coverage = {
        "resourceType": "Coverage",
        "beneficiary": {"reference": "Patient/pat-r"},
        "subscriber": {"reference": "Patient/pat-r"},
        "payor": [{"reference": "Patient/pat-r"}],
        "policyHolder": {"reference": "https://ehr.example/fhir/Patient/pat-r"},
    }

    assert checked_references(coverage) == {("Patient", "pat-r")}
    without_references(coverage, HIDDEN)
    assert "policyHolder" not in coverage
    assert coverage["payor"] == [{"reference": "Patient/pat-r"}]


def test_a_link_to_a_hidden_patient_goes_and_other_links_stay():
    patient = {
        "resourceType": "Patient",
        "link": [
            {"other": {"reference": "Patient/pat-r"}, "type": "seealso"},
            {"other": {"reference": "Patient/pat-w"}, "type": "seealso"},
        ],
        "generalPractitioner": [{"reference": "Practitioner/pat-r"}],
    }

    without_references(patient, HIDDEN)

    assert patient["link"] == [{"other": {"reference": "Patient/pat-w"}, "type": "seealso"}]
    assert patient["generalPractitioner"] == [{"reference": "Practitioner/pat-r"}]
