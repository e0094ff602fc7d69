"""Every error becomes its HTTP status and a valid OperationOutcome (DESIGN §6)."""

from __future__ import annotations

import pytest
from werkzeug.exceptions import NotFound as HttpNotFound
from werkzeug.exceptions import RequestEntityTooLarge, UnsupportedMediaType

from fhir_facade import outcomes
from fhir_facade.outcomes import AuthError, describe
from mappings.errors import InvalidResource, InvalidSearch, Unprocessable
from store import errors
from tests.validation import assert_valid


def outcome_of(exc: BaseException) -> tuple[int, dict]:
    status, outcome = describe(exc)
    assert_valid(outcome)
    return status, outcome


def only_issue(outcome: dict) -> dict:
    (issue,) = outcome["issue"]
    return issue


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (errors.NotFound("Slot", "s-1"), 404, "not-found"),
        (errors.SessionFull("s-1"), 409, "conflict"),
        (errors.SessionUnavailable("s-1"), 409, "conflict"),
        (errors.AlreadyBooked("s-1"), 409, "duplicate"),
        (errors.DuplicateIdentifier("identifier taken"), 409, "duplicate"),
        (errors.VersionMismatch("Slot", "s-1", 1, 2), 412, "conflict"),
        (errors.CapacityBelowBooked(2, 3), 422, "business-rule"),
        (errors.RuleViolation("end must be after start"), 422, "business-rule"),
        (Unprocessable("a booking needs a Patient participant"), 422, "processing"),
        (InvalidResource("unknown element"), 400, "structure"),
        (InvalidSearch("unknown search parameter"), 400, "invalid"),
        (AuthError("a bearer token is required"), 401, "login"),
        (errors.PermissionRequired("needs user/Slot.c"), 403, "forbidden"),
    ],
)
def test_each_error_maps_to_its_status_and_issue_code(error, status, code):
    got, outcome = outcome_of(error)
    assert got == status
    issue = only_issue(outcome)
    assert (issue["severity"], issue["code"]) == ("error", code)
    assert issue["details"]["text"]


def test_a_generic_store_conflict_is_409():
    # StoreError's tree puts Conflict itself under "collides with the current state".
    status, outcome = outcome_of(errors.Conflict("the schedule was changed meanwhile"))
    assert status == 409
    assert only_issue(outcome)["code"] == "conflict"


@pytest.mark.parametrize(
    ("error", "detail"),
    [
        (errors.SessionFull("s-1"), "session-full"),
        (errors.AlreadyBooked("s-1"), "already-booked"),
        (errors.VersionMismatch("Slot", "s-1", 1, 2), "version-mismatch"),
        (errors.CapacityBelowBooked(2, 3), "capacity-below-booked"),
    ],
)
def test_specific_refusals_carry_a_stable_detail_code(error, detail):
    _, outcome = outcome_of(error)
    (coding,) = only_issue(outcome)["details"]["coding"]
    assert coding["code"] == detail


@pytest.mark.parametrize(
    ("error", "expression"),
    [
        (errors.SessionFull("s-1", field="booking.slot"), "Appointment.slot"),
        (errors.NotFound("Patient", "p-1", field="booking.participant"), "Appointment.participant"),
        (errors.RuleViolation("end must be after start", field="session.end"), "Slot.end"),
        (errors.RuleViolation("too few", field="session.capacity"), "Slot.extension"),
        (errors.RuleViolation("bad", field="recurrence.count"), "Timing.repeat.count"),
    ],
)
def test_a_store_error_with_a_field_points_at_its_fhir_element(error, expression):
    _, outcome = outcome_of(error)
    assert only_issue(outcome)["expression"] == [expression]


@pytest.mark.parametrize(
    "error",
    [
        InvalidResource("unknown element", expression="Appointment.seat"),
        InvalidSearch("unknown parameter", expression="colour"),
        Unprocessable("two patients", expression="Appointment.participant[1].actor"),
    ],
)
def test_a_mapping_error_points_at_its_expression(error):
    _, outcome = outcome_of(error)
    assert only_issue(outcome)["expression"] == [error.expression]


def test_an_error_without_a_field_has_no_expression():
    _, outcome = outcome_of(errors.SessionFull("s-1"))
    assert "expression" not in only_issue(outcome)


def test_not_found_names_the_resource_without_leaking_why():
    _, outcome = outcome_of(errors.NotFound("Patient", "p-1"))
    assert only_issue(outcome)["details"]["text"] == "Patient/p-1 is not known"


def test_an_unknown_exception_is_a_bland_500():
    status, outcome = outcome_of(RuntimeError("password=hunter2 at db.internal:5432"))
    assert status == 500
    issue = only_issue(outcome)
    assert (issue["severity"], issue["code"]) == ("fatal", "exception")
    assert "hunter2" not in str(outcome)
    assert "db.internal" not in str(outcome)


def test_a_named_fhir_error_takes_its_status_from_the_table_and_keeps_its_expression():
    status, outcome = outcome_of(outcomes.UnsupportedMediaType("send JSON", expression="body"))
    assert status == 415
    assert only_issue(outcome)["code"] == "not-supported"
    assert only_issue(outcome)["expression"] == ["body"]


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (HttpNotFound(), 404, "not-found"),
        (RequestEntityTooLarge(), 413, "too-long"),
        (UnsupportedMediaType(), 415, "not-supported"),
    ],
)
def test_http_errors_become_operation_outcomes(error, status, code):
    got, outcome = outcome_of(error)
    assert got == status
    assert only_issue(outcome)["code"] == code


def test_control_characters_a_client_sent_are_escaped_and_no_odd_expression_is_echoed():
    # An unknown parameter's name is echoed in the text; FHIR strings may not hold
    # control characters, and an expression must be a FHIRPath, not client bytes.
    refusal = InvalidSearch("unknown parameter 'na\x01me\x7f'", expression="na\x01me")
    status, outcome = outcome_of(refusal)
    assert status == 400
    issue = only_issue(outcome)
    assert issue["details"]["text"] == "unknown parameter 'na\\x01me\\x7f'"
    assert "expression" not in issue
