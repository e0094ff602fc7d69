"""Patient as rendered from the store, including the restriction label."""

from __future__ import annotations

import pytest

from mappings.common import parse_resource
from mappings.errors import InvalidResource
from mappings.patient import patient_to_fhir
from tests.unit.builders import MRN, patient
from tests.validation import assert_valid

CONFIDENTIALITY = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"


def test_a_patient_maps_to_a_valid_patient_resource():
    rendered = patient_to_fhir(patient())
    assert_valid(rendered)
    assert rendered["name"] == [{"family": "García", "given": ["Maria", "Luisa"]}]
    assert rendered["gender"] == "female"
    assert rendered["birthDate"] == "1980-05-17"
    assert rendered["telecom"] == [{"system": "phone", "value": "(555) 010-2233", "use": "mobile"}]


def test_the_mrn_identifier_is_typed_as_a_medical_record_number():
    (mrn,) = patient_to_fhir(patient())["identifier"]
    assert mrn["system"] == MRN
    assert mrn["value"] == "MRN100001"
    assert mrn["type"]["coding"][0]["code"] == "MR"


def test_an_unrestricted_patient_carries_no_security_label():
    rendered = patient_to_fhir(patient())
    assert "security" not in rendered["meta"]


def test_a_restricted_patient_is_labelled_confidentiality_restricted():
    rendered = patient_to_fhir(patient(restricted=True))
    assert_valid(rendered)
    assert rendered["meta"]["security"] == [
        {"system": CONFIDENTIALITY, "code": "R", "display": "restricted"}
    ]


def test_a_patient_with_only_a_family_name_still_validates():
    rendered = patient_to_fhir(patient(given="", phone=None, gender=None, birth_date=None))
    assert_valid(rendered)
    assert rendered["name"] == [{"family": "García"}]
    assert "telecom" not in rendered
    assert "gender" not in rendered
    assert "birthDate" not in rendered


def test_a_contained_resource_of_an_unknown_type_is_a_400_not_a_crash():
    body = {"resourceType": "Patient", "contained": [{"resourceType": "Nope", "id": "a"}]}
    with pytest.raises(InvalidResource) as caught:
        parse_resource(body, "Patient")
    assert "unknown resourceType" in caught.value.message
