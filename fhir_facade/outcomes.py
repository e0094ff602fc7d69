"""OperationOutcome builders and the one table that maps an error to its HTTP status.

Views never build error JSON: they raise, and `error_response` answers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from werkzeug.exceptions import HTTPException

from fhir_facade.auth import AuthError, Forbidden
from mappings.codes import CANONICAL
from mappings.errors import (
    InvalidResource,
    InvalidSearch,
    MappingError,
    TooCostly,
    TooLong,
    Unprocessable,
)
from store import errors as store_errors
from store import recurrence

CS_OUTCOME = f"{CANONICAL}/CodeSystem/outcome"


class FhirError(Exception):
    """An HTTP-level refusal raised by the FHIR layer itself."""

    def __init__(
        self, status: int, code: str, message: str, *, expression: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.expression = expression


def issue(
    severity: str,
    code: str,
    text: str,
    *,
    expression: str | None = None,
    detail: str | None = None,
) -> dict[str, Any]:
    entry: dict[str, Any] = {"severity": severity, "code": code}
    details: dict[str, Any] = {"text": _printable(text)}
    if detail:
        details["coding"] = [{"system": CS_OUTCOME, "code": detail}]
    entry["details"] = details
    if expression and _EXPRESSION.fullmatch(expression):
        entry["expression"] = [expression]
    return entry


#: What an `expression` we emit may look like: a FHIRPath or a parameter name. Anything
#: else came from the client (e.g. an unknown parameter name) and is left out.
_EXPRESSION = re.compile(r"[A-Za-z0-9_.:\-\[\]()$ ,']{1,200}")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _printable(text: str) -> str:
    """Escape control characters a client sent: FHIR strings may not hold them."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def operation_outcome(*issues: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "OperationOutcome", "issue": list(issues)}


def warning(text: str, detail: str, expression: str | None = None) -> dict[str, Any]:
    return issue("warning", "business-rule", text, expression=expression, detail=detail)


def information(text: str) -> dict[str, Any]:
    return issue("information", "informational", text)


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
    (store_errors.AlreadyWaitlisted, Mapped(409, "duplicate", "already-waitlisted")),
    (store_errors.SessionHasRoom, Mapped(409, "conflict", "session-has-room")),
    (store_errors.Conflict, Mapped(409, "conflict")),
    (store_errors.NotFound, Mapped(404, "not-found")),
    (store_errors.VersionMismatch, Mapped(412, "conflict", "version-mismatch")),
    (store_errors.PermissionRequired, Mapped(403, "forbidden")),
    (store_errors.DatabaseUnavailable, Mapped(503, "no-store", "database-unavailable")),
    (store_errors.CapacityBelowBooked, Mapped(422, "business-rule", "capacity-below-booked")),
    (store_errors.SessionsWouldMove, Mapped(422, "business-rule", "booked-sessions-would-move")),
    (store_errors.Inactive, Mapped(422, "business-rule", "inactive")),
    (recurrence.SeriesTooLong, Mapped(422, "too-costly", "series-too-long")),
    (recurrence.InvalidRecurrence, Mapped(422, "business-rule", "invalid-recurrence")),
    (store_errors.RuleViolation, Mapped(422, "business-rule")),
    (TooLong, Mapped(400, "too-long")),
    (TooCostly, Mapped(400, "too-costly")),
    (InvalidResource, Mapped(400, "structure")),
    (InvalidSearch, Mapped(400, "invalid")),
    (Unprocessable, Mapped(422, "processing")),
    (AuthError, Mapped(401, "login")),
    (Forbidden, Mapped(403, "forbidden")),
]


def describe(exc: BaseException) -> tuple[int, dict[str, Any]]:
    """Status and OperationOutcome for any error; unknown ones become a bland 500."""
    if isinstance(exc, FhirError):
        return exc.status, operation_outcome(
            issue("error", exc.code, exc.message, expression=exc.expression)
        )
    if isinstance(exc, HTTPException):
        status = exc.code or 500
        code = {
            400: "invalid",
            404: "not-found",
            405: "not-supported",
            413: "too-long",
            414: "too-long",
            415: "not-supported",
            431: "too-long",
        }
        return status, operation_outcome(
            issue("error", code.get(status, "processing"), exc.description or exc.name)
        )
    for cls, mapped in _TABLE:
        if isinstance(exc, cls):
            message = getattr(exc, "message", str(exc))
            if isinstance(exc, MappingError):
                expression = exc.expression
            else:
                expression = getattr(exc, "field", None) or _default_expression(exc)
            if isinstance(exc, store_errors.NotFound):
                message = f"{exc.kind}/{exc.ident} is not known"
            return mapped.status, operation_outcome(
                issue("error", mapped.code, message, expression=expression, detail=mapped.detail)
            )
    return 500, operation_outcome(
        issue("fatal", "exception", "internal error; the request changed nothing")
    )


def _default_expression(exc: BaseException) -> str | None:
    """Where a 404 or 412 points when the store named no element: the id asked for,
    or the If-Match header whose version did not match."""
    if isinstance(exc, store_errors.NotFound):
        return f"{exc.kind}.id"
    if isinstance(exc, store_errors.VersionMismatch):
        return "If-Match"
    return None
