"""Where an error points (mappings.locations): store fields become FHIRPaths, rooted
where the resource sits in the request."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import store
from mappings.locations import NOUNS, Where, fhir_path, rooted


def _store_fields() -> set[str]:
    """Every string the store passes as `field=`, or keeps in a FIELD constant."""
    found: set[str] = set()
    for path in Path(store.__path__[0]).glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            values: list[ast.expr] = []
            if isinstance(node, ast.Call):
                values = [k.value for k in node.keywords if k.arg == "field"]
            elif isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and "FIELD" in t.id for t in node.targets
            ):
                values = [node.value]
            for value in values:
                if isinstance(value, ast.Constant) and isinstance(value.value, str):
                    found.add(value.value)
                elif isinstance(value, ast.JoinedStr):
                    head = value.values[0]
                    if isinstance(head, ast.Constant) and isinstance(head.value, str):
                        found.add(head.value)
    return found


def test_every_field_the_store_names_belongs_to_a_record_noun_we_render():
    fields = _store_fields()
    assert len(fields) > 30
    assert {f.partition(".")[0].partition("[")[0] for f in fields} <= set(NOUNS)


@pytest.mark.parametrize(
    ("field", "path"),
    [
        ("booking.slot", "Appointment.slot"),
        ("booking.coverage", "Appointment.supportingInformation"),
        ("session.capacity", "Slot.extension"),
        ("patient.ssn[1]", "Patient.identifier[1].value"),
        ("series.kept", "Parameters.parameter[appointment-resource]"),
        ("recurrence.end", "Timing.repeat.boundsPeriod.end"),
        ("recurrence", "Timing.repeat"),
    ],
)
def test_a_store_field_is_its_fhir_element(field, path):
    assert fhir_path(field) == path


def test_a_path_is_rerooted_where_its_resource_sits_and_others_are_left_alone():
    entry = Where({"Appointment": "Bundle.entry[2].resource"}, "entry 2", "Bundle.entry[2]")
    assert rooted("Appointment.participant[0].actor", entry) == (
        "Bundle.entry[2].resource.participant[0].actor"
    )
    assert rooted("If-Match", entry) == "If-Match"
    assert rooted(None, entry) == "Bundle.entry[2]"
    assert rooted("Appointment.slot", Where()) == "Appointment.slot"
