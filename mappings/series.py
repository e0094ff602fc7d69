"""The recurring-series operations: `Appointment/$find` and `Appointment/$book` (DESIGN §5).

$find takes Parameters: `patient`, `practitioner` and/or `schedule` (and optionally
`location`), optional `appointment-type`, and `timing` (R4 Timing, see
mappings.timing). It answers with a searchset Bundle of proposed Appointments, one
per occurrence in order, each carrying its `recurrenceId` and the normalised
`series-timing`: matched ones the Slot and its start/end, unmatched ones only
`requestedPeriod`. A last entry (search.mode = outcome) is an OperationOutcome with
one warning per unmatched occurrence, DST problem or closed session; each names its
Appointment entry in `expression`.

$book takes one or more `appointment-resource` (the proposals kept, as $find
returned them) and up to two `coverage` references (primary first, applied to every
occurrence). Proposals that carry an `id` are drafts to resolve ("Use this slot")
instead. It answers with a collection Bundle of the Appointments stored, in series
order, followed by an OperationOutcome.

Refusals name the parameter as `Parameters.parameter[<name>]...`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import orjson
from fhir.resources.R4B.appointment import Appointment as AppointmentModel
from fhir.resources.R4B.extension import Extension
from fhir.resources.R4B.parameters import Parameters
from fhir.resources.R4B.period import Period
from fhir.resources.R4B.reference import Reference
from fhir.resources.R4B.timing import Timing
from pydantic import BaseModel, TypeAdapter, ValidationError

from mappings.appointment import appointment_from_fhir, appointment_to_fhir
from mappings.codes import APPOINTMENT_TYPES, concept_code
from mappings.common import JSON, aware, codeable, instant, parse_reference
from mappings.errors import InvalidResource, MappingError, Unprocessable
from mappings.locations import Where, located
from mappings.outcome import information, operation_outcome, warning
from mappings.timing import (
    EXT_RECURRENCE_ID,
    EXT_SERIES_TIMING,
    recurrence_to_timing,
    timing_to_recurrence,
)
from store.booking import BookingRequest, Notice
from store.errors import RuleViolation
from store.matching import Proposal
from store.models import Booking
from store.recurrence import Recurrence
from store.series import KeptOccurrence, SeriesBooking, SeriesPreview, SeriesQuery

FIND_TIMING = "Parameters.parameter[timing].valueTiming"
BOOK_TIMING = "Parameters.parameter[appointment-resource].resource.extension.valueTiming"

_FIND_PARAMETERS = {
    "patient": "valueReference",
    "practitioner": "valueReference",
    "schedule": "valueReference",
    "location": "valueReference",
    "appointment-type": "value[x]",
    "timing": "valueTiming",
}
_BOOK_PARAMETERS = {"appointment-resource": "resource", "coverage": "valueReference"}


@dataclass(frozen=True)
class DraftChoice:
    """A draft to resolve through $book: its id, the chosen state, the If-Match version."""

    booking_id: str
    request: BookingRequest
    expected_version: int | None = None  # the resource's meta.versionId, as If-Match


# --- $find ---------------------------------------------------------------------------------


def find_from_fhir(body: Any) -> SeriesQuery:
    """Read the Parameters of `Appointment/$find`."""
    parameters = _parse_parameters(body, _FIND_PARAMETERS)
    patient = _reference(parameters, "patient", "Patient", required=True)
    practitioner = _reference(parameters, "practitioner", "Practitioner")
    schedule = _reference(parameters, "schedule", "Schedule")
    location = _reference(parameters, "location", "Location")
    if practitioner is None and schedule is None:
        raise Unprocessable(
            "give the provider: a practitioner or a schedule parameter",
            expression="Parameters.parameter[practitioner]",
        )
    timing = _one(parameters, "timing", required=True)
    assert timing is not None
    if timing.valueTiming is None:
        raise InvalidResource("timing needs valueTiming", expression="Parameters.parameter[timing]")
    assert patient is not None
    return SeriesQuery(
        patient_id=patient,
        recurrence=timing_to_recurrence(timing.valueTiming, FIND_TIMING),
        provider_id=practitioner,
        schedule_id=schedule,
        department_id=location,
        appointment_type=_appointment_type(_one(parameters, "appointment-type")),
    )


def preview_to_fhir(preview: SeriesPreview) -> JSON:
    """The searchset Bundle answering $find: proposals in order, then the OperationOutcome."""
    timing = recurrence_to_timing(preview.recurrence)
    entries: list[JSON] = []
    issues: list[JSON] = []
    for index, proposal in enumerate(preview.proposals):
        entries.append(
            {
                "resource": proposal_to_fhir(preview.patient_id, proposal, timing),
                "search": {"mode": "match"},
            }
        )
        issues.extend(
            warning(n.text, n.code, f"Bundle.entry[{index}].resource") for n in proposal.notices
        )
    matched = sum(1 for p in preview.proposals if p.matched)
    summary = (
        f"{len(preview.proposals)} occurrences in {preview.recurrence.timezone}: {matched} "
        f"with a session, {len(preview.proposals) - matched} without (they would be drafts)"
    )
    issues.insert(0, information(summary))
    entries.append({"resource": operation_outcome(*issues), "search": {"mode": "outcome"}})
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(preview.proposals),
        "entry": entries,
    }


def proposal_to_fhir(patient_id: str, proposal: Proposal, timing: JSON) -> JSON:
    """One proposed occurrence: with its Slot and exact times, or only the requested time."""
    occurrence = proposal.occurrence
    resource: JSON = {
        "resourceType": "Appointment",
        "extension": [
            {"url": EXT_RECURRENCE_ID, "valuePositiveInt": occurrence.recurrence_id},
            {"url": EXT_SERIES_TIMING, "valueTiming": timing},
        ],
        "status": "proposed",
    }
    if proposal.appointment_type and (kind := APPOINTMENT_TYPES.get(proposal.appointment_type)):
        resource["appointmentType"] = codeable(kind.as_fhir())
    if proposal.session is not None:
        resource["start"] = instant(proposal.session.start)
        resource["end"] = instant(proposal.session.end)
        resource["slot"] = [{"reference": f"Slot/{proposal.session.id}"}]
    elif occurrence.start is not None and occurrence.end is not None:
        resource["requestedPeriod"] = [
            {"start": instant(occurrence.start), "end": instant(occurrence.end)}
        ]
    participants: list[JSON] = [
        {"actor": {"reference": f"Patient/{patient_id}"}, "status": "needs-action"}
    ]
    participants.extend(
        {"actor": {"reference": f"Practitioner/{p}"}, "status": "accepted"}
        for p in proposal.provider_ids
    )
    if proposal.department_id:
        participants.append(
            {"actor": {"reference": f"Location/{proposal.department_id}"}, "status": "accepted"}
        )
    resource["participant"] = participants
    return resource


# --- $book ---------------------------------------------------------------------------------


def book_from_fhir(body: Any) -> SeriesBooking | list[DraftChoice]:
    """Read the Parameters of `Appointment/$book`: a new series, or drafts to resolve."""
    parameters = _parse_parameters(body, _BOOK_PARAMETERS)
    coverage_ids = tuple(
        parse_reference(
            p.valueReference.reference if p.valueReference else None,
            ("Coverage",),
            f"Parameters.parameter[coverage][{i}]",
        )[1]
        for i, p in enumerate(parameters.get("coverage", []))
    )
    kept = parameters.get("appointment-resource", [])
    if not kept:
        raise Unprocessable(
            "give at least one appointment-resource (a proposal from $find, or a draft)",
            expression="Parameters.parameter[appointment-resource]",
        )
    resources = [_kept_resource(p, i) for i, p in enumerate(kept)]
    with_id = [r for r in resources if r.get("id")]
    if with_id and len(with_id) != len(resources):
        raise Unprocessable(
            "either resolve drafts (appointments with an id) or book a new series "
            "(proposals without one), not both at once",
            expression="Parameters.parameter[appointment-resource]",
        )
    if with_id:
        return [_draft_choice(r, i, coverage_ids) for i, r in enumerate(resources)]
    return _series_booking(resources, coverage_ids)


def bookings_to_fhir(
    base: str, bookings: list[Booking], notices: list[Notice], summary: str
) -> JSON:
    """A collection Bundle of the stored Appointments, then an OperationOutcome."""
    entries: list[JSON] = [
        {"fullUrl": f"{base}/Appointment/{b.id}", "resource": appointment_to_fhir(b)}
        for b in bookings
    ]
    issues = [information(summary)]
    issues.extend(warning(notice.text, notice.code) for notice in notices)
    entries.append({"resource": operation_outcome(*issues)})
    return {"resourceType": "Bundle", "type": "collection", "entry": entries}


def _series_booking(resources: list[JSON], coverage_ids: tuple[str, ...]) -> SeriesBooking:
    timing_json: JSON | None = None
    kept: list[KeptOccurrence] = []
    reader = _KeptReader()
    for index, resource in enumerate(resources):
        at = f"Parameters.parameter[appointment-resource][{index}].resource"
        request = reader.read(resource, at)
        recurrence_id, timing = _series_extensions(resource, at)
        if timing_json is None:
            timing_json = timing
        elif timing != timing_json:
            raise Unprocessable(
                "all kept proposals must come from the same preview (same series-timing)",
                expression=f"{at}.extension",
            )
        kept.append(KeptOccurrence(recurrence_id, request))
    assert timing_json is not None
    return SeriesBooking(
        recurrence=_recurrence(timing_json),
        kept=tuple(kept),
        coverage_ids=coverage_ids,
    )


def _recurrence(timing: JSON) -> Recurrence:
    try:
        model = Timing.model_validate(timing)
    except ValidationError as exc:
        raise InvalidResource(
            f"series-timing is not a valid Timing: {exc.errors()[0].get('msg')}",
            expression=BOOK_TIMING,
        ) from None
    return timing_to_recurrence(model, BOOK_TIMING)


def _series_extensions(resource: JSON, at: str) -> tuple[int, JSON]:
    recurrence_id: int | None = None
    timing: JSON | None = None
    for extension in resource.get("extension", []):
        if extension.get("url") == EXT_RECURRENCE_ID:
            recurrence_id = extension.get("valuePositiveInt")
        elif extension.get("url") == EXT_SERIES_TIMING:
            timing = extension.get("valueTiming")
    if not isinstance(recurrence_id, int) or timing is None:
        raise Unprocessable(
            "a kept proposal carries its recurrenceId and series-timing extensions, as $find "
            "returned it",
            expression=f"{at}.extension",
        )
    return recurrence_id, timing


def _draft_choice(resource: JSON, index: int, coverage_ids: tuple[str, ...]) -> DraftChoice:
    request = _appointment(
        resource, f"Parameters.parameter[appointment-resource][{index}].resource"
    )
    if request.session_id is None:
        raise Unprocessable(
            "to resolve a draft, give the chosen slot",
            expression=f"Parameters.parameter[appointment-resource][{index}].resource.slot",
        )
    if coverage_ids:
        request = replace(request, coverage_ids=coverage_ids)
    version = resource.get("meta", {}).get("versionId")
    return DraftChoice(str(resource["id"]), request, int(version) if version else None)


def _appointment(resource: JSON, at: str) -> BookingRequest:
    """A kept Appointment read by its own mapping; a refusal points into the Parameters."""
    with located(Where({"Appointment": at})):
        return appointment_from_fhir(resource)


class _KeptReader:
    """Reads the kept proposals of one series, validating each shape of them once.

    $find's proposals share one shape and differ only in their times, their Slot and
    their recurrenceId. The first proposal of a shape is validated in full by the R4B
    model; a later one equal to it (as JSON) everywhere else has only those values
    validated, by the R4B model's own types for them (instant, string, positiveInt,
    dateTime), and read as `appointment_from_fhir` reads them. Any other proposal, and
    any value refused, goes through the full validation, which names the refusal: what
    the model would refuse never gets past here, and is refused in the same words.
    """

    def __init__(self) -> None:
        self._read: dict[bytes, BookingRequest] = {}

    def read(self, resource: JSON, at: str) -> BookingRequest:
        shape = _shape(resource)
        if shape is None:
            return _appointment(resource, at)
        skeleton, values = shape
        template = self._read.get(skeleton)
        if template is not None and (request := _with_values(template, values)):
            return request
        request = _appointment(resource, at)
        self._read.setdefault(skeleton, request)
        return request


@dataclass(frozen=True)
class _Values:
    """Where a proposal differs from the others of its shape."""

    start: str
    end: str
    slot: str | None  # None: a draft, its times in requestedPeriod[0]
    recurrence_id: int


def _field_type(model: type[BaseModel], name: str) -> TypeAdapter[Any]:
    annotation: Any = model.model_fields[name].annotation
    return TypeAdapter(annotation)


#: The R4B model's own types for the values that differ (Appointment.start and .end are
#: instants, Reference.reference a string, Period.start and .end dateTimes).
_INSTANT = _field_type(AppointmentModel, "start")
_STRING = _field_type(Reference, "reference")
_DATETIME = _field_type(Period, "start")
_POSITIVE_INT = _field_type(Extension, "valuePositiveInt")
_VARIES = ""  # stands in the skeleton for a value that differs


def _shape(resource: JSON) -> tuple[bytes, _Values] | None:
    """A proposal as $find makes it, split into the JSON of what it shares with the others
    of its shape and the values that differ; None for any other Appointment."""
    extensions = resource.get("extension")
    if not isinstance(extensions, list):
        return None
    found = [
        i
        for i, e in enumerate(extensions)
        if isinstance(e, dict) and e.get("url") == EXT_RECURRENCE_ID
    ]
    if len(found) != 1 or extensions[found[0]].keys() != {"url", "valuePositiveInt"}:
        return None
    recurrence_id = extensions[found[0]]["valuePositiveInt"]
    marked = list(extensions)
    marked[found[0]] = {"url": EXT_RECURRENCE_ID, "valuePositiveInt": 0}
    skeleton: JSON = resource | {"extension": marked}
    slot = resource.get("slot")
    period = resource.get("requestedPeriod")
    if slot is not None and period is None:
        if not (
            isinstance(slot, list)
            and len(slot) == 1
            and isinstance(slot[0], dict)
            and slot[0].keys() == {"reference"}
        ):
            return None
        given: tuple[Any, ...] = (resource.get("start"), resource.get("end"), slot[0]["reference"])
        skeleton |= {"start": _VARIES, "end": _VARIES, "slot": [{"reference": _VARIES}]}
    elif period is not None and slot is None and "start" not in resource and "end" not in resource:
        if not (
            isinstance(period, list)
            and len(period) == 1
            and isinstance(period[0], dict)
            and period[0].keys() == {"start", "end"}
        ):
            return None
        given = (period[0]["start"], period[0]["end"])
        skeleton |= {"requestedPeriod": [{"start": _VARIES, "end": _VARIES}]}
    else:
        return None
    if any(type(v) is not str for v in given) or type(recurrence_id) is not int:
        return None
    try:
        text = orjson.dumps(skeleton)
    except orjson.JSONEncodeError:
        return None
    return text, _Values(given[0], given[1], given[2] if len(given) == 3 else None, recurrence_id)


def _with_values(template: BookingRequest, values: _Values) -> BookingRequest | None:
    """The request of a proposal shaped as `template`'s, from its own values; None when a
    value is refused (the full validation then says why, and where)."""
    try:
        _POSITIVE_INT.validate_python(values.recurrence_id)
        if values.slot is not None:
            _STRING.validate_python(values.slot)
            session_id = parse_reference(values.slot, ("Slot",), "Appointment.slot[0]")[1]
            start = aware(_INSTANT.validate_python(values.start), "Appointment.start")
            end = aware(_INSTANT.validate_python(values.end), "Appointment.end")
        else:
            session_id = None
            at_period = "Appointment.requestedPeriod[0]"
            start = aware(_DATETIME.validate_python(values.start), f"{at_period}.start")
            end = aware(_DATETIME.validate_python(values.end), f"{at_period}.end")
        return replace(template, session_id=session_id, start=start, end=end)
    except (ValidationError, MappingError, RuleViolation):
        return None


def _kept_resource(resource: Any, index: int) -> JSON:
    """A parameter's resource, as sent: `appointment_from_fhir` validates it, once."""
    at = f"Parameters.parameter[appointment-resource][{index}].resource"
    if not isinstance(resource, dict):
        raise InvalidResource("give the Appointment as resource", expression=at)
    if resource.get("resourceType") != "Appointment":
        raise InvalidResource("expected an Appointment", expression=f"{at}.resourceType")
    return resource


