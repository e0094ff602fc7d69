"""SQLAlchemy 2 typed models of the group-session world.

Times are naive UTC instants in the database (see `UTCDateTime`); the store hands
out timezone-aware UTC datetimes.
"""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    ColumnElement,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    case,
    func,
    text,
    true,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.hybrid import hybrid_property
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Stores aware datetimes as naive UTC; returns aware UTC datetimes."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use an aware one")
        utc = value.astimezone(dt.UTC)
        return dt.datetime.combine(utc.date(), utc.time())  # (`time()` has no zone)

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        assert isinstance(value, dt.datetime)
        # `combine`, not `replace(tzinfo=...)`: CPython 3.11's `replace` parses its keyword
        # slowly (2.2 µs against 0.55 here), and a 500-Slot page converts 1,500 of these.
        return dt.datetime.combine(value.date(), value.time(), dt.UTC)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Base(DeclarativeBase):
    pass


class Versioned:
    """Every record the API exposes carries a version and a last-updated instant."""

    version: Mapped[int] = mapped_column(Integer, default=1, nullable=False)
    last_updated: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)

    def touch(self) -> None:
        self.version = (self.version or 0) + 1
        self.last_updated = utcnow()


class OrganizationKind(enum.StrEnum):
    PROVIDER_GROUP = "provider-group"
    PAYER = "payer"


class ProviderGroup(Versioned, Base):
    """An organization: the clinic's provider group, or a payer (insurer)."""

    __tablename__ = "provider_group"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(
        String(20), default=OrganizationKind.PROVIDER_GROUP, server_default="provider-group"
    )
    identifier_system: Mapped[str | None] = mapped_column(String(200))
    identifier_value: Mapped[str | None] = mapped_column(String(100))
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    # The Organization as a client sent it (JSON, without id/meta), so elements we do
    # not model come back as sent; None for records made by the clinic's own tools.
    document: Mapped[str | None] = mapped_column(Text)


class Department(Versioned, Base):
    """A department (FHIR Location) with its IANA time zone. Inactive ones keep their
    sessions and bookings but take no new sessions."""

    __tablename__ = "department"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    timezone: Mapped[str] = mapped_column(String(64))
    provider_group_id: Mapped[str] = mapped_column(ForeignKey("provider_group.id"))
    identifier_system: Mapped[str | None] = mapped_column(String(200))
    identifier_value: Mapped[str | None] = mapped_column(String(100))
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    document: Mapped[str | None] = mapped_column(Text)  # as for ProviderGroup


class Provider(Versioned, Base):
    """A provider (FHIR Practitioner). Inactive ones keep their history but take no new
    sessions."""

    __tablename__ = "provider"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    family: Mapped[str] = mapped_column(String(100))
    given: Mapped[str] = mapped_column(String(100))
    prefix: Mapped[str | None] = mapped_column(String(20))
    identifier_system: Mapped[str | None] = mapped_column(String(200))
    identifier_value: Mapped[str | None] = mapped_column(String(100))
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    document: Mapped[str | None] = mapped_column(Text)  # as for ProviderGroup

    @property
    def display(self) -> str:
        return " ".join(p for p in (self.prefix, self.given, self.family) if p)


