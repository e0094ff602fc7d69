"""Reading a request body (fhir_facade.http.parse_json): one unambiguous JSON document.

A key named twice in one object is refused wherever it is, whatever the text's layout;
text exactly as orjson writes the body back (compact JSON) is known to name none
without the stdlib's second pass, which every other text still gets."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest

from fhir_facade import http
from fhir_facade.http import parse_json
from fhir_facade.outcomes import BadRequest

BOOKING: dict[str, Any] = {
    "resourceType": "Appointment",
    "status": "booked",
    "slot": [{"reference": "Slot/s1"}],
    "participant": [
        {"actor": {"reference": "Patient/p1"}, "status": "accepted"},
        {"actor": {"reference": "Practitioner/d1"}, "status": "accepted"},
    ],
}
COMPACT = orjson.dumps(BOOKING)
PRETTY = json.dumps(BOOKING, indent=2).encode()


@pytest.mark.parametrize(
    "raw",
    [
        COMPACT.replace(b'"status":"booked"', b'"status":"booked","status":"proposed"'),
        COMPACT.replace(b'"reference":"Patient/p1"', b'"reference":"Patient/p1","reference":"x"'),
        PRETTY.replace(b'"status": "booked"', b'"status": "booked", "status": "proposed"'),
        # The same text but one space: not orjson's own, so read by the second pass.
        COMPACT.replace(b'{"actor"', b'{ "actor":{},"actor"', 1),
    ],
    ids=["compact, top level", "compact, deep", "indented", "compact but one space"],
)
def test_a_key_named_twice_in_one_object_is_refused(raw: bytes) -> None:
    with pytest.raises(BadRequest, match="appears twice in one object"):
        parse_json(raw)


def test_a_key_named_once_in_each_of_many_objects_is_read() -> None:
    assert parse_json(COMPACT) == BOOKING
    assert parse_json(PRETTY) == BOOKING


def test_compact_text_needs_no_second_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    passes: list[bytes] = []
    loads = json.loads

    def stdlib_loads(raw: bytes, **options: Any) -> Any:
        passes.append(raw)
        return loads(raw, **options)

    monkeypatch.setattr(http.json, "loads", stdlib_loads)
    assert parse_json(COMPACT) == BOOKING
    assert passes == []
    assert parse_json(PRETTY) == BOOKING
    assert passes == [PRETTY]
