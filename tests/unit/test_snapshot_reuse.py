"""A version snapshot reuses the rendering the request made of that very version only."""

from __future__ import annotations

import datetime as dt

import orjson
from flask import Flask

from fhir_facade.registry import rendered, snapshot
from mappings.appointment import appointment_to_fhir
from store.models import Booking

START = dt.datetime(2027, 1, 4, 15, 0, tzinfo=dt.UTC)


def _booking() -> Booking:
    return Booking(
        id="b1",
        patient_id="pat-1",
        status="booked",
        version=1,
        last_updated=START,
        created=START,
        providers=[],
        identifiers=[],
        coverages=[],
    )


def test_a_rendering_of_the_same_version_is_reused_once() -> None:
    booking = _booking()
    with Flask(__name__).app_context():
        rendered(booking, {"resourceType": "Appointment", "id": "as answered"})
        assert orjson.loads(snapshot(booking))["id"] == "as answered"
        assert orjson.loads(snapshot(booking)) == appointment_to_fhir(booking)  # used up


def test_a_rendering_of_an_older_version_is_not_reused() -> None:
    booking = _booking()
    with Flask(__name__).app_context():
        rendered(booking, {"resourceType": "Appointment", "id": "as answered"})
        booking.touch()
        assert orjson.loads(snapshot(booking)) == appointment_to_fhir(booking)


def test_outside_a_request_the_record_is_rendered() -> None:
    booking = _booking()
    rendered(booking, {"resourceType": "Appointment", "id": "as answered"})
    assert orjson.loads(snapshot(booking)) == appointment_to_fhir(booking)
