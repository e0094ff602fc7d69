"""Helpers shared by the resource mappings: parsing input, formatting output."""

from __future__ import annotations

import datetime as dt
import importlib
import re
from collections.abc import Callable
from typing import Any

import orjson
from pydantic import BaseModel, ValidationError

from mappings.errors import InvalidResource, Unprocessable

JSON = dict[str, Any]

#: Every resource type we read or answer with: those served, then those the
#: interactions carry. The OpenAPI document has a schema for each.
FHIR_RESOURCES = (
    "Appointment",
    "Slot",
    "Schedule",
    "Patient",
    "Practitioner",
    "Location",
    "Organization",
    "Coverage",
    "AuditEvent",
    "Bundle",
    "OperationOutcome",
    "Parameters",
    "CapabilityStatement",
    "Subscription",
)


def r4b_model(resource_type: str) -> type[BaseModel]:
    """The fhir.resources R4B model class (R4B equals R4 for the resources we serve)."""
    if resource_type not in FHIR_RESOURCES:
        raise KeyError(resource_type)
    module = importlib.import_module(f"fhir.resources.R4B.{resource_type.lower()}")
    model: type[BaseModel] = getattr(module, resource_type)
    return model


def parse_resource(body: Any, resource_type: str) -> BaseModel:
    """Validate a JSON body as an R4 resource of `resource_type`.

    Raises InvalidResource naming the offending element (FHIRPath) on any
    structural error: wrong resourceType, unknown element, bad primitive.
    """
    if not isinstance(body, dict):
        raise InvalidResource("the body must be a JSON object", expression=resource_type)
    found = body.get("resourceType")
    if found != resource_type:
        raise InvalidResource(
            f"expected resourceType {resource_type!r}, got {found!r}", expression="resourceType"
        )
    try:
        return r4b_model(resource_type).model_validate(body)
    except ValidationError as exc:
        # Unknown elements first: they are the likeliest cause of everything else.
        errors = sorted(exc.errors(), key=lambda e: e.get("type") != "extra_forbidden")
        paths = [_fhirpath(resource_type, e.get("loc", ())) for e in errors]
        message = "; ".join(
            f"{path}: {'unknown element' if e.get('type') == 'extra_forbidden' else e.get('msg')}"
            for path, e in zip(paths[:5], errors[:5], strict=True)
        )
        raise InvalidResource(message, expression=paths[0]) from None
    except (ValueError, TypeError) as exc:
        raise InvalidResource(str(exc), expression=resource_type) from None
    except LookupError:
        # fhir.resources looks nested resources (contained, Bundle entries) up by their
        # resourceType and raises KeyError for one it does not know.
        raise InvalidResource(
            "a nested resource (contained or in a Bundle entry) has an unknown resourceType",
            expression=resource_type,
        ) from None


def _fhirpath(resource_type: str, loc: tuple[Any, ...]) -> str:
    path = resource_type
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part not in ("__root__",) and not str(part).startswith("function-"):
            path += f".{str(part).removesuffix('__ext')}"
    return path


def held(record: Any, values: Callable[[dict[str, Any]], Any]) -> Any | None:
    """A record's values as it holds them, read in one call by `values` (an
    `operator.itemgetter` of attribute names) from the instance's dict, where the ORM
    keeps what it loaded (a plain record holds nothing else): read one by one through
    the ORM's attributes they can cost as much as the rendering they feed. None when
    one is not loaded (expired, deferred, a collection never read): read it through the
    ORM, which loads it."""
    try:
        return values(vars(record))
    except KeyError:
        return None


def instant(value: dt.datetime) -> str:
    """FHIR instant in UTC, second precision: 2027-01-04T15:00:00Z."""
    if value.tzinfo is not dt.UTC:
        value = value.astimezone(dt.UTC)
    # Several times strftime's speed; without `timespec` (a keyword, parsed slowly) the
    # first 19 characters are the same, fractions or not.
    return value.isoformat()[:19] + "Z"


def meta(version: int, last_updated: dt.datetime) -> JSON:
    return {"versionId": str(version), "lastUpdated": instant(last_updated)}


def reference(resource_type: str, ident: str, display: str | None = None) -> JSON:
    ref: JSON = {"reference": f"{resource_type}/{ident}"}
    if display:
        ref["display"] = display
    return ref


#: A resource type's name, and a resource id (R4 datatypes.html#id: 1-64 of A-Za-z0-9-.).
TYPE_PATTERN = r"[A-Z][A-Za-z]+"
ID_PATTERN = r"[A-Za-z0-9\-.]{1,64}"
_REFERENCE = re.compile(rf"^(?:(?:.*/)?({TYPE_PATTERN})/)?({ID_PATTERN})(/_history/\d+)?$")


def split_reference(ref: str, *, versioned: bool = False) -> tuple[str | None, str] | None:
    """(type, id) of a literal reference, `[base/]Type/id`, or of a bare id (type None);
    None when it is neither. `versioned`: a `/_history/n` suffix is allowed (and ignored)."""
    match = _REFERENCE.match(ref)
    if match is None or (match.group(3) and not versioned):
        return None
    return match.group(1), match.group(2)


def parse_reference(ref: str | None, allowed: tuple[str, ...], expression: str) -> tuple[str, str]:
    """Split 'Type/id' (relative or absolute) into (type, id); the type must be allowed."""
    if not ref:
        raise Unprocessable(
            f"a reference to {' or '.join(allowed)} is needed (a display alone is not enough)",
            expression=expression,
        )
    split = split_reference(ref, versioned=True)
    if split is None or split[0] is None or split[0] not in allowed:
        raise Unprocessable(
            f"expected a reference to {' or '.join(allowed)}, got {ref!r}", expression=expression
        )
    return split[0], split[1]


def aware(value: Any, expression: str) -> dt.datetime:
    """An input instant/dateTime as an aware datetime; FHIR instants carry a zone."""
    if isinstance(value, dt.datetime):
        parsed = value
    else:
        try:
            parsed = dt.datetime.fromisoformat(str(value))
        except ValueError:
            raise InvalidResource(f"{value!r} is not a dateTime", expression=expression) from None
    if parsed.tzinfo is None:
        raise InvalidResource("a time zone is required", expression=expression)
    try:
        return parsed.astimezone(dt.UTC)
    except OverflowError:
        raise beyond_calendar(value, expression) from None


def beyond_calendar(value: Any, expression: str) -> InvalidResource:
    """For a time whose UTC value (or the range it stands for) leaves years 0001-9999."""
    return InvalidResource(
        f"{value} reaches beyond the calendar (years 0001 to 9999 in UTC)",
        expression=expression,
    )


def client_elements(body: dict[str, Any], *, without: tuple[str, ...] = ()) -> JSON:
    """A client's resource without what the server owns (resourceType, id, meta)."""
    dropped = ("resourceType", "id", "meta", *without)
    return {k: v for k, v in body.items() if k not in dropped}


def kept_document(body: dict[str, Any], *, without: tuple[str, ...] = ()) -> str:
    """A client's resource as we keep it to give back (JSON text)."""
    return orjson.dumps(client_elements(body, without=without)).decode()


def codeable(coding: dict[str, str]) -> JSON:
    return {"coding": [coding], "text": coding["display"]}