# --- Parameters ----------------------------------------------------------------------------


def _parse_parameters(body: Any, allowed: dict[str, str]) -> dict[str, list[Any]]:
    """Validate a Parameters body (R4B) and group its parameters by name.

    A parameter that carries a resource is given as that resource's JSON, left for
    its own mapping to validate: validating a year of Appointments twice (inside the
    Parameters model, then on their own) was most of `$book`'s time. Parameters that
    are equal (as JSON, without their resource: 156 times `appointment-resource`) are
    validated once; a refusal names the first of them, as it would without that.
    """
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        raise InvalidResource("the body must be a Parameters resource", expression="resourceType")
    given = body.get("parameter")
    resources: list[Any] = []
    distinct: list[int] = []  # per parameter, the index of its first equal among the given
    if isinstance(given, list):
        resources = [p.get("resource") if isinstance(p, dict) else None for p in given]
        stripped = [
            {k: v for k, v in p.items() if k != "resource"} if isinstance(p, dict) else p
            for p in given
        ]
        body = body | {"parameter": stripped}
        distinct = _first_equals(stripped)
        validated = body | {"parameter": [p for i, p in enumerate(stripped) if distinct[i] == i]}
    else:
        validated = body
    try:
        model: Any = Parameters.model_validate(validated)
    except ValidationError as exc:
        error = sorted(exc.errors(), key=lambda e: e.get("type") != "extra_forbidden")[0]
        loc = tuple(error.get("loc", ()))
        if len(loc) >= 2 and loc[0] == "parameter" and isinstance(loc[1], int) and distinct:
            loc = ("parameter", sorted(set(distinct))[loc[1]], *loc[2:])
        expression = _parameter_path(body, loc)
        message = "unknown element" if error.get("type") == "extra_forbidden" else error.get("msg")
        raise InvalidResource(f"{expression}: {message}", expression=expression) from None
    except (ValueError, TypeError) as exc:
        raise InvalidResource(str(exc), expression="Parameters") from None
    models = model.parameter or []
    if distinct:
        position = {first: n for n, first in enumerate(sorted(set(distinct)))}
        models = [models[position[first]] for first in distinct]
    grouped: dict[str, list[Any]] = {}
    for index, parameter in enumerate(models):
        if parameter.name not in allowed:
            raise InvalidResource(
                f"unknown parameter {parameter.name!r}; this operation takes {', '.join(allowed)}",
                expression=f"Parameters.parameter[{index}].name",
            )
        takes_resource = allowed[parameter.name] == "resource"
        resource = resources[index] if takes_resource and index < len(resources) else None
        grouped.setdefault(parameter.name, []).append(parameter if resource is None else resource)
    return grouped


