"""The package's code systems, naming systems and the SearchParameter we define."""

from __future__ import annotations

from conformance.package.artifacts.common import JSON, PUBLISHER, canonical, tail
from fhir_facade.capability import (
    RELEASE_DATE,
)
from mappings.audit import AGENT_SYSTEM
from mappings.codes import (
    APPOINTMENT_TYPES,
    CS_APPOINTMENT_TYPE_LOCAL,
    CS_SERVICE_TYPE_LOCAL,
    SERVICE_TYPES,
    SYSTEM_MRN,
    Coding,
)
from mappings.outcome import CS_OUTCOME

# -- terminology and identifier systems ----------------------------------------------


def _code_system(url: str, name: str, title: str, description: str, concepts: list[JSON]) -> JSON:
    cs = canonical("CodeSystem", tail(url), url, name, title)
    cs["description"] = description
    cs.update(
        {
            "caseSensitive": True,
            "content": "complete",
            "count": len(concepts),
            "concept": concepts,
        }
    )
    return cs


def _table_concepts(table: dict[str, Coding], system: str) -> list[JSON]:
    return [{"code": c.code, "display": c.display} for c in table.values() if c.system == system]


#: Every `details.coding` code of our OperationOutcomes, with its meaning.
OUTCOME_CODES: dict[str, tuple[str, str]] = {
    "session-full": (
        "Session full",
        "The group session has no place left; nothing was booked.",
    ),
    "session-unavailable": (
        "Session unavailable",
        "The group session is blocked (busy-unavailable) and takes no booking.",
    ),
    "session-blocked": (
        "Session blocked",
        "The session at an occurrence's time is blocked: the occurrence is (or would be) stored "
        "as a draft.",
    ),
    "session-closed": (
        "Session closed",
        "The session is closed (the provider prefers no new patients once it has started); the "
        "booking succeeds with this warning.",
    ),
    "session-ended": (
        "Session ended",
        "The session has already ended; the booking is recorded after the fact (e.g. a walk-in) "
        "and succeeds with this warning.",
    ),
    "already-booked": (
        "Already booked",
        "The patient already holds a place in that session.",
    ),
    "duplicate-identifier": (
        "Duplicate identifier",
        "Another resource already carries this business identifier.",
    ),
    "version-mismatch": (
        "Version mismatch",
        "If-Match (or meta.versionId in $book) names a version that is not the current one.",
    ),
    "capacity-below-booked": (
        "Capacity below booked",
        "A session's capacity cannot drop below the places already booked.",
    ),
    "booked-sessions-would-move": (
        "Booked sessions would move",
        "Re-zoning a department, or giving a schedule another department or provider, would "
        "move sessions that hold bookings and have not ended; nothing was changed.",
    ),
    "inactive": (
        "Inactive",
        "The provider, department, provider group or schedule is inactive: it keeps its history "
        "but takes no new sessions.",
    ),
    "series-too-long": (
        "Series too long",
        "The recurrence has more occurrences, or spans more years, than the server allows.",
    ),
    "invalid-recurrence": (
        "Invalid recurrence",
        "The recurrence settings are inconsistent (e.g. end before start, weekdays on a "
        "monthly series).",
    ),
    "no-session": (
        "No session",
        "No group session of the provider at an occurrence's time: it is (or would be) stored "
        "as a draft.",
    ),
    "other-appointment-type": (
        "Other appointment type",
        "The session at an occurrence's time has another appointment type than the one asked for.",
    ),
    "stored-as-draft": (
        "Stored as a draft",
        "The occurrence had no session to book and was stored as a draft (status proposed, "
        "requestedPeriod).",
    ),
    "dst-gap": (
        "Time skipped by daylight saving",
        "The occurrence's local time does not exist (the clocks jump forward over it); nothing "
        "was shifted.",
    ),
    "database-unavailable": (
        "Database unavailable",
        "The database cannot be reached or stopped answering within the configured bounds "
        "(503); nothing is known to have changed. Retry later.",
    ),
    "dst-ambiguous": (
        "Time repeated by daylight saving",
        "The occurrence's local time happens twice (the clocks fall back); the first instant is "
        "used.",
    ),
}


def outcome_code_system() -> JSON:
    return _code_system(
        CS_OUTCOME,
        "FhirFacadeOutcome",
        "fhir-facade OperationOutcome details",
        "Stable codes in OperationOutcome.issue.details.coding: why a request was refused, or "
        "what a warning is about. The text beside them is for people.",
        [
            {"code": code, "display": display, "definition": definition}
            for code, (display, definition) in OUTCOME_CODES.items()
        ],
    )


def _naming_system(ident: str, name: str, description: str, value: str) -> JSON:
    return {
        "resourceType": "NamingSystem",
        "id": ident,
        "name": name,
        "status": "active",
        "kind": "identifier",
        "date": RELEASE_DATE,
        "publisher": PUBLISHER,
        "description": description,
        "uniqueId": [{"type": "uri", "value": value, "preferred": True}],
    }


def agent_search_parameter(url: str) -> JSON:
    sp = canonical("SearchParameter", tail(url), url, "AuditEventAgentSubject", "")
    del sp["title"]  # R4 SearchParameter has no title
    sp.update(
        {
            "description": (
                "The user who acted: the token subject, as AuditEvent.agent.who.identifier "
                f"({AGENT_SYSTEM}). A token, where the base spec's agent is a reference: our "
                "users are token subjects, not FHIR resources."
            ),
            "code": "agent",
            "base": ["AuditEvent"],
            "type": "token",
            "expression": "AuditEvent.agent.who.identifier",
            "xpathUsage": "normal",
        }
    )
    return sp


def definitions(agent: str) -> list[JSON]:
    return [
        _code_system(
            CS_APPOINTMENT_TYPE_LOCAL,
            "GroupAppointmentType",
            "Group session appointment types",
            "The kinds of group session we run (Slot and Appointment appointmentType, beside HL7 "
            "v2 table 0276).",
            _table_concepts(APPOINTMENT_TYPES, CS_APPOINTMENT_TYPE_LOCAL),
        ),
        _code_system(
            CS_SERVICE_TYPE_LOCAL,
            "GroupServiceType",
            "Group session service types",
            "The services group sessions provide (Slot.serviceType).",
            _table_concepts(SERVICE_TYPES, CS_SERVICE_TYPE_LOCAL),
        ),
        outcome_code_system(),
        agent_search_parameter(agent),
        _naming_system(
            "mrn",
            "FhirFacadeMrn",
            "Medical record numbers the clinic assigns (Patient.identifier, type MR).",
            SYSTEM_MRN,
        ),
        _naming_system(
            "token-subject",
            "FhirFacadeTokenSubject",
            "The subject (sub claim) of the bearer token of a user who acted "
            "(AuditEvent.agent.who.identifier).",
            AGENT_SYSTEM,
        ),
    ]
