"""An Appointment is rendered from the values its record holds, read in one call
(`mappings.appointment._values`: the ORM keeps what it loaded in the instance's dict).
A record whose values are not all there (expired after a change, a collection never
read) is rendered through the ORM, which loads them: the same Appointment, as the
database holds it now."""

from __future__ import annotations

from sqlalchemy import update

from mappings.appointment import appointment_to_fhir
from store.access import PRIVACY_OFFICER
from store.booking import BookingRequest, book_patient
from store.models import Booking
from tests.factories import make_clinic, make_patient, make_session


def _booked(database) -> str:
    def build(db) -> str:
        clinic = make_clinic(db)
        session = make_session(db, clinic)
        patient = make_patient(db)
        request = BookingRequest(patient_id=patient.id, session_id=session.id, comment="first")
        return book_patient(db, request, PRIVACY_OFFICER).booking.id

    return database.write(build)


def test_a_booking_not_fully_loaded_renders_as_one_fully_loaded(database):
    ident = _booked(database)

    def render(db):
        booking = db.get(Booking, ident)
        assert booking.providers and booking.coverages  # loaded: read from the dict
        whole = appointment_to_fhir(booking)
        db.expire(booking, ["comment", "providers"])
        partly = appointment_to_fhir(booking)
        db.expire(booking)
        expired = appointment_to_fhir(booking)
        return whole, partly, expired

    whole, partly, expired = database.write(render)
    assert whole == partly == expired
    assert whole["comment"] == "first"
    assert [p["actor"]["reference"].split("/")[0] for p in whole["participant"]] == [
        "Patient",
        "Practitioner",
        "Location",
    ]


def test_a_value_changed_in_the_database_is_rendered_once_its_record_is_expired(database):
    ident = _booked(database)

    def render(db):
        booking = db.get(Booking, ident)
        before = appointment_to_fhir(booking)
        db.execute(update(Booking).where(Booking.id == ident).values(comment="second"))
        db.expire(booking, ["comment"])
        return before, appointment_to_fhir(booking)

    before, after = database.write(render)
    assert (before["comment"], after["comment"]) == ("first", "second")
