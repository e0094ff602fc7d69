"""Every entry point of the access-scoped store goes through the visibility rule.

One world holds a restricted patient (with a booking, a draft, a booking identifier,
a coverage, kept versions and audit records about them), a visible non-member, and a
payer's member. Each public method of `store.scope.Store` is probed as staff without
the privacy permission and as a payer: nothing hidden from that caller comes out, and a
write aimed at hidden data is refused as NotFound. The probe table must name every
public method, so a new entry point cannot be added without being probed here.
"""

from __future__ import annotations

import datetime as dt
import inspect
from collections.abc import Callable
from dataclasses import dataclass, fields, is_dataclass
from typing import Any

import pytest
from sqlalchemy import inspect as orm_inspect
from sqlalchemy import select

from store.access import PRIVACY_OFFICER, STAFF, Access, Narrowing
from store.audit import AuditEntry, record_many
from store.booking import BookingRequest, Placement, book_patient, store_drafts
from store.errors import NotFound, PermissionRequired
from store.insurance import CoverageSpec
from store.models import (
    AuditRecord,
    Base,
    Booking,
    BookingStatus,
    Coverage,
    Department,
    GroupSession,
    Notification,
    Patient,
    Provider,
    ProviderGroup,
    ProviderSchedule,
    RecordVersion,
    Subscription,
)
from store.patients import PatientSpec
from store.recurrence import Frequency, Recurrence
from store.scope import Store
from store.search import AnyOf, Condition, Query
from store.series import KeptOccurrence, Limits, SeriesBooking, SeriesQuery
from store.ssn import SsnHasher, SsnKey
from tests.factories import MONDAY, make_clinic, make_coverage, make_patient, make_session

HASHER = SsnHasher([SsnKey("test", b"not a secret")])
KINDS: list[type[Base]] = [
    Patient,
    Booking,
    Coverage,
    AuditRecord,
    GroupSession,
    ProviderSchedule,
    Provider,
    Department,
    ProviderGroup,
]


@dataclass
class World:
    session_id: str
    schedule_id: str
    department_id: str
    provider_id: str
    payer_id: str
    restricted: str  # the restricted patient
    restricted_booking: str
    restricted_draft: str
    restricted_coverage: str
    visible: str  # a visible patient, not the payer's member
    visible_booking: str
    visible_coverage: str
    member: str  # the payer's member
    member_booking: str
    member_coverage: str
    subscription: str  # told of every booking (the outbox)

    def hidden_from_staff(self) -> set[str]:
        return {
            self.restricted,
            self.restricted_booking,
            self.restricted_draft,
            self.restricted_coverage,
        }

    def hidden_from_payer(self) -> set[str]:
        return self.hidden_from_staff() | {
            self.visible,
            self.visible_booking,
            self.visible_coverage,
        }


def payer_access(payer_id: str) -> Access:
    """A payer's token: `system/Coverage.rs?payor=Organization/<payer>` (members only)."""
    payor = AnyOf((Condition("payor", "eq", ("organization", payer_id)),))
    return Access(narrowed=(Narrowing(Coverage, ((payor,),)),), coverage_members=True)


