"""The package's OperationDefinitions: $find, $book and $cancel-series on Appointment."""

from __future__ import annotations

from conformance.package.artifacts.common import BASE, JSON, canonical, tail
from fhir_facade.registry import RESOURCE_TYPES

# -- OperationDefinitions ------------------------------------------------------------


def _parameter(
    name: str,
    use: str,
    minimum: int,
    maximum: str,
    kind: str,
    documentation: str,
    target: str | None = None,
) -> JSON:
    parameter: JSON = {"name": name, "use": use, "min": minimum, "max": maximum}
    parameter["documentation"] = documentation
    parameter["type"] = kind
    if target:
        parameter["targetProfile"] = [f"{BASE}/{target}"]
    return parameter


def _operation(op: str, name: str, title: str, affects_state: bool) -> JSON:
    (operation,) = [o for o in RESOURCE_TYPES["Appointment"].operations if o.code == op]
    url = operation.definition("Appointment")
    od = canonical("OperationDefinition", tail(url), url, name, title)
    od.update(
        {
            "kind": "operation",
            "description": operation.documentation,
            "affectsState": affects_state,
            "code": op,
            "resource": ["Appointment"],
            "system": False,
            "type": not operation.instance,
            "instance": operation.instance,
        }
    )
    return od


def find_operation() -> JSON:
    od = _operation("find", "AppointmentFind", "Preview a recurring series", False)
    od["parameter"] = [
        _parameter("patient", "in", 1, "1", "Reference", "The patient to book.", "Patient"),
        _parameter(
            "practitioner",
            "in",
            0,
            "1",
            "Reference",
            "The provider whose group sessions to match. Give practitioner or schedule.",
            "Practitioner",
        ),
        _parameter(
            "schedule",
            "in",
            0,
            "1",
            "Reference",
            "The provider schedule whose group sessions to match. Give practitioner or schedule.",
            "Schedule",
        ),
        _parameter(
            "location",
            "in",
            0,
            "1",
            "Reference",
            "The department (its time zone expands the series).",
            "Location",
        ),
        _parameter(
            "appointment-type",
            "in",
            0,
            "1",
            "CodeableConcept",
            "Only sessions of this appointment type match. Sent as valueCodeableConcept, "
            "valueCoding or valueCode.",
        ),
        _parameter(
            "timing",
            "in",
            1,
            "1",
            "Timing",
            "The recurrence: repeat.periodUnit d | wk | mo, period, frequency 1, dayOfWeek, one "
            "timeOfDay, duration (min | h), boundsPeriod.start and count or boundsPeriod.end; "
            "monthly series may carry recurrence-day-of-month or recurrence-week-of-month on "
            "repeat.",
        ),
        _parameter(
            "return",
            "out",
            1,
            "1",
            "Bundle",
            "A searchset: one proposed Appointment per occurrence (with its Slot, start and end "
            "when a session matches; requestedPeriod only when none does), each carrying "
            "recurrenceId and series-timing, then an OperationOutcome (search.mode outcome) "
            "naming the unmatched occurrences.",
        ),
    ]
    return od


def book_operation() -> JSON:
    od = _operation("book", "AppointmentBook", "Book a recurring series", True)
    od["parameter"] = [
        _parameter(
            "appointment-resource",
            "in",
            1,
            "*",
            "Appointment",
            "The proposals kept, as $find returned them (with recurrenceId and series-timing); "
            "or drafts to resolve (Appointments with an id, meta.versionId and the chosen slot).",
        ),
        _parameter(
            "coverage",
            "in",
            0,
            "2",
            "Reference",
            "The insurance for every occurrence, primary (or self-pay) first.",
            "Coverage",
        ),
        _parameter(
            "return",
            "out",
            1,
            "1",
            "Bundle",
            "A collection of the Appointments stored, in series order (booked ones and drafts), "
            "then an OperationOutcome with a summary and one warning per occurrence not booked.",
        ),
    ]
    return od


def cancel_series_operation() -> JSON:
    od = _operation("cancel-series", "AppointmentCancelSeries", "Cancel a series", True)
    od["parameter"] = [
        _parameter(
            "scope",
            "in",
            0,
            "1",
            "code",
            "this-and-following (the default): this occurrence and all later ones; all: the "
            "whole series.",
        ),
        _parameter("reason", "in", 0, "1", "string", "Why (Appointment.cancelationReason)."),
        _parameter(
            "return",
            "out",
            1,
            "1",
            "Bundle",
            "A collection of the Appointments cancelled, then an OperationOutcome.",
        ),
    ]
    return od


def definitions() -> list[JSON]:
    return [find_operation(), book_operation(), cancel_series_operation()]
