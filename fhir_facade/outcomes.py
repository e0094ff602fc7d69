"""The error vocabulary: every error we answer with, its HTTP status, and the
OperationOutcome builders. Views never build error JSON: they raise, and
`describe` answers, through the one status table `_TABLE` (the OperationOutcome
builders are `mappings.outcome`'s, which operations' answers use too).

Exception                                   status  issue.code
 ├── StoreError (store.errors)                       the store refuses; `field` is a domain field
 │    ├── NotFound                            404    not-found
 │    ├── Conflict                            409    conflict
 │    │    ├── SessionFull                    409    conflict (session-full)
 │    │    ├── SessionUnavailable             409    conflict (session-unavailable)
 │    │    ├── AlreadyBooked                  409    duplicate (already-booked)
 │    │    ├── DuplicateIdentifier            409    duplicate (duplicate-identifier)
 │    │    └── AssertionReplayed              (the token endpoint's; RFC 6749 errors)
 │    ├── VersionMismatch                     412    conflict (version-mismatch)
 │    ├── PermissionRequired                  403    forbidden
 │    │    └── RestrictedWithoutPermission
 │    └── RuleViolation                       422    business-rule
 │         ├── CapacityBelowBooked, SessionsWouldMove, Inactive   (their own detail code)
 │         └── InvalidRecurrence              422    business-rule (invalid-recurrence)
 │              ├── UnknownTimeZone
 │              └── SeriesTooLong             422    too-costly (series-too-long)
 ├── DatabaseUnavailable (store.errors)       503    no-store
 ├── MappingError (mappings.errors)                  FHIR input we cannot take; `expression`
 │    ├── InvalidResource                     400    structure
 │    ├── InvalidSearch                       400    invalid
 │    │    └── TooCostly                      400    too-costly
 │    ├── TooLong                             400    too-long
 │    └── Unprocessable                       422    processing
 ├── FhirError (here)                                the HTTP layer refuses; `expression`
 │    ├── BadRequest                          400    invalid (or a more precise code)
 │    ├── AuthError                           401    login
 │    ├── NotServed                           404    not-found
 │    ├── MethodNotAllowed                    405    not-supported
 │    ├── NotAcceptable                       406    not-supported
 │    ├── MultipleMatches                     412    multiple-matches
 │    └── UnsupportedMediaType                415    not-supported
 └── werkzeug HTTPException                   its own (413, 414, 431 too-long; …)

Anything else is a bland 500. Where an issue points (`expression`) is composed once,
by `mappings.locations`, for every path a request takes (the body, a Bundle entry,
an operation parameter).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from werkzeug.exceptions import HTTPException

from mappings.errors import (
    InvalidResource,
    InvalidSearch,
    MappingError,
    TooCostly,
    TooLong,
    Unprocessable,
)
from mappings.locations import fhir_path, labelled, rooted, where_of
from mappings.outcome import issue, operation_outcome
from store import errors as store_errors


class FhirError(Exception):
    """An HTTP-level refusal raised by the FHIR layer itself. Its class names the
    status (see `_TABLE`); `code` makes the table's issue code more specific."""

    def __init__(
        self, message: str, *, code: str | None = None, expression: str | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.expression = expression


class BadRequest(FhirError):
    """400: the request itself is malformed (JSON, ids, headers, Parameters)."""


class AuthError(FhirError):
    """401: no token, or one we cannot trust."""


class NotServed(FhirError):
    """404: no FHIR interaction is served at this URL."""


class MethodNotAllowed(FhirError):
    """405: the resource type does not support this interaction."""


class NotAcceptable(FhirError):
    """406: the client accepts nothing we serve (only FHIR R4 JSON)."""


class MultipleMatches(FhirError):
    """412: a conditional interaction's query matches more than one resource."""


class UnsupportedMediaType(FhirError):
    """415: the body is not FHIR JSON."""


@dataclass(frozen=True)
class Mapped:
    status: int
    code: str
    detail: str | None = None


# Most specific first: the first class the error is an instance of wins.
_TABLE: list[tuple[type[BaseException], Mapped]] = [
    (store_errors.SessionFull, Mapped(409, "conflict", "session-full")),
    (store_errors.SessionUnavailable, Mapped(409, "conflict", "session-unavailable")),
    (store_errors.AlreadyBooked, Mapped(409, "duplicate", "already-booked")),
    (store_errors.DuplicateIdentifier, Mapped(409, "duplicate", "duplicate-identifier")),
    (store_errors.Conflict, Mapped(409, "conflict")),
    (store_errors.NotFound, Mapped(404, "not-found")),
    (store_errors.VersionMismatch, Mapped(412, "conflict", "version-mismatch")),
    (store_errors.PermissionRequired, Mapped(403, "forbidden")),
    (store_errors.DatabaseUnavailable, Mapped(503, "no-store", "database-unavailable")),
    (store_errors.CapacityBelowBooked, Mapped(422, "business-rule", "capacity-below-booked")),
    (store_errors.SessionsWouldMove, Mapped(422, "business-rule", "booked-sessions-would-move")),
    (store_errors.Inactive, Mapped(422, "business-rule", "inactive")),
    (store_errors.SeriesTooLong, Mapped(422, "too-costly", "series-too-long")),
    (store_errors.InvalidRecurrence, Mapped(422, "business-rule", "invalid-recurrence")),
    (store_errors.RuleViolation, Mapped(422, "business-rule")),
    (TooLong, Mapped(400, "too-long")),
    (TooCostly, Mapped(400, "too-costly")),
    (InvalidResource, Mapped(400, "structure")),
    (InvalidSearch, Mapped(400, "invalid")),
    (Unprocessable, Mapped(422, "processing")),
    (AuthError, Mapped(401, "login")),
    (BadRequest, Mapped(400, "invalid")),
    (NotServed, Mapped(404, "not-found")),
    (MethodNotAllowed, Mapped(405, "not-supported")),
    (NotAcceptable, Mapped(406, "not-supported")),
    (MultipleMatches, Mapped(412, "multiple-matches")),
    (UnsupportedMediaType, Mapped(415, "not-supported")),
]


def describe(exc: BaseException) -> tuple[int, dict[str, Any]]:
    """Status and OperationOutcome for any error; unknown ones become a bland 500."""
    if isinstance(exc, HTTPException):
        status = exc.code or 500
        codes = {
            400: "invalid",
            404: "not-found",
            405: "not-supported",
            413: "too-long",
            414: "too-long",
            415: "not-supported",
            431: "too-long",
        }
        return status, operation_outcome(
            issue("error", codes.get(status, "processing"), exc.description or exc.name)
        )
    for cls, mapped in _TABLE:
        if isinstance(exc, cls):
            code = (exc.code if isinstance(exc, FhirError) else None) or mapped.code
            return mapped.status, operation_outcome(
                issue(
                    "error",
                    code,
                    _message(exc),
                    expression=_expression(exc),
                    detail=mapped.detail,
                )
            )
    return 500, operation_outcome(
        issue("fatal", "exception", "internal error; the request changed nothing")
    )


def _message(exc: BaseException) -> str:
    """The error's text; a Bundle entry's or a kept Appointment's says which it is."""
    if isinstance(exc, store_errors.NotFound):
        message = f"{exc.kind}/{exc.ident} is not known"
    else:
        message = getattr(exc, "message", str(exc))
    if isinstance(exc, (store_errors.StoreError, MappingError)):
        return labelled(message, where_of(exc))
    return message


def _expression(exc: BaseException) -> str | None:
    """The FHIRPath the error points at, rooted where its resource sits in the request:
    the store's domain field, the mappings' or the FHIR layer's own FHIRPath, or (naming
    none) the part of the request being run, the id asked for, or the If-Match header."""
    where = where_of(exc)
    if isinstance(exc, store_errors.StoreError):
        own = fhir_path(exc.field) if exc.field else None
    else:
        own = getattr(exc, "expression", None)
    if own is None and where.fallback is None:
        own = _default_expression(exc)
    return rooted(own, where)


def _default_expression(exc: BaseException) -> str | None:
    """Where a 404 or 412 points when the store named no element: the id asked for,
    or the If-Match header whose version did not match."""
    if isinstance(exc, store_errors.NotFound):
        return f"{exc.kind}.id"
    if isinstance(exc, store_errors.VersionMismatch):
        return "If-Match"
    return None