def _first_equals(items: list[Any]) -> list[int]:
    """For each item, the index of the first item equal to it as JSON (its own if none)."""
    seen: dict[bytes, int] = {}
    firsts: list[int] = []
    for index, item in enumerate(items):
        try:
            key = orjson.dumps(item)
        except orjson.JSONEncodeError:
            firsts.append(index)
            continue
        firsts.append(seen.setdefault(key, index))
    return firsts


def _parameter_path(body: JSON, loc: tuple[Any, ...]) -> str:
    """FHIRPath-like path of a validation error, parameters named: parameter[timing]...."""
    path = "Parameters"
    parts = list(loc)
    if len(parts) >= 2 and parts[0] == "parameter" and isinstance(parts[1], int):
        raw = body.get("parameter") or []
        name = raw[parts[1]].get("name") if parts[1] < len(raw) else None
        path += f".parameter[{name or parts[1]}]"
        parts = parts[2:]
    for part in parts:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part != "__root__" and not str(part).startswith("function-"):
            path += f".{str(part).removesuffix('__ext')}"
    return path


def _one(parameters: dict[str, list[Any]], name: str, *, required: bool = False) -> Any:
    found = parameters.get(name, [])
    if len(found) > 1:
        raise Unprocessable(f"give {name} once", expression=f"Parameters.parameter[{name}]")
    if not found:
        if required:
            raise Unprocessable(
                f"the {name} parameter is required", expression=f"Parameters.parameter[{name}]"
            )
        return None
    return found[0]


