"""The resource types we serve, one entry each: what they are, and what is wired for them.

Each entry says which writes (create, update) and operations the type has; reads,
vread, history and search are wired for every type, its search parameters and
includes are `mappings.search_params.SEARCHES[name]`. The routes (`fhir_facade.api`), the
CapabilityStatement, the OpenAPI document and the Bundle dispatch are all derived
from this table, so what we declare is what the routes do.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import orjson
from flask import g, has_app_context

from fhir_facade import changes
from fhir_facade.auth import AUDIT_READ, SCHEDULE_MANAGE
from fhir_facade.changes import Change
from mappings.appointment import appointment_from_fhir, appointment_to_fhir
from mappings.audit import audit_event_to_fhir
from mappings.codes import CANONICAL
from mappings.coverage import coverage_from_fhir, coverage_to_fhir
from mappings.directory import (
    location_from_fhir,
    location_to_fhir,
    organization_from_fhir,
    organization_to_fhir,
    practitioner_from_fhir,
    practitioner_to_fhir,
    schedule_from_fhir,
    schedule_to_fhir,
)
from mappings.patient import patient_from_fhir, patient_to_fhir
from mappings.search_params import SEARCHES, ResourceSearch
from mappings.slot import shared_slot, slot_from_fhir, slot_to_fhir
from store.models import Base
from store.scope import Store

#: Interactions every resource type has (FHIR TypeRestfulInteraction codes).
READS = ("read", "vread", "history-instance", "search-type")


@dataclass(frozen=True)
class Operation:
    """A FHIR operation on one resource type (`[type]/$code` or `[type]/[id]/$code`)."""

    code: str
    instance: bool  # invoked on one resource rather than on the type
    documentation: str

    def definition(self, resource_type: str) -> str:
        return f"{CANONICAL}/OperationDefinition/{resource_type}-{self.code}"


@dataclass(frozen=True)
class ResourceType:
    name: str
    to_fhir: Callable[[Any], dict[str, Any]]
    create: Change[Any] | None = None
    update: Change[Any] | None = None
    operations: tuple[Operation, ...] = ()
    documentation: str = ""
    permission: str | None = None  # needed on top of the SMART scope, for every interaction
    #: A rendering shared between requests (never changed by its callers), when the
    #: type has one; searches use it through `read_fhir`.
    shared_fhir: Callable[[Any], dict[str, Any]] | None = None

    @property
    def read_fhir(self) -> Callable[[Any], dict[str, Any]]:
        """How searches render a record: shared when the type allows it."""
        return self.shared_fhir or self.to_fhir

    @property
    def search(self) -> ResourceSearch:
        return SEARCHES[self.name]

    @property
    def kind(self) -> type[Base]:
        return self.search.kind

    def change(self, interaction: str) -> Change[Any] | None:
        """The wired create or update, if any."""
        return {"create": self.create, "update": self.update}.get(interaction)

    @property
    def interactions(self) -> tuple[str, ...]:
        """What the routes serve for this type: reads always, the writes that are wired."""
        return READS + tuple(i for i in ("create", "update") if self.change(i) is not None)

    @property
    def conditional_create(self) -> bool:
        """`fhir_facade.writes.create` honours If-None-Exist on every wired create."""
        return self.create is not None


AUDIT_EVENT = ResourceType(
    "AuditEvent",
    audit_event_to_fhir,
    documentation=(
        "The audit trail: every write and every read of a restricted patient's data. "
        "Needs the __audit.read permission."
    ),
    permission=AUDIT_READ,
)

RESOURCE_TYPES: dict[str, ResourceType] = {
    r.name: r
    for r in (
        ResourceType(
            "Organization",
            organization_to_fhir,
            create=Change(
                organization_from_fhir, changes.new_organization, permission=SCHEDULE_MANAGE
            ),
            update=Change(
                organization_from_fhir,
                changes.updating(Store.update_provider_group, organization_to_fhir),
                permission=SCHEDULE_MANAGE,
            ),
            documentation=(
                "Provider groups (read-only in bookings) and payers (type organization-type#ins). "
                "Create and update need the __schedule.manage permission."
            ),
        ),
        ResourceType(
            "Location",
            location_to_fhir,
            create=Change(location_from_fhir, changes.new_location, permission=SCHEDULE_MANAGE),
            update=Change(
                location_from_fhir,
                changes.updating(Store.update_department, location_to_fhir),
                permission=SCHEDULE_MANAGE,
            ),
            documentation=(
                "Departments, each with its IANA time zone (timezone extension, required) and "
                "its provider group (managingOrganization). Create and update need the "
                "__schedule.manage permission; the time zone cannot change while sessions that "
                "have not ended hold bookings (422). An inactive or suspended department takes "
                "no new sessions."
            ),
        ),
        ResourceType(
            "Practitioner",
            practitioner_to_fhir,
            create=Change(
                practitioner_from_fhir, changes.new_practitioner, permission=SCHEDULE_MANAGE
            ),
            update=Change(
                practitioner_from_fhir,
                changes.updating(Store.update_provider, practitioner_to_fhir),
                permission=SCHEDULE_MANAGE,
            ),
            documentation=(
                "Providers who run group sessions. Create and update need the "
                "__schedule.manage permission; an inactive provider takes no new sessions."
            ),
        ),
        ResourceType(
            "Schedule",
            schedule_to_fhir,
            create=Change(schedule_from_fhir, changes.new_schedule, permission=SCHEDULE_MANAGE),
            update=Change(
                schedule_from_fhir,
                changes.updating(Store.update_schedule, schedule_to_fhir),
                permission=SCHEDULE_MANAGE,
            ),
            documentation=(
                "A provider's calendar in one department (actor: one Location, at most one "
                "Practitioner). Create and update need the __schedule.manage permission; its "
                "Location and Practitioner cannot change while sessions that have not ended "
                "hold bookings (422). The waitlist-policy extension says what a freed place in "
                "a full session does: book the first eligible waitlist entry (the default), or "
                "offer it the place for a while (offerDuration)."
            ),
        ),
        ResourceType(
            "Slot",
            slot_to_fhir,
            create=Change(slot_from_fhir, changes.new_slot, permission=SCHEDULE_MANAGE),
            update=Change(
                slot_from_fhir,
                changes.updating(Store.update_session, slot_to_fhir),
                permission=SCHEDULE_MANAGE,
            ),
            documentation=(
                "Group sessions. Capacity and booked count in the group-capacity extension "
                "(a Slot created without it has one place); create and update need the "
                "__schedule.manage permission; capacity never drops below the booked count. "
                "free/busy are counted; busy-unavailable blocks a session, as does busy on "
                "a new one."
            ),
            shared_fhir=shared_slot,
        ),
        ResourceType(
            "Patient",
            patient_to_fhir,
            create=Change(patient_from_fhir, changes.register),
            update=Change(patient_from_fhir, changes.change_patient),
            documentation=(
                "Patients. Restricted ones (meta.security R) exist only for callers with "
                "__patient.blocked. SSNs are stored as keyed hashes and shown masked."
            ),
        ),
        ResourceType(
            "Coverage",
            coverage_to_fhir,
            create=Change(coverage_from_fhir, changes.new_coverage, changes.covered_patient),
            update=Change(coverage_from_fhir, changes.change_coverage, changes.covered_patient),
            documentation=(
                "Insurance plans and self-pay (type coverage-selfpay#pay, payor = the Patient); "
                "primary/secondary by order."
            ),
        ),
        ResourceType(
            "Appointment",
            appointment_to_fhir,
            create=Change(appointment_from_fhir, changes.book, changes.booked_patient),
            update=Change(appointment_from_fhir, changes.rebook, changes.booked_patient),
            operations=(
                Operation(
                    "find",
                    instance=False,
                    documentation=(
                        "Recurrence preview: Parameters patient, practitioner or schedule "
                        "(location), appointment-type, timing (R4 Timing). Returns a searchset "
                        "of proposed Appointments plus an OperationOutcome (search.mode = "
                        "outcome) naming unmatched occurrences. Writes nothing."
                    ),
                ),
                Operation(
                    "book",
                    instance=False,
                    documentation=(
                        "Books kept proposals (appointment-resource) as one series, in one "
                        "transaction: matched ones booked, the rest stored as drafts (status "
                        "proposed, requestedPeriod); coverage (0..2) applies to each. "
                        "Appointments with an id and a slot resolve drafts."
                    ),
                ),
                Operation(
                    "cancel-series",
                    instance=True,
                    documentation=(
                        "Cancels this and all following occurrences of a series (scope "
                        "this-and-following, the default) or the whole series (scope all); "
                        "places are freed."
                    ),
                ),
            ),
            documentation=(
                "Bookings into group sessions. Create = book (409 when the session is full "
                "or the patient already holds a place); update = cancel, reschedule or edit "
                "(If-Match honoured). Booking into a closed session succeeds with a warning. "
                "Create with status waitlist joins a full session's waitlist (409 "
                "session-has-room when it has a place: book it); status=waitlist searches list "
                "entries in queue order (priority 1-9 first, then first come, first served). A "
                "place that frees (cancel, move away, capacity raised) goes to the first "
                "eligible entry in the same transaction: booked, or pending with the "
                "waitlist-offer-expires extension under the schedule's offer policy; update a "
                "pending offer to booked to accept it. Passed-over entries say why "
                "(waitlist-passed-over); each promotion and lapse writes an AuditEvent."
            ),
        ),
        AUDIT_EVENT,
    )
}

_BY_KIND: dict[type[Base], ResourceType] = {r.kind: r for r in RESOURCE_TYPES.values()}
assert set(RESOURCE_TYPES) == set(SEARCHES), "each resource type served has its searches"


#: Where a request keeps what it already rendered of the records it wrote (`rendered`).
_RENDERED = "fhir_facade.registry.rendered"


def snapshot(record: Base) -> str:
    """A record as the API shows it, as JSON text: what `store.history` keeps per version.
    A rendering the request already made of this version (`rendered`) is reused."""
    if has_app_context() and (made := g.get(_RENDERED)):
        kept: str | None = made.pop(_version_key(record), None)
        if kept is not None:
            return kept
    return _rendering(record)


def rendered(record: Base, resource: dict[str, Any]) -> None:
    """Say that `resource` is how the API shows `record` now, to be reused for the
    snapshot of this version when the request's transaction commits (a series' answer
    renders 156 Appointments: they are not rendered twice). It is kept as its JSON text,
    taken now: what the answer then hides from its caller, in place, stays in the
    snapshot. Nothing may change the record before the commit; a new version of it is
    rendered afresh."""
    if has_app_context():
        g.setdefault(_RENDERED, {})[_version_key(record)] = orjson.dumps(resource).decode()


def prerendered(records: Iterable[Base]) -> None:
    """Render the snapshots of `records`' versions now, those not yet `rendered`, for
    the commit to use (a series' `$book` renders the 156 Slots whose places it took
    while PostgreSQL still writes its bookings). A record changed again before the
    commit has a new version: that one is rendered afresh."""
    if not has_app_context():
        return
    made = g.setdefault(_RENDERED, {})
    for record in records:
        key = _version_key(record)
        if key not in made:
            made[key] = _rendering(record)


def _rendering(record: Base) -> str:
    return orjson.dumps(_BY_KIND[type(record)].to_fhir(record)).decode()


def _version_key(record: Base) -> tuple[Any, ...]:
    version = (getattr(record, name, None) for name in ("id", "version", "last_updated"))
    return (type(record), *version)