@pytest.fixture
def world(database) -> World:
    def build(db) -> World:
        clinic = make_clinic(db)
        session = make_session(db, clinic)
        restricted = make_patient(db, family="Hidden", restricted=True)
        visible = make_patient(db, family="Seen")
        restricted_coverage = db.scalar(
            select(Coverage.id).where(Coverage.beneficiary_id == restricted.id)
        )
        visible_coverage = db.scalar(
            select(Coverage.id).where(Coverage.beneficiary_id == visible.id)
        )
        member = make_patient(db, family="Member", self_pay=False)
        payer_coverage = make_coverage(db, member.id, payor_id=clinic.group_id)

        def book(patient_id: str, coverage: tuple[str, ...] = ()) -> str:
            request = BookingRequest(
                patient_id,
                session.id,
                provider_ids=(clinic.provider_id,),
                department_id=clinic.department_id,
                identifiers=(("urn:example:booking", f"b-{patient_id}"),),
                coverage_ids=coverage,
            )
            return book_patient(db, request, PRIVACY_OFFICER).booking.id

        restricted_booking = book(restricted.id)
        draft_request = BookingRequest(
            restricted.id,
            None,
            status=BookingStatus.PROPOSED,
            start=MONDAY + dt.timedelta(days=7),
            end=MONDAY + dt.timedelta(days=7, minutes=90),
            department_id=clinic.department_id,
        )
        (draft,) = store_drafts(db, [Placement(draft_request)], PRIVACY_OFFICER)
        # A kept version of the restricted patient (the app keeps them on every write).
        db.add(
            RecordVersion(
                kind=Patient.__tablename__,
                record_id=restricted.id,
                version=1,
                last_updated=restricted.last_updated,
                document="{}",
            )
        )
        bookings = {
            "restricted": restricted_booking,
            "visible": book(visible.id),
            "member": book(member.id, (payer_coverage.id,)),
        }
        subscription = told_of(db, list(bookings.values()))
        hidden = [
            ("Patient", restricted.id, restricted.id),
            ("Appointment", restricted_booking, restricted.id),
            ("Coverage", restricted_coverage, None),
        ]
        record_many(db, [AuditEntry("R", "read", "someone", k, i, p) for k, i, p in hidden])
        return World(
            session_id=session.id,
            schedule_id=clinic.schedule_id,
            department_id=clinic.department_id,
            provider_id=clinic.provider_id,
            payer_id=clinic.group_id,
            restricted=restricted.id,
            restricted_booking=restricted_booking,
            restricted_draft=draft.booking.id,
            restricted_coverage=restricted_coverage,
            visible=visible.id,
            visible_booking=bookings["visible"],
            visible_coverage=visible_coverage,
            member=member.id,
            member_booking=bookings["member"],
            member_coverage=payer_coverage.id,
            subscription=subscription,
        )

    return database.write(build)


def told_of(db: Any, booking_ids: list[str]) -> str:
    """A subscription with an event (and a kept version) for each of these bookings."""
    subscription = Subscription(
        id="sub-1",
        owner="someone",
        scope="user/Appointment.rs",
        status="active",
        topic="topic",
        criteria="",
        endpoint="https://ehr.example.org/hook",
        server_base="https://fhir.example.org/fhir",
        content="full-resource",
        timeout_s=10,
        document="{}",
        events=len(booking_ids),
    )
    db.add(subscription)
    db.flush()  # before its events (no ORM relationship orders the inserts)
    for n, ident in enumerate(booking_ids, start=1):
        db.add(
            RecordVersion(
                kind=Booking.__tablename__,
                record_id=ident,
                version=1,
                last_updated=MONDAY,
                document=f'{{"id": "{ident}"}}',
            )
        )
        db.add(
            Notification(
                subscription_id=subscription.id,
                event_number=n,
                focus_kind=Booking.__tablename__,
                focus_id=ident,
                focus_version=1,
                occurred=MONDAY,
            )
        )
    db.flush()
    return subscription.id


def own_coverage(db: Any, patient_id: str) -> str:
    found: str = db.scalar(select(Coverage.id).where(Coverage.beneficiary_id == patient_id))
    return found


def everything(w: World) -> dict[type[Base], list[str]]:
    every = [
        w.restricted,
        w.restricted_booking,
        w.restricted_draft,
        w.restricted_coverage,
        w.visible,
        w.visible_booking,
        w.visible_coverage,
        w.member,
        w.member_booking,
        w.member_coverage,
    ]
    return {kind: every for kind in KINDS}


def hidden_patients(w: World, hidden: set[str]) -> list[str]:
    return [p for p in (w.restricted, w.visible, w.member) if p in hidden]


def first_hidden(w: World, hidden: set[str], *candidates: str) -> str:
    return next(c for c in candidates if c in hidden)


Probe = Callable[[Store, World, set[str]], Any]


def _reads(store: Store, w: World, hidden: set[str]) -> Any:
    return [store.get(kind, ident) for kind, ids in everything(w).items() for ident in ids]


def _rebook(store: Store, w: World, hidden: set[str]) -> Any:
    booking_id = first_hidden(w, hidden, w.restricted_booking)
    return store.rebook(booking_id, BookingRequest(w.restricted, w.session_id))