class ProviderSchedule(Versioned, Base):
    """A provider's calendar tab in one department (or, without a provider, a
    department's own calendar, as a client may create one)."""

    __tablename__ = "provider_schedule"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    provider_id: Mapped[str | None] = mapped_column(ForeignKey("provider.id"), index=True)
    department_id: Mapped[str] = mapped_column(ForeignKey("department.id"), index=True)
    name: Mapped[str | None] = mapped_column(String(200))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    horizon_start: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    horizon_end: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    identifier_system: Mapped[str | None] = mapped_column(String(200))
    identifier_value: Mapped[str | None] = mapped_column(String(100))
    #: What happens when a place frees in one of its full sessions (store.promotion):
    #: `book` books the first eligible waitlist entry, `offer` holds the place for it
    #: for `offer_seconds` until it accepts.
    waitlist_policy: Mapped[str] = mapped_column(String(10), default="book", server_default="book")
    offer_seconds: Mapped[int | None] = mapped_column(Integer)
    # The Schedule as a client created it (JSON, without id/meta), so elements we do
    # not model come back as sent; None for schedules made by the clinic's own tools.
    document: Mapped[str | None] = mapped_column(Text)

    provider: Mapped[Provider | None] = relationship(lazy="joined")
    department: Mapped[Department] = relationship(lazy="joined", innerjoin=True)

    @property
    def provider_ids(self) -> tuple[str, ...]:
        """The providers a booking in this calendar lists by default."""
        return (self.provider_id,) if self.provider_id else ()


class Availability(enum.StrEnum):
    OPEN = "open"
    FULL = "full"
    BLOCKED = "blocked"


def availability_of(capacity: int, booked: int, blocked: bool) -> Availability:
    if blocked:
        return Availability.BLOCKED
    if booked >= capacity:
        return Availability.FULL
    return Availability.OPEN


