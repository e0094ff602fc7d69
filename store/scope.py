"""The caller's store: the one way the HTTP layer and the operations reach data.

A `Store` is one database transaction seen by one caller (`Access`), in the spirit of
cosmicpython's unit of work. Every record it hands out, every query it runs and every
use case it calls is already filtered by that caller's visibility (store.visibility:
restricted patients, granular scopes, a payer's members), so no caller passes `access`
along or tests a restriction itself. The transaction belongs to whoever opened the
store (`Database.read_as`, `Database.write_as`): a Bundle runs many writes in one.

Entry points, by purpose:

* reading: `get`, `get_many`, `visible_ids`, `search`, `versions`, `version`,
  `locked`, `narrowed`;
* the audit trail: `record`, `record_many`, `restricted_among` (whose reads to audit);
* writes of each resource kind: `book`, `rebook`, `register_patient`, `update_patient`,
  `create_coverage`, `update_coverage`, `create_schedule` … `update_provider`;
* series: `preview_series`, `book_series`, `resolve_draft`, `cancel_series`;
* SMART clients (no patient data, so no visibility): `find_client`, `use_assertion`;
* subscriptions (their own block below): the caller's own (`create_subscription` …
  `delete_subscription`), what their subscriber may be told (`notifications`,
  `matching`: opened with the subscriber's access), and the delivery worker's
  bookkeeping (`subscriptions_due` … `turn_off_subscription`);
* `savepoint`: a nested transaction a caller may roll back on its own.

The use cases themselves keep their shape, `use_case(db, …, access, …)`, in their own
modules; each method here binds the transaction and the caller's access.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import TypeVar

from sqlalchemy.orm import Session, lazyload

from store import (
    booking,
    clients,
    directory,
    history,
    insurance,
    outbox,
    patients,
    promotion,
    series,
    sessions,
    subscriptions,
    waitlist,
)
from store import search as queries
from store.access import Access
from store.audit import Audited, AuditEntry
from store.audit import record as record_entry
from store.audit import record_many as record_entries
from store.models import (
    ApiClient,
    Base,
    Booking,
    Coverage,
    Department,
    GroupSession,
    Patient,
    Provider,
    ProviderGroup,
    ProviderSchedule,
    RecordVersion,
    Subscription,
)
from store.search import AnyOf
from store.ssn import SsnHasher
from store.visibility import narrowed, restricted_among

M = TypeVar("M", bound=Base)


class Store:
    """One transaction, as one caller may see it."""

    def __init__(self, db: Session, access: Access) -> None:
        self._db = db
        self.access = access

    def as_(self, access: Access) -> Store:
        """The same transaction seen with other grants (a write checks its result with
        the interaction's own scopes, which may be narrower than reading's)."""
        return Store(self._db, access)

    # Reading ---------------------------------------------------------------------------

    def get(self, kind: type[M], ident: str) -> M | None:
        """The record, or None when unknown or hidden from the caller."""
        return queries.get_one(self._db, kind, ident, self.access)

    def get_many(self, kind: type[M], ids: Sequence[str]) -> list[M]:
        """The visible records among `ids` (one query; order not guaranteed)."""
        return queries.get_many(self._db, kind, ids, self.access)

    def visible_ids(self, kind: type[Base], ids: Iterable[str]) -> set[str]:
        """Which of these ids name a record of `kind` the caller may see."""
        return queries.visible_ids(self._db, kind, ids, self.access)

    def search(self, query: queries.Query) -> queries.Page:
        """A page of matches (and the total) among the records the caller may see."""
        return queries.run(self._db, replace(query, access=self.access))

    def narrowed(self, kind: type[Base]) -> bool:
        """Whether anything beyond patient restriction limits what the caller sees of `kind`."""
        return narrowed(kind, self.access)

    def locked(self, kind: type[M], ident: str) -> M | None:
        """The record, locked for update in this transaction; None when hidden."""
        # Without eager joins: PostgreSQL locks no row on the nullable side of an outer join.
        record = self._db.get(kind, ident, with_for_update=True, options=[lazyload("*")])
        return record if record is not None and self.get(kind, ident) is not None else None

    def versions(self, kind: type[Base], ident: str) -> list[RecordVersion]:
        """Every kept version of a visible record, newest first (none when hidden): a
        record hidden now hides its whole history."""
        if self.get(kind, ident) is None:
            return []
        return history.versions_of(self._db, kind, ident)

    def version(self, kind: type[Base], ident: str, version: int) -> RecordVersion | None:
        """One kept version of a visible record (None when hidden, or no such version)."""
        if self.get(kind, ident) is None:
            return None
        return history.version_of(self._db, kind, ident, version)

    def session_versions_to_keep(self) -> list[GroupSession]:
        """The group sessions whose new versions this transaction's commit keeps, as held
        now (`history.held_pending`): a series' `$book` renders their snapshots while
        its bookings are still being written. (Sessions hold no patient data.)"""
        return [r for r in history.held_pending(self._db) if isinstance(r, GroupSession)]

    # The audit trail -------------------------------------------------------------------

    def record(self, entry: AuditEntry) -> None:
        record_entry(self._db, entry)

    def record_many(self, entries: list[AuditEntry]) -> None:
        record_entries(self._db, entries)

    def restricted_among(self, patient_ids: Iterable[str]) -> list[str]:
        """Which of these patients are restricted (and seen by the caller): disclosing
        their data is audited."""
        return restricted_among(self._db, patient_ids, self.access)

    # Writes ----------------------------------------------------------------------------

    def book(
        self, request: booking.BookingRequest, *, booking_id: str | None = None
    ) -> booking.BookingResult:
        return booking.book_patient(self._db, request, self.access, booking_id=booking_id)

    def join_waitlist(
        self, request: booking.BookingRequest, *, booking_id: str | None = None
    ) -> booking.BookingResult:
        return waitlist.join_waitlist(self._db, request, self.access, booking_id=booking_id)

    def has_lapsed_offers(self) -> bool:
        """Whether a waitlist offer has lapsed and still holds its place (says no more)."""
        return promotion.has_lapsed_offers(self._db)

    def sweep_expired_offers(self) -> int:
        """Let every lapsed offer go and pass its place on (the server's own act, for
        promptness); how many lapsed, and nothing about whose they were."""
        return len(promotion.sweep_expired_offers(self._db))

    def rebook(
        self,
        booking_id: str,
        request: booking.BookingRequest,
        *,
        expected_version: int | None = None,
    ) -> booking.BookingResult:
        return booking.update_booking(
            self._db, booking_id, request, self.access, expected_version=expected_version
        )

    def register_patient(
        self, spec: patients.PatientSpec, ssn: SsnHasher, *, patient_id: str | None = None
    ) -> Patient:
        return patients.register_patient(self._db, spec, ssn, self.access, patient_id=patient_id)

    def update_patient(
        self,
        patient_id: str,
        spec: patients.PatientSpec,
        ssn: SsnHasher,
        *,
        expected_version: int | None = None,
    ) -> Patient:
        return patients.update_patient(
            self._db, patient_id, spec, ssn, self.access, expected_version=expected_version
        )

    def create_coverage(
        self, spec: insurance.CoverageSpec, *, coverage_id: str | None = None
    ) -> Coverage:
        return insurance.create_coverage(self._db, spec, self.access, coverage_id=coverage_id)

    def update_coverage(
        self, coverage_id: str, spec: insurance.CoverageSpec, *, expected_version: int | None = None
    ) -> Coverage:
        return insurance.update_coverage(
            self._db, coverage_id, spec, self.access, expected_version=expected_version
        )

    # The clinic's own records carry no patient data: any caller allowed to write them
    # (the schedule-admin permission, checked above the store) sees them all.

    def create_schedule(
        self, spec: sessions.ScheduleSpec, *, schedule_id: str | None = None
    ) -> ProviderSchedule:
        return sessions.create_schedule(self._db, spec, schedule_id=schedule_id)

    def update_schedule(
        self, schedule_id: str, spec: sessions.ScheduleSpec, *, expected_version: int | None = None
    ) -> ProviderSchedule:
        return sessions.update_schedule(
            self._db, schedule_id, spec, expected_version=expected_version
        )

    def create_session(
        self, spec: sessions.SessionSpec, *, session_id: str | None = None
    ) -> GroupSession:
        return sessions.create_session(self._db, spec, session_id=session_id)

    def update_session(
        self, session_id: str, spec: sessions.SessionSpec, *, expected_version: int | None = None
    ) -> GroupSession:
        return sessions.update_session(
            self._db, session_id, spec, expected_version=expected_version
        )

    def create_provider_group(
        self, spec: directory.OrganizationSpec, *, group_id: str | None = None
    ) -> ProviderGroup:
        return directory.create_provider_group(self._db, spec, group_id=group_id)

    def update_provider_group(
        self,
        group_id: str,
        spec: directory.OrganizationSpec,
        *,
        expected_version: int | None = None,
    ) -> ProviderGroup:
        return directory.update_provider_group(
            self._db, group_id, spec, expected_version=expected_version
        )

    def create_department(
        self, spec: directory.DepartmentSpec, *, department_id: str | None = None
    ) -> Department:
        return directory.create_department(self._db, spec, department_id=department_id)

    def update_department(
        self,
        department_id: str,
        spec: directory.DepartmentSpec,
        *,
        expected_version: int | None = None,
    ) -> Department:
        return directory.update_department(
            self._db, department_id, spec, expected_version=expected_version
        )

    def create_provider(
        self, spec: directory.ProviderSpec, *, provider_id: str | None = None
    ) -> Provider:
        return directory.create_provider(self._db, spec, provider_id=provider_id)

    def update_provider(
        self, provider_id: str, spec: directory.ProviderSpec, *, expected_version: int | None = None
    ) -> Provider:
        return directory.update_provider(
            self._db, provider_id, spec, expected_version=expected_version
        )

    # Series ----------------------------------------------------------------------------

    def preview_series(
        self, query: series.SeriesQuery, *, today: dt.date, limits: series.Limits
    ) -> series.SeriesPreview:
        return series.preview_series(self._db, query, self.access, today=today, limits=limits)

    def book_series(
        self,
        request: series.SeriesBooking,
        *,
        today: dt.date,
        limits: series.Limits,
        audited: Audited | None = None,
    ) -> series.SeriesResult:
        return series.book_series(
            self._db, request, self.access, today=today, limits=limits, audited=audited
        )

    def resolve_draft(
        self,
        booking_id: str,
        request: booking.BookingRequest,
        *,
        expected_version: int | None = None,
    ) -> booking.BookingResult:
        return series.resolve_draft(
            self._db, booking_id, request, self.access, expected_version=expected_version
        )

    def cancel_series(
        self,
        booking_id: str,
        *,
        following: bool,
        reason: str | None = None,
        expected_version: int | None = None,
    ) -> list[Booking]:
        return series.cancel_series(
            self._db,
            booking_id,
            self.access,
            following=following,
            reason=reason,
            expected_version=expected_version,
        )

    # SMART clients ---------------------------------------------------------------------

    def find_client(self, client_id: str) -> ApiClient | None:
        return clients.find_client(self._db, client_id)

    def use_assertion(self, client_id: str, jti: str, expires: dt.datetime) -> None:
        clients.use_assertion(self._db, client_id, jti, expires)

    # Subscriptions and their notifications ---------------------------------------------
    #
    # The caller's own subscriptions: a subscription belongs to the token subject that
    # created it (`Binding.owner`); anyone else is told NotFound. What an event reveals
    # is read through a Store opened with the *subscriber's* access (`as_`), so the
    # visibility rule is the only filter. The delivery worker's bookkeeping is the
    # server's own act on subscription rows, which hold no patient records.

    def create_subscription(
        self,
        binding: subscriptions.Binding,
        server_base: str,
        spec: subscriptions.SubscriptionSpec,
        *,
        subscription_id: str | None = None,
    ) -> Subscription:
        return subscriptions.create_subscription(
            self._db, binding, server_base, spec, subscription_id=subscription_id
        )

    def own_subscription(self, owner: str, ident: str) -> Subscription:
        """The owner's subscription, or NotFound (someone else's is not there for them)."""
        return subscriptions.owned(self._db, owner, ident)

    def own_subscriptions(self, owner: str, status: str | None = None) -> list[Subscription]:
        return subscriptions.owned_by(self._db, owner, status)

    def update_subscription(
        self,
        binding: subscriptions.Binding,
        ident: str,
        spec: subscriptions.SubscriptionSpec,
        *,
        expected_version: int | None = None,
    ) -> Subscription:
        return subscriptions.update_subscription(
            self._db, binding, ident, spec, expected_version=expected_version
        )

    def delete_subscription(self, owner: str, ident: str) -> None:
        subscriptions.delete_subscription(self._db, owner, ident)

    def bound_client(self, subscription: Subscription) -> ApiClient | None:
        """The API client a subscription is bound to, while it is registered."""
        return outbox.bound_client(self._db, subscription)

    def notifications(
        self, subscription_id: str, since: int, until: int, limit: int
    ) -> list[outbox.Told]:
        """A subscription's events `since`..`until` (at most `limit`), each naming its
        record (and that version's document) only when the caller may see it now."""
        return outbox.told(self._db, subscription_id, since, until, limit, self.access)

    def matching(self, kind: type[Base], ids: Iterable[str], where: Sequence[AnyOf]) -> set[str]:
        """Which of these records the caller may see and match `where` (a subscription's
        filters)."""
        return outbox.matching(self._db, kind, ids, where, self.access)

    def subscriptions_due(self, now: dt.datetime) -> list[str]:
        return outbox.due(self._db, now)

    def take_subscription(
        self, ident: str, now: dt.datetime, lease: dt.timedelta
    ) -> dt.datetime | None:
        return outbox.take(self._db, subscription_id=ident, now=now, lease=lease)

    def renew_subscription(
        self, ident: str, held: dt.datetime, until: dt.datetime
    ) -> dt.datetime | None:
        return outbox.renew(self._db, subscription_id=ident, held=held, until=until)

    def release_subscription(self, ident: str, held: dt.datetime) -> None:
        outbox.release(self._db, subscription_id=ident, held=held)

    def notification_sent(
        self, ident: str, through: int | None, *, handshake: bool, now: dt.datetime
    ) -> None:
        outbox.sent(self._db, subscription_id=ident, through=through, handshake=handshake, now=now)

    def notification_failed(
        self,
        ident: str,
        reason: str,
        *,
        now: dt.datetime,
        backoff: dt.timedelta,
        give_up_after: int,
    ) -> None:
        outbox.failed(
            self._db,
            subscription_id=ident,
            reason=reason,
            now=now,
            backoff=backoff,
            give_up_after=give_up_after,
        )

    def turn_off_subscription(self, ident: str, reason: str, now: dt.datetime) -> None:
        outbox.turn_off(self._db, subscription_id=ident, reason=reason, now=now)

    # Transactions ----------------------------------------------------------------------

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """A nested transaction, rolled back (with the versions it gave) when an
        exception leaves it."""
        with history.savepoint(self._db):
            yield