#: Each public Store method: how to call it against data hidden from the caller, or why
#: it cannot reveal a patient's data (the clinic's own records, SMART clients).
READS: dict[str, Probe] = {
    "get": _reads,
    "get_many": lambda s, w, h: [s.get_many(k, ids) for k, ids in everything(w).items()],
    "visible_ids": lambda s, w, h: [s.visible_ids(k, ids) for k, ids in everything(w).items()],
    "search": lambda s, w, h: [list(s.search(Query(kind)).rows) for kind in KINDS],
    "locked": lambda s, w, h: [s.locked(k, i) for k, ids in everything(w).items() for i in ids],
    "versions": lambda s, w, h: [s.versions(Patient, p) for p in hidden_patients(w, h)],
    "version": lambda s, w, h: [s.version(Patient, p, 1) for p in hidden_patients(w, h)],
    "restricted_among": lambda s, w, h: s.restricted_among([w.restricted, w.visible]),
    "narrowed": lambda s, w, h: [s.narrowed(kind) for kind in KINDS],
    "notifications": lambda s, w, h: s.notifications(w.subscription, 1, 100, 100),
    "matching": lambda s, w, h: [s.matching(k, ids, ()) for k, ids in everything(w).items()],
}
REFUSED: dict[str, Probe] = {
    "book": lambda s, w, h: s.book(BookingRequest(first_hidden(w, h, w.restricted), w.session_id)),
    "rebook": _rebook,
    "join_waitlist": lambda s, w, h: s.join_waitlist(
        BookingRequest(
            first_hidden(w, h, w.restricted), w.session_id, status=BookingStatus.WAITLIST
        )
    ),
    "update_patient": lambda s, w, h: s.update_patient(
        first_hidden(w, h, w.restricted), PatientSpec(family="Changed"), HASHER
    ),
    "create_coverage": lambda s, w, h: s.create_coverage(
        CoverageSpec(
            beneficiary_id=first_hidden(w, h, w.restricted),
            payor_kind="organization",
            payor_id=w.payer_id,
            status="active",
        )
    ),
    "update_coverage": lambda s, w, h: s.update_coverage(
        first_hidden(w, h, w.restricted_coverage),
        CoverageSpec(
            beneficiary_id=w.restricted,
            payor_kind="organization",
            payor_id=w.payer_id,
            status="active",
        ),
    ),
    "preview_series": lambda s, w, h: s.preview_series(
        SeriesQuery(first_hidden(w, h, w.restricted), weekly(), schedule_id=w.schedule_id),
        today=MONDAY.date(),
        limits=Limits(),
    ),
    "book_series": lambda s, w, h: s.book_series(
        SeriesBooking(
            weekly(),
            (KeptOccurrence(1, BookingRequest(first_hidden(w, h, w.restricted), w.session_id)),),
        ),
        today=MONDAY.date(),
        limits=Limits(),
    ),
    "resolve_draft": lambda s, w, h: s.resolve_draft(
        w.restricted_draft, BookingRequest(w.restricted, w.session_id)
    ),
    "cancel_series": lambda s, w, h: s.cancel_series(w.restricted_booking, following=False),
}
#: Entry points that hand out no patient data, with the reason.
NO_PATIENT_DATA = {
    "as_": "returns a Store, whose methods are probed here",
    "record": "writes an audit record; reading it back goes through `search`",
    "record_many": "writes audit records; reading them back goes through `search`",
    "session_versions_to_keep": "returns group sessions the transaction changed: no patient data",
    "register_patient": "creates a new patient (marking it restricted is probed below)",
    "create_schedule": "the clinic's own records carry no patient data",
    "update_schedule": "the clinic's own records carry no patient data",
    "create_session": "the clinic's own records carry no patient data",
    "update_session": "the clinic's own records carry no patient data",
    "create_provider_group": "the clinic's own records carry no patient data",
    "update_provider_group": "the clinic's own records carry no patient data",
    "create_department": "the clinic's own records carry no patient data",
    "update_department": "the clinic's own records carry no patient data",
    "create_provider": "the clinic's own records carry no patient data",
    "update_provider": "the clinic's own records carry no patient data",
    "find_client": "SMART clients carry no patient data",
    "use_assertion": "SMART clients carry no patient data",
    "savepoint": "opens a nested transaction; hands out nothing",
    "has_lapsed_offers": "says only whether some offer lapsed; names nothing",
    "sweep_expired_offers": "the server's own act on lapsed offers; hands nothing back",
    # Subscriptions: a row holds its owner's filters and endpoint, never a patient's
    # record; what an event reveals is read through `notifications`, probed above.
    "create_subscription": "creates the caller's own subscription",
    "own_subscription": "the caller's own subscription (another's is NotFound)",
    "own_subscriptions": "the caller's own subscriptions",
    "update_subscription": "changes the caller's own subscription",
    "delete_subscription": "deletes the caller's own subscription",
    "bound_client": "SMART clients carry no patient data",
    "subscriptions_due": "the delivery worker's bookkeeping: subscription ids",
    "take_subscription": "the delivery worker's lease; hands back its time",
    "renew_subscription": "the delivery worker's lease; hands back its time",
    "release_subscription": "the delivery worker's lease; hands nothing back",
    "notification_sent": "the delivery worker's bookkeeping; hands nothing back",
    "notification_failed": "the delivery worker's bookkeeping; hands nothing back",
    "turn_off_subscription": "the delivery worker's bookkeeping; hands nothing back",
}


