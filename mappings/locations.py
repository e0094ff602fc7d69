"""Where an error points: a refusal's location as a FHIRPath `expression`, composed once.

The store names domain fields (`booking.slot`, `session.capacity`, `recurrence.count`):
a record noun and the field refused. The mappings and the FHIR layer name FHIRPaths
rooted at a resource type (`Appointment.start`, `Parameters.parameter[3].name`).
`expression_of` turns either into the expression the client reads, rooted where the
resource sits in the request: the request body itself (`Appointment.slot`), a Bundle
entry (`Bundle.entry[2].resource.slot`) or an operation parameter
(`Parameters.parameter[timing].valueTiming.repeat.count`). The code that knows where a
resource sits says so once, with `located`; nothing rewrites an error's own location.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

#: The FHIR resource (or data type) each store noun is rendered as.
NOUNS = {
    "booking": "Appointment",
    "session": "Slot",
    "schedule": "Schedule",
    "patient": "Patient",
    "coverage": "Coverage",
    "department": "Location",
    "provider": "Practitioner",
    "provider_group": "Organization",
    "series": "Parameters",
    "recurrence": "Timing",
}
#: Fields whose FHIR element has another name; the others keep theirs.
ELEMENTS = {
    "booking.coverage": "supportingInformation",
    "booking.series": "extension",
    "session.capacity": "extension",
    "schedule.planning_horizon": "planningHorizon",
    "patient.restricted": "meta.security",
    "patient.family": "name",
    "coverage.period_end": "period.end",
    "department.timezone": "extension",
    "department.provider_group": "managingOrganization",
    "provider_group.kind": "type",
    "series.patient": "parameter[patient]",
    "series.practitioner": "parameter[practitioner]",
    "series.schedule": "parameter[schedule]",
    "series.location": "parameter[location]",
    "series.kept": "parameter[appointment-resource]",
    "recurrence": "repeat",
    "recurrence.count": "repeat.count",
    "recurrence.end": "repeat.boundsPeriod.end",
    "recurrence.period": "repeat.period",
    "recurrence.period_unit": "repeat.periodUnit",
    "recurrence.day_of_week": "repeat.dayOfWeek",
    "recurrence.day_of_month": "repeat.dayOfMonth",
    "recurrence.time_of_day": "repeat.timeOfDay",
    "recurrence.duration": "repeat.duration",
}
_SSN = "patient.ssn"  # patient.ssn[i]: the i-th identifier's value


def fhir_path(domain_field: str) -> str:
    """The FHIRPath of a store field, rooted at its resource type: `booking.slot` is
    `Appointment.slot`, `booking.coverage[1]` `Appointment.supportingInformation[1]`,
    `patient.ssn[1]` `Patient.identifier[1].value`."""
    base, bracket, index = domain_field.partition("[")
    noun, _, rest = base.partition(".")
    resource_type = NOUNS.get(noun)
    if resource_type is None:  # not a store field: say it as it is rather than fail
        return domain_field
    if base == _SSN:
        return f"{resource_type}.identifier{bracket}{index}.value"
    element = ELEMENTS.get(base, rest) + bracket + index
    return f"{resource_type}.{element}" if element else resource_type


@dataclass(frozen=True)
class Where:
    """Where the resources of one request sit: each resource type's root in it, the
    label that names the part in messages, and the location of a refusal naming none."""

    roots: Mapping[str, str] = field(default_factory=dict)
    label: str | None = None  # e.g. "entry 2"
    fallback: str | None = None  # e.g. "Bundle.entry[2]"


#: The attribute `located` sets on an error: the innermost context wins.
_WHERE = "where"


@contextmanager
def located(where: Where) -> Iterator[None]:
    """Say where the resources of the code inside sit, for any error it raises."""
    try:
        yield
    except Exception as exc:
        if getattr(exc, _WHERE, None) is None:
            setattr(exc, _WHERE, where)
        raise


def where_of(exc: BaseException) -> Where:
    found = getattr(exc, _WHERE, None)
    return found if isinstance(found, Where) else Where()


def rooted(expression: str | None, where: Where) -> str | None:
    """A FHIRPath rooted at a resource type, re-rooted where that resource sits."""
    if expression is None:
        return where.fallback
    head, dot, rest = expression.partition(".")
    root = where.roots.get(head.split("[", 1)[0])
    if root is None:
        return expression
    return f"{root}{dot}{rest}"


def labelled(message: str, where: Where) -> str:
    return f"{where.label}: {message}" if where.label else message
