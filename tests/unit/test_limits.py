"""The limits walk over a parsed body (mappings.limits.check_body): which elements it
holds to their columns' lengths, wherever a resource sits, and which it leaves alone."""

from __future__ import annotations

from typing import Any

import pytest

from mappings.errors import InvalidResource, TooLong
from mappings.limits import MAX_DEPTH, check_body

LONG = "x" * 101  # a Patient's family and given names are kept in 100 characters


def refused(body: Any) -> str | None:
    """The expression a refusal names, or None when the body passes."""
    try:
        check_body(body)
    except (TooLong, InvalidResource) as exc:
        return exc.expression
    return None


def patient(**elements: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", **elements}


@pytest.mark.parametrize(
    ("body", "expression"),
    [
        (patient(name=[{"family": "Okafor"}, {"family": LONG}]), "Patient.name[1].family"),
        # Given names are kept joined by spaces: two of 60 are 121 characters.
        (patient(name=[{"given": ["g" * 60, "h" * 60]}]), "Patient.name[0].given"),
        (
            patient(identifier=[{"system": "urn:a", "value": "v" * 300}]),
            "Patient.identifier[0].value",
        ),
        (
            {
                "resourceType": "Bundle",
                "entry": [{}, {"resource": patient(name=[{"family": LONG}])}],
            },
            "Bundle.entry[1].resource.name[0].family",
        ),
        (
            {
                "resourceType": "Parameters",
                "parameter": [
                    {
                        "name": "appointment-resource",
                        "resource": {
                            "resourceType": "Appointment",
                            "cancelationReason": {"text": LONG * 3},
                        },
                    }
                ],
            },
            "Parameters.parameter[0].resource.cancelationReason.text",
        ),
        # A contained resource is held to its own type's limits, not its container's.
        (
            {"resourceType": "Appointment", "contained": [patient(name=[{"family": LONG}])]},
            "Appointment.contained[0].name[0].family",
        ),
    ],
)
def test_an_element_longer_than_its_column_is_refused_where_it_sits(body, expression):
    assert refused(body) == expression


@pytest.mark.parametrize(
    "body",
    [
        patient(name=[{"family": "F" * 100, "given": ["g" * 49, "h" * 50]}]),
        # The same names elsewhere are not kept in those columns.
        {"resourceType": "Parameters", "parameter": [{"name": "family", "valueString": LONG}]},
        {"resourceType": "Appointment", "comment": LONG * 10, "name": [{"family": LONG}]},
        {
            "resourceType": "Bundle",
            "entry": [{"resource": {"resourceType": "Basic", "family": LONG}}],
        },
        patient(contact=[{"name": {"family": LONG}}]),
    ],
)
def test_elements_within_their_columns_or_kept_only_in_the_document_pass(body):
    assert refused(body) is None


def test_nesting_deeper_than_the_limit_is_refused_and_up_to_it_passes():
    def nested(levels: int) -> dict[str, Any]:
        body: dict[str, Any] = {}
        for _ in range(levels):
            body = {"a": [body]}
        return patient(extension=[body])

    assert refused(nested(MAX_DEPTH // 2 - 2)) is None
    assert refused(nested(MAX_DEPTH // 2 + 1)) == "Patient"
