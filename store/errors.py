"""Typed exceptions raised by the store. Only the HTTP layer turns them into statuses
(the status of each: `fhir_facade.outcomes`, whose docstring draws every error we raise).

StoreError                    `field`: the domain field refused (`booking.slot`,
 │                            `session.capacity`); `mappings.locations` maps it to FHIR
 ├── NotFound                 a record does not exist (or is invisible to the caller)
 ├── Conflict                 the request collides with the current state
 │    ├── SessionFull         no place left in the group session
 │    ├── SessionUnavailable  the group session is blocked and takes no bookings
 │    ├── AlreadyBooked       the patient already holds a place in that session
 │    ├── DuplicateIdentifier another record already carries that identifier
 │    └── AssertionReplayed   a client's token assertion (its jti) was already used
 ├── VersionMismatch          optimistic-locking check failed (If-Match)
 ├── PermissionRequired       the token's scopes or permissions do not allow it
 │    └── RestrictedWithoutPermission  marking a patient restricted needs __patient.blocked
 └── RuleViolation            a business rule refuses the change
      ├── CapacityBelowBooked
      ├── SessionsWouldMove   re-zoning a department / re-pointing a schedule with bookings
      ├── Inactive            an inactive provider, department or schedule takes no new sessions
      └── InvalidRecurrence   the recurrence settings are malformed or contradictory
           ├── UnknownTimeZone  the department's IANA zone name is not known
           └── SeriesTooLong    more occurrences, or reaching further ahead, than allowed

DatabaseUnavailable           the database cannot be reached or stopped answering
                              (not a StoreError: nothing was refused, and recording a
                              failure would wait on the same database again)
"""

from __future__ import annotations


class StoreError(Exception):
    """Base of every error the store raises on purpose."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class NotFound(StoreError):
    def __init__(self, kind: str, ident: str, *, field: str | None = None) -> None:
        super().__init__(f"{kind} {ident!r} not found", field=field)
        self.kind = kind
        self.ident = ident


class Conflict(StoreError):
    pass


class SessionFull(Conflict):
    def __init__(self, session_id: str, *, field: str | None = None) -> None:
        super().__init__(f"group session {session_id!r} is full: no place left", field=field)
        self.session_id = session_id


class SessionUnavailable(Conflict):
    def __init__(self, session_id: str, *, field: str | None = None) -> None:
        super().__init__(
            f"group session {session_id!r} is blocked by a schedule admin and takes no bookings",
            field=field,
        )
        self.session_id = session_id


class AlreadyBooked(Conflict):
    def __init__(self, session_id: str, *, field: str | None = None) -> None:
        super().__init__(
            f"the patient already holds a place in group session {session_id!r}", field=field
        )
        self.session_id = session_id


class DuplicateIdentifier(Conflict):
    pass


class AssertionReplayed(Conflict):
    """A SMART Backend Services assertion's `jti` was used before and has not expired."""


class VersionMismatch(StoreError):
    def __init__(self, kind: str, ident: str, expected: int, actual: int) -> None:
        super().__init__(
            f"{kind} {ident!r} is at version {actual}, not {expected}: reload it and retry"
        )


class PermissionRequired(StoreError):
    """The caller's token lacks the scope or the permission the request needs."""


class RestrictedWithoutPermission(PermissionRequired):
    """Marking a patient restricted needs the privacy permission."""


class RuleViolation(StoreError):
    pass


class DatabaseUnavailable(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class CapacityBelowBooked(RuleViolation):
    def __init__(self, capacity: int, booked: int, *, field: str | None = None) -> None:
        super().__init__(
            f"capacity {capacity} is below the {booked} places already booked", field=field
        )


class SessionsWouldMove(RuleViolation):
    pass


class Inactive(RuleViolation):
    pass


class InvalidRecurrence(RuleViolation):
    """The recurrence settings are refused; `field` names the recurrence field."""

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message, field=field)


class UnknownTimeZone(InvalidRecurrence):
    """The department's time zone is not a known IANA zone name."""

    def __init__(self, timezone: str) -> None:
        super().__init__(f"unknown IANA time zone {timezone!r}", field="recurrence.time_of_day")
        self.timezone = timezone


class SeriesTooLong(InvalidRecurrence):
    """The series exceeds the configured limits (number of occurrences or years ahead)."""