class GroupSession(Versioned, Base):
    """A group session: `booked` of `capacity` places taken.

    The database itself refuses `booked > capacity` (check constraint), and the
    only code that changes `booked` is the conditional UPDATE in `store.booking`.
    """

    __tablename__ = "group_session"
    __table_args__ = (
        CheckConstraint("booked >= 0 AND booked <= capacity", name="ck_session_booked_in_range"),
        CheckConstraint("capacity >= 0", name="ck_session_capacity_nonneg"),
        CheckConstraint("end_at > start_at", name="ck_session_end_after_start"),
        Index("ix_session_schedule_start", "schedule_id", "start_at"),
        Index("ix_session_start", "start_at"),
        Index("ix_session_identifier", "identifier_value"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    schedule_id: Mapped[str] = mapped_column(ForeignKey("provider_schedule.id"))
    start: Mapped[dt.datetime] = mapped_column("start_at", UTCDateTime)
    end: Mapped[dt.datetime] = mapped_column("end_at", UTCDateTime)
    capacity: Mapped[int] = mapped_column(Integer)
    booked: Mapped[int] = mapped_column(Integer, default=0)
    appointment_type: Mapped[str | None] = mapped_column(String(64))
    service_type: Mapped[str | None] = mapped_column(String(64))
    closed: Mapped[bool] = mapped_column(Boolean, default=False)
    blocked: Mapped[bool] = mapped_column(Boolean, default=False)
    comment: Mapped[str | None] = mapped_column(Text)
    # The first business identifier a client gave (searchable: Slot?identifier=...).
    identifier_system: Mapped[str | None] = mapped_column(String(200))
    identifier_value: Mapped[str | None] = mapped_column(String(100))
    # The client's Slot elements we do not model (identifier, serviceCategory, ...) and
    # the status a held session was declared with; JSON, None when there are none.
    document: Mapped[str | None] = mapped_column(Text)

    schedule: Mapped[ProviderSchedule] = relationship(lazy="joined", innerjoin=True)

    @hybrid_property
    def availability(self) -> Availability:
        """Open (a place is free), full, or blocked by an admin: one rule, read in Python
        (a rendered Slot, series matching) and in SQL (`Slot?status=`, and the WHERE of
        the conditional UPDATE that takes a place, store.booking)."""
        return availability_of(self.capacity, self.booked, self.blocked)

    @availability.inplace.expression
    @classmethod
    def _availability_sql(cls) -> ColumnElement[str]:
        return case(
            (cls.blocked.is_(True), Availability.BLOCKED.value),
            (cls.booked < cls.capacity, Availability.OPEN.value),
            else_=Availability.FULL.value,
        )

    @property
    def places_left(self) -> int:
        return max(self.capacity - self.booked, 0)


#: A folded name (lower case, no accents): bytewise collation on PostgreSQL.
_FOLDED = String(100).with_variant(String(100, collation="C"), "postgresql")


class Patient(Versioned, Base):
    __tablename__ = "patient"
    # Folded names are search keys: compared and sorted bytewise on both backends
    # (SQLite's BINARY, PostgreSQL's "C" collation whatever the database's), so a name
    # prefix is an index range and a page of matches comes off the index in order.
    # `restricted` last: staff's view (restricted patients hidden) is decided inside the
    # index, so their bounded count is an index-only scan that stops at the bound
    # (migration 0012); the key before it is unique, so it changes no order.
    __table_args__ = (
        Index("ix_patient_name_order", "family_folded", "given_folded", "id", "restricted"),
        Index("ix_patient_given_prefix", "given_folded"),
        # The few restricted patients, found without scanning every patient (the audit
        # trail's visibility starts from them: store.search).
        Index(
            "ix_patient_restricted",
            "id",
            sqlite_where=text("restricted IS 1"),
            postgresql_where=text("restricted IS TRUE"),
        ),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    family: Mapped[str] = mapped_column(String(100))
    given: Mapped[str] = mapped_column(String(100), default="")
    family_folded: Mapped[str] = mapped_column(_FOLDED)
    given_folded: Mapped[str] = mapped_column(_FOLDED, default="")
    birth_date: Mapped[dt.date | None] = mapped_column(Date)
    gender: Mapped[str | None] = mapped_column(String(16))
    restricted: Mapped[bool] = mapped_column(Boolean, default=False)
    #: The registration as the EHR sent it (opaque JSON text, secrets already removed),
    #: so nothing a client registers is lost; None for records made inside the store.
    document: Mapped[str | None] = mapped_column(Text)

    identifiers: Mapped[list[PatientIdentifier]] = relationship(
        lazy="selectin", cascade="all, delete-orphan", order_by="PatientIdentifier.position"
    )
    phones: Mapped[list[PatientPhone]] = relationship(
        lazy="selectin", cascade="all, delete-orphan", order_by="PatientPhone.position"
    )

    @property
    def phone(self) -> str | None:
        return self.phones[0].value if self.phones else None


class PatientIdentifier(Base):
    """An identifier of a patient. For an SSN, `value` is a keyed hash (see store.ssn)
    and `last4` keeps the last four digits for masked display."""

    __tablename__ = "patient_identifier"
    __table_args__ = (Index("ix_patient_identifier_value", "system", "value"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    patient_id: Mapped[str] = mapped_column(
        ForeignKey("patient.id", ondelete="CASCADE"), index=True
    )
    position: Mapped[int] = mapped_column(Integer, default=0)
    system: Mapped[str] = mapped_column(String(200))
    value: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str | None] = mapped_column(String(16))
    last4: Mapped[str | None] = mapped_column(String(4))


class PatientPhone(Base):
    __tablename__ = "patient_phone"
    __table_args__ = (Index("ix_patient_phone_by_digits", "digits"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    patient_id: Mapped[str] = mapped_column(
        ForeignKey("patient.id", ondelete="CASCADE"), index=True
    )
    position: Mapped[int] = mapped_column(Integer, default=0)
    value: Mapped[str] = mapped_column(String(40))
    digits: Mapped[str] = mapped_column(String(20))
    use: Mapped[str | None] = mapped_column(String(10))


class Coverage(Versioned, Base):
    """A patient's insurance plan, or self-pay (payor = the patient)."""

    __tablename__ = "coverage"
    __table_args__ = (
        Index("ix_coverage_beneficiary", "beneficiary_id"),
        Index("ix_coverage_payor", "payor_kind", "payor_id"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    beneficiary_id: Mapped[str] = mapped_column(ForeignKey("patient.id"))
    subscriber_patient_id: Mapped[str | None] = mapped_column(ForeignKey("patient.id"), index=True)
    subscriber_id: Mapped[str | None] = mapped_column(String(100))
    payor_kind: Mapped[str] = mapped_column(String(20))  # "organization" or "patient"
    payor_id: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(20))
    type_system: Mapped[str | None] = mapped_column(String(200))
    type_code: Mapped[str | None] = mapped_column(String(64))
    self_pay: Mapped[bool] = mapped_column(Boolean, default=False)
    order: Mapped[int | None] = mapped_column("rank", Integer)
    period_start: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    period_end: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    document: Mapped[str | None] = mapped_column(Text)

    identifiers: Mapped[list[CoverageIdentifier]] = relationship(
        lazy="selectin", cascade="all, delete-orphan"
    )


class CoverageIdentifier(Base):
    __tablename__ = "coverage_identifier"
    __table_args__ = (Index("ix_coverage_identifier_value", "system", "value"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    coverage_id: Mapped[str] = mapped_column(
        ForeignKey("coverage.id", ondelete="CASCADE"), index=True
    )
    system: Mapped[str] = mapped_column(String(200))
    value: Mapped[str] = mapped_column(String(100))


class BookingStatus(enum.StrEnum):
    """Lifecycle of a booking; values double as the FHIR Appointment.status codes."""

    PROPOSED = "proposed"
    BOOKED = "booked"
    ARRIVED = "arrived"
    CHECKED_IN = "checked-in"
    FULFILLED = "fulfilled"
    NOSHOW = "noshow"
    CANCELLED = "cancelled"
    ENTERED_IN_ERROR = "entered-in-error"
    #: On a full session's waitlist: holds no place (store.waitlist).
    WAITLIST = "waitlist"
    #: A waitlist entry offered a freed place, held for it until `offer_expires`.
    PENDING = "pending"


#: Statuses in which a booking holds a place in its session.
HOLDS_PLACE = frozenset(
    {
        BookingStatus.BOOKED,
        BookingStatus.ARRIVED,
        BookingStatus.CHECKED_IN,
        BookingStatus.FULFILLED,
        BookingStatus.NOSHOW,
        BookingStatus.PENDING,
    }
)

#: The same, as the SQL condition of the partial index (and of checks outside the ORM).
HOLDS_PLACE_SQL = "status IN ({})".format(", ".join(f"'{s.value}'" for s in sorted(HOLDS_PLACE)))
_WAITLIST_SQL = f"status = '{BookingStatus.WAITLIST.value}'"
#: A live waitlist offer, as its partial index states it (queries repeat it as text: a
#: bound status is not proved to match the index's condition in a generic plan).
PENDING_SQL = f"status = '{BookingStatus.PENDING.value}'"


class Booking(Versioned, Base):
    """A patient's place in a group session (or, when proposed, a draft without one)."""

    __tablename__ = "booking"
    __table_args__ = (
        # One active booking per patient per session: the database refuses the second.
        Index(
            "uq_booking_patient_session_active",
            "session_id",
            "patient_id",
            unique=True,
            sqlite_where=text(HOLDS_PLACE_SQL),
            postgresql_where=text(HOLDS_PLACE_SQL),
        ),
        # One waitlist entry per patient per session, and one queue position per entry.
        Index(
            "uq_booking_patient_session_waitlist",
            "session_id",
            "patient_id",
            unique=True,
            sqlite_where=text(_WAITLIST_SQL),
            postgresql_where=text(_WAITLIST_SQL),
        ),
        # Also the index of a session's bookings (its first column): a second index on
        # session_id alone cost every booking an index entry and served no query better.
        UniqueConstraint("session_id", "queue_position", name="uq_booking_queue_position"),
        # Live offers by expiry: the lapsed-offer probe of every write and the sweep
        # (a lapsed or declined offer keeps its expiry; it is not read).
        Index(
            "ix_booking_offer_pending",
            "offer_expires",
            sqlite_where=text(PENDING_SQL),
            postgresql_where=text(PENDING_SQL),
        ),
        Index("ix_booking_patient", "patient_id"),
        Index("ix_booking_start", "start_at"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    session_id: Mapped[str | None] = mapped_column(ForeignKey("group_session.id"))
    patient_id: Mapped[str] = mapped_column(ForeignKey("patient.id"))
    status: Mapped[str] = mapped_column(String(20))
    start: Mapped[dt.datetime | None] = mapped_column("start_at", UTCDateTime)
    end: Mapped[dt.datetime | None] = mapped_column("end_at", UTCDateTime)
    appointment_type: Mapped[str | None] = mapped_column(String(64))
    department_id: Mapped[str | None] = mapped_column(ForeignKey("department.id"))
    comment: Mapped[str | None] = mapped_column(Text)
    cancellation_reason: Mapped[str | None] = mapped_column(String(200))
    created: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: The recurring series this booking is an occurrence of (see `Series`), and its
    #: position in the series (1-based, in the order the recurrence generates them).
    series_id: Mapped[str | None] = mapped_column(ForeignKey("series.id"), index=True)
    recurrence_id: Mapped[int | None] = mapped_column(Integer)
    #: Waitlist order (store.waitlist): `queue_position` is the session's join sequence
    #: (first come, first served), set while the entry waits; a `priority` of 1 (highest)
    #: to 9 goes ahead of entries without one. `offer_expires`: when a pending offer
    #: lapses. `waitlist_note`: why the entry was last passed over for a freed place.
    queue_position: Mapped[int | None] = mapped_column(Integer)
    priority: Mapped[int | None] = mapped_column(Integer)
    offer_expires: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    waitlist_note: Mapped[str | None] = mapped_column(String(300))

    series: Mapped[Series | None] = relationship(lazy="selectin")
    providers: Mapped[list[BookingProvider]] = relationship(
        lazy="selectin", cascade="all, delete-orphan", order_by="BookingProvider.position"
    )
    identifiers: Mapped[list[BookingIdentifier]] = relationship(
        lazy="selectin", cascade="all, delete-orphan"
    )
    coverages: Mapped[list[BookingCoverage]] = relationship(
        lazy="selectin", cascade="all, delete-orphan", order_by="BookingCoverage.rank"
    )

    @property
    def holds_place(self) -> bool:
        return self.session_id is not None and self.status in HOLDS_PLACE


#: Waitlist order (store.waitlist): a priority of 1 (highest) to 9 first, entries without
#: one after them, each group first come, first served by its join sequence.
WAITLIST_ORDER = (func.coalesce(Booking.priority, 10), Booking.queue_position)


class BookingProvider(Base):
    __tablename__ = "booking_provider"
    __table_args__ = (UniqueConstraint("booking_id", "provider_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    booking_id: Mapped[str] = mapped_column(ForeignKey("booking.id", ondelete="CASCADE"))
    provider_id: Mapped[str] = mapped_column(ForeignKey("provider.id"), index=True)
    position: Mapped[int] = mapped_column(Integer, default=0)


class BookingIdentifier(Base):
    """Business identifiers of bookings are unique per patient: a retried create cannot
    book twice.

    Why per patient and not across all bookings: a restricted patient's bookings do not
    exist for most callers, and a clinic-wide rule would tell them otherwise (booking
    someone with identifier X, or `If-None-Exist` on X, would be refused exactly when a
    hidden booking carries X). Within one patient every booking is visible to anyone who
    may book that patient, so a refusal never reveals a hidden booking, and a retry (always
    for the same patient) is still caught. The price: two patients' bookings may carry the
    same system|value, which a caller who sees both finds with `identifier=` (add
    `patient=` to an `If-None-Exist` that must match one).
    """

    __tablename__ = "booking_identifier"
    __table_args__ = (
        UniqueConstraint("patient_id", "system", "value", name="uq_booking_identifier_patient"),
        Index("ix_booking_identifier_value", "system", "value"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    booking_id: Mapped[str] = mapped_column(
        ForeignKey("booking.id", ondelete="CASCADE"), index=True
    )
    #: The booking's patient (a booking never changes patient): the uniqueness scope.
    patient_id: Mapped[str] = mapped_column(ForeignKey("patient.id"))
    system: Mapped[str] = mapped_column(String(200))
    value: Mapped[str] = mapped_column(String(100))


class BookingCoverage(Base):
    """The insurance chosen for a booking: rank 1 primary (or self-pay), 2 secondary."""

    __tablename__ = "booking_coverage"
    __table_args__ = (UniqueConstraint("booking_id", "rank"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    booking_id: Mapped[str] = mapped_column(ForeignKey("booking.id", ondelete="CASCADE"))
    coverage_id: Mapped[str] = mapped_column(ForeignKey("coverage.id"), index=True)
    rank: Mapped[int] = mapped_column(Integer)


class AuditRecord(Base):
    """Who did what to which record, when, and how it ended (FHIR AuditEvent)."""

    __tablename__ = "audit_record"
    __table_args__ = (Index("ix_audit_recorded", "recorded"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    recorded: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    action: Mapped[str] = mapped_column(String(1))  # C R U D E
    subtype: Mapped[str] = mapped_column(String(20))  # create, update, read, search, ...
    outcome: Mapped[str] = mapped_column(String(2))  # 0 success, 4 minor, 8 serious
    agent: Mapped[str] = mapped_column(String(200))
    entity_kind: Mapped[str | None] = mapped_column(String(40))
    entity_id: Mapped[str | None] = mapped_column(String(64), index=True)
    #: The patient whose data this is. Whether the record is shown follows the patient's
    #: *current* restriction (store.search.visibility), so nothing about it is kept here.
    patient_id: Mapped[str | None] = mapped_column(String(64), index=True)
    description: Mapped[str | None] = mapped_column(Text)


class Series(Base):
    """A patient's recurring series: the recurrence settings the occurrences came from.

    Its id is the id of the originating occurrence (the first one stored), so every
    occurrence's `series_id` also names the booking that carries the template. The
    columns mirror `store.recurrence.Recurrence`; `excluded` lists the recurrence ids
    the user removed from the preview ("3,5").
    """

    __tablename__ = "series"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    patient_id: Mapped[str] = mapped_column(ForeignKey("patient.id"), index=True)
    department_id: Mapped[str | None] = mapped_column(ForeignKey("department.id"))
    appointment_type: Mapped[str | None] = mapped_column(String(64))
    frequency: Mapped[str] = mapped_column(String(10))
    interval: Mapped[int] = mapped_column("repeat_interval", Integer, default=1)
    weekdays: Mapped[str] = mapped_column(String(20), default="")  # "0,2,4" = Mon, Wed, Fri
    month_day: Mapped[int | None] = mapped_column(Integer)
    nth_weekday: Mapped[str | None] = mapped_column(String(8))  # "1,2" = 2nd Tuesday
    first_date: Mapped[dt.date] = mapped_column(Date)
    local_time: Mapped[str] = mapped_column(String(15))  # wall-clock "10:00:00"
    duration_minutes: Mapped[int] = mapped_column(Integer)
    timezone: Mapped[str] = mapped_column(String(64))
    count: Mapped[int | None] = mapped_column(Integer)
    until: Mapped[dt.date | None] = mapped_column(Date)
    excluded: Mapped[str] = mapped_column(Text, default="")
    created: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class RecordVersion(Base):
    """A version of a record as the API showed it (store.history): opaque JSON text,
    one row per version number a record was given, written in the transaction that
    gave it. `kind` is the record's table name."""

    __tablename__ = "record_version"

    kind: Mapped[str] = mapped_column(String(40), primary_key=True)
    record_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    last_updated: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    document: Mapped[str] = mapped_column(Text)


class ApiClient(Base):
    """A system client (an EHR backend, a payer) registered for SMART Backend Services:
    the public keys its assertions are signed with, and the scopes it may be granted."""

    __tablename__ = "api_client"

    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    scope: Mapped[str] = mapped_column(Text)  # space-separated
    jwks: Mapped[str | None] = mapped_column(Text)  # a JWK Set as JSON
    jwks_url: Mapped[str | None] = mapped_column(String(2000))
    created: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class UsedAssertion(Base):
    """An assertion's `jti`, kept until the assertion expires so that no instance sharing
    the database accepts it twice (the primary key is the guard)."""

    __tablename__ = "used_assertion"
    __table_args__ = (Index("ix_used_assertion_expires", "expires"),)

    client_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    jti: Mapped[str] = mapped_column(String(200), primary_key=True)
    expires: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class Subscription(Base):
    """A client's standing request to be told of changes (FHIR Subscription, topic-based).

    `owner` and `scope` are the subscriber's token subject and scope claim: what a
    notification may reveal is decided with them, as for a search by that token, and
    never more than its creator may read now: `client_id` binds it to the registered
    API client that created it (that client's scopes now bound it; its removal turns
    it off), and `ends` (Subscription.end) is set no later than the creating token's
    expiry for a token no registered client holds.
    `events` is the last event number given (eventsSinceSubscriptionStart),
    `delivered` the last one the endpoint acknowledged; the delivery fields
    (`failures`, `next_attempt`, `lease_until`) belong to the delivery worker.
    """

    __tablename__ = "subscription"
    __table_args__ = (Index("ix_subscription_topic_status", "topic", "status"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner: Mapped[str] = mapped_column(String(200), index=True)
    scope: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20))  # requested | active | error | off
    topic: Mapped[str] = mapped_column(String(200))
    #: Filter queries as the client wrote them ("Appointment?patient=Patient/x"), one a line.
    criteria: Mapped[str] = mapped_column(Text, default="")
    endpoint: Mapped[str] = mapped_column(String(2000))
    #: The FHIR base URL the subscription was made at: notifications' full URLs use it.
    server_base: Mapped[str] = mapped_column(String(2000))
    content: Mapped[str] = mapped_column(String(20))  # empty | id-only | full-resource
    heartbeat_s: Mapped[int | None] = mapped_column(Integer)
    timeout_s: Mapped[int] = mapped_column(Integer, default=10)
    #: The Subscription as the client sent it (JSON, without id/meta/status).
    document: Mapped[str] = mapped_column(Text)
    version: Mapped[int] = mapped_column(Integer, default=1)
    last_updated: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    events: Mapped[int] = mapped_column(Integer, default=0)
    delivered: Mapped[int] = mapped_column(Integer, default=0)
    handshake_done: Mapped[bool] = mapped_column(Boolean, default=False)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    next_attempt: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    last_sent: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    #: When a heartbeat is owed if nothing else is sent before (None: no heartbeat).
    heartbeat_due: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    lease_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    client_id: Mapped[str | None] = mapped_column(String(200))
    ends: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class Notification(Base):
    """The outbox: one event for one subscription, written in the transaction that made
    the change. Its number is the subscription's next event number; `focus_*` name the
    record version the event is about (a `record_version` row)."""

    __tablename__ = "notification"

    subscription_id: Mapped[str] = mapped_column(
        ForeignKey("subscription.id", ondelete="CASCADE"), primary_key=True
    )
    event_number: Mapped[int] = mapped_column(Integer, primary_key=True)
    focus_kind: Mapped[str] = mapped_column(String(40))
    focus_id: Mapped[str] = mapped_column(String(64))
    focus_version: Mapped[int] = mapped_column(Integer)
    occurred: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