def weekly() -> Recurrence:
    return Recurrence(
        Frequency.WEEKLY,
        MONDAY.date(),
        dt.time(10, 0),
        dt.timedelta(minutes=90),
        "America/New_York",
        weekdays=(0,),
        count=2,
    )


def ids_in(value: Any, depth: int = 0) -> set[str]:
    """Every record id reachable from what a probe returned (records, their related
    records, their identifiers' parents), as far as the ORM relationships lead."""
    if depth > 3 or value is None or isinstance(value, (bool, int, dt.date)):
        return set()
    if isinstance(value, str):
        return {value}
    if isinstance(value, (list, tuple, set)):
        return {i for v in value for i in ids_in(v, depth)}
    if isinstance(value, Base):
        found = {getattr(value, "id", None), getattr(value, "record_id", None)}
        found |= {getattr(value, "patient_id", None), getattr(value, "entity_id", None)}
        found |= {getattr(value, "beneficiary_id", None)}
        for relation in inspect_relations(value):
            found |= ids_in(getattr(value, relation), depth + 1)
        return {i for i in found if isinstance(i, str)}
    if is_dataclass(value):
        return {i for f in fields(value) for i in ids_in(getattr(value, f.name), depth + 1)}
    return set()


def inspect_relations(record: Base) -> list[str]:
    return [r.key for r in orm_inspect(type(record)).relationships]


def callers(world: World) -> list[tuple[str, Access, set[str]]]:
    return [
        ("staff", STAFF, world.hidden_from_staff()),
        ("payer", payer_access(world.payer_id), world.hidden_from_payer()),
    ]


def test_the_probe_table_names_every_public_store_method():
    public = {name for name, _ in inspect.getmembers(Store) if not name.startswith("_")}
    public -= {"access"}
    assert public == set(READS) | set(REFUSED) | set(NO_PATIENT_DATA)


def test_no_store_read_hands_out_what_the_caller_may_not_see(database, world):
    for who, access, hidden in callers(world):
        for name, probe in READS.items():
            with database.read_as(access) as store:
                leaked = ids_in(probe(store, world, hidden)) & hidden
            assert not leaked, (who, name, leaked)


def test_every_store_write_aimed_at_hidden_data_is_refused_as_not_found(database, world):
    for who, access, hidden in callers(world):
        for name, probe in REFUSED.items():
            try:
                database.write_as(access, lambda store, p=probe, h=hidden: p(store, world, h))
            except NotFound:
                continue
            pytest.fail(f"{name}, as {who}, reached data hidden from it")


def test_the_restricted_patients_data_reaches_a_privacy_officer(database, world):
    with database.read_as(PRIVACY_OFFICER) as store:
        seen = ids_in(READS["get"](store, world, set()))
        assert world.hidden_from_staff() <= seen
        assert store.restricted_among([world.restricted, world.visible]) == [world.restricted]


def test_marking_a_patient_restricted_needs_the_privacy_permission(database, world):
    spec = PatientSpec(family="New", restricted=True)
    with pytest.raises(PermissionRequired):
        database.write_as(STAFF, lambda store: store.register_patient(spec, HASHER))
