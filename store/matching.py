"""Matching a series' occurrences to group sessions (DESIGN §5 `$find`).

A session matches an occurrence when it belongs to one of the chosen schedules, has
the requested appointment type (if any), has a place free, and starts exactly at the
occurrence's instant (its local date and wall-clock time in the department's zone);
`tolerance` widens that window, nearest start first. The candidate sessions of a
whole series come from one query (`candidate_sessions`); the rest is pure: sessions
and occurrences in, proposals out, so the rules are unit-tested without a database.
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import and_, select
from sqlalchemy.orm import Session, lazyload

from store.access import Access
from store.booking import Notice
from store.models import Availability, GroupSession
from store.recurrence import PROBLEM_DST_AMBIGUOUS, PROBLEM_DST_GAP, Occurrence
from store.visibility import visibility

#: Why an occurrence has no session (OperationOutcome detail codes).
NO_SESSION = "no-session"
SESSION_FULL = "session-full"
SESSION_BLOCKED = "session-blocked"
OTHER_TYPE = "other-appointment-type"


@dataclass(frozen=True)
class Proposal:
    """One occurrence of a previewed series: with its session, or why it has none."""

    occurrence: Occurrence
    session: GroupSession | None
    department_id: str | None
    provider_ids: tuple[str, ...]
    appointment_type: str | None
    notices: tuple[Notice, ...] = ()

    @property
    def matched(self) -> bool:
        return self.session is not None


@dataclass(frozen=True)
class Defaults:
    department_id: str | None
    provider_ids: tuple[str, ...]
    appointment_type: str | None


def propose_all(
    occurrences: Sequence[Occurrence],
    sessions: list[GroupSession],
    default: Defaults,
    *,
    tolerance: dt.timedelta,
    zone: str,
) -> list[Proposal]:
    """One proposal per occurrence: its best open session, or why it has none."""
    matcher = Matcher(sessions, tolerance)
    return [propose(o, matcher, default, zone) for o in occurrences]


def candidate_sessions(
    db: Session,
    schedule_ids: list[str],
    occurrences: Sequence[Occurrence],
    tolerance: dt.timedelta,
    access: Access,
) -> list[GroupSession]:
    """Every session of the schedules that could match an occurrence and the caller may
    see (a granular Slot scope narrows the matches too): one query."""
    starts = sorted(o.start for o in occurrences if o.start is not None)
    if not starts or not schedule_ids:
        return []
    if tolerance:
        when = and_(
            GroupSession.start >= starts[0] - tolerance,
            GroupSession.start <= starts[-1] + tolerance,
        )
    else:
        when = GroupSession.start.in_(starts)
    statement = (
        select(GroupSession)
        .where(GroupSession.schedule_id.in_(schedule_ids), when, visibility(GroupSession, access))
        .order_by(GroupSession.start, GroupSession.schedule_id, GroupSession.id)
        # Their schedules are the ones just loaded: found in the session, not joined.
        .options(lazyload(GroupSession.schedule))
    )
    return list(db.scalars(statement).all())


class Matcher:
    """Sessions sorted by start; finds those within the tolerance of an instant."""

    def __init__(self, sessions: list[GroupSession], tolerance: dt.timedelta) -> None:
        self.sessions = sessions
        self.starts = [s.start for s in sessions]
        self.tolerance = tolerance

    def near(self, instant: dt.datetime) -> list[GroupSession]:
        lo = bisect.bisect_left(self.starts, instant - self.tolerance)
        hi = bisect.bisect_right(self.starts, instant + self.tolerance)
        return sorted(self.sessions[lo:hi], key=lambda s: (abs(s.start - instant), s.start))


def propose(occurrence: Occurrence, matcher: Matcher, default: Defaults, zone: str) -> Proposal:
    name = label(occurrence, zone)
    notices: list[Notice] = []
    if occurrence.problem == PROBLEM_DST_GAP or occurrence.start is None:
        notices.append(
            Notice(
                PROBLEM_DST_GAP,
                f"{name} does not exist: the clocks jump forward over it (daylight saving "
                "time); no time is proposed and nothing was shifted",
            )
        )
        return Proposal(
            occurrence, None, default.department_id, default.provider_ids,
            default.appointment_type, tuple(notices),
        )  # fmt: skip
    if occurrence.problem == PROBLEM_DST_AMBIGUOUS:
        notices.append(
            Notice(
                PROBLEM_DST_AMBIGUOUS,
                f"{name} happens twice (the clocks fall back); the first, daylight-time "
                "instant is used",
            )
        )
    near = matcher.near(occurrence.start)
    typed = [s for s in near if default.appointment_type in (None, s.appointment_type)]
    open_ = [s for s in typed if s.availability is Availability.OPEN]
    if open_:
        session = open_[0]
        if session.closed:
            notices.append(
                Notice(
                    "session-closed",
                    f"{name}: group session {session.id!r} is closed (the provider prefers no "
                    "new patients once it has started); booking it will succeed with a warning",
                )
            )
        return Proposal(
            occurrence,
            session,
            session.schedule.department_id,
            session.schedule.provider_ids,
            default.appointment_type or session.appointment_type,
            tuple(notices),
        )
    notices.append(why_unmatched(name, near, typed, default.appointment_type))
    return Proposal(
        occurrence, None, default.department_id, default.provider_ids,
        default.appointment_type, tuple(notices),
    )  # fmt: skip


def why_unmatched(
    label: str, near: list[GroupSession], typed: list[GroupSession], wanted_type: str | None
) -> Notice:
    if not near:
        return Notice(NO_SESSION, f"{label}: no group session of this provider at that time")
    if not typed:
        found = ", ".join(sorted({s.appointment_type or "none" for s in near}))
        return Notice(
            OTHER_TYPE,
            f"{label}: the session at that time has another appointment type ({found}, "
            f"not {wanted_type})",
        )
    if all(s.availability is Availability.BLOCKED for s in typed):
        return Notice(SESSION_BLOCKED, f"{label}: the session at that time is blocked")
    session = typed[0]
    return Notice(
        SESSION_FULL,
        f"{label}: group session {session.id!r} is full ({session.booked}/{session.capacity})",
    )


def label(occurrence: Occurrence, zone: str) -> str:
    local = occurrence.local_start
    return f"occurrence {occurrence.recurrence_id} ({local:%a %Y-%m-%d %H:%M} {zone})"