def _reference(
    parameters: dict[str, list[Any]], name: str, kind: str, *, required: bool = False
) -> str | None:
    parameter = _one(parameters, name, required=required)
    if parameter is None:
        return None
    expression = f"Parameters.parameter[{name}].valueReference"
    reference = parameter.valueReference.reference if parameter.valueReference else None
    return parse_reference(reference, (kind,), expression)[1]


def _appointment_type(parameter: Any) -> str | None:
    if parameter is None:
        return None
    expression = "Parameters.parameter[appointment-type]"
    if parameter.valueCodeableConcept is not None:
        concept = parameter.valueCodeableConcept
    elif parameter.valueCoding is not None:
        concept = _Concept([parameter.valueCoding])
    elif parameter.valueCode is not None:
        concept = _Concept([_Code(None, parameter.valueCode)])
    else:
        raise InvalidResource(
            "give valueCoding, valueCodeableConcept or valueCode", expression=expression
        )
    return concept_code(concept, APPOINTMENT_TYPES, expression)


@dataclass(frozen=True)
class _Code:
    system: str | None
    code: str


@dataclass(frozen=True)
class _Concept:
    coding: list[Any]


# --- OperationOutcome ----------------------------------------------------------------------


def summary_of(bookings: list[Booking]) -> str:
    booked = sum(1 for b in bookings if b.session_id is not None)
    drafts = len(bookings) - booked
    return f"{booked} booked, {drafts} stored as drafts"
