"""$book reads a year of kept proposals validating each shape once, and still refuses
whatever the R4B model refuses, in the same words and at the same place."""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

import pytest

import mappings.series
from mappings.appointment import appointment_from_fhir
from mappings.errors import MappingError
from mappings.locations import rooted, where_of
from mappings.series import book_from_fhir, preview_to_fhir
from store.booking import Notice
from store.matching import Proposal
from store.recurrence import Frequency, Recurrence, expand
from store.series import SeriesBooking
from tests.unit.builders import scheduled_session

COUNT = 120
AT_99 = "Parameters.parameter[appointment-resource][99].resource"


def _kept() -> list[dict[str, Any]]:
    """$find's proposals for 120 occurrences: with a session for two in three, drafts else."""
    recurrence = Recurrence(
        frequency=Frequency.WEEKLY,
        first_date=dt.date(2027, 1, 4),
        local_time=dt.time(10),
        duration=dt.timedelta(minutes=90),
        timezone="America/New_York",
        weekdays=(0, 2, 4),
        count=COUNT,
    )
    proposals = []
    for occurrence in expand(recurrence, today=dt.date(2026, 12, 1)):
        assert occurrence.start is not None
        matched = occurrence.recurrence_id % 3 != 0
        session = (
            scheduled_session(f"s{occurrence.recurrence_id}", occurrence.start) if matched else None
        )
        notices = () if matched else (Notice("no-session", "none"),)
        proposals.append(
            Proposal(occurrence, session, "dept-1", ("prac-1",), "group-therapy", notices)
        )
    bundle = preview_to_fhir(_Preview("pat-1", recurrence, proposals))  # type: ignore[arg-type]
    return [e["resource"] for e in bundle["entry"] if e["search"]["mode"] == "match"]


class _Preview:
    def __init__(self, patient_id: str, recurrence: Recurrence, proposals: list[Proposal]):
        self.patient_id = patient_id
        self.recurrence = recurrence
        self.proposals = proposals


def _body(kept: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "resourceType": "Parameters",
        "parameter": [{"name": "appointment-resource", "resource": r} for r in kept],
    }


def _refusal(body: dict[str, Any]) -> tuple[str, str | None]:
    with pytest.raises(MappingError) as caught:
        book_from_fhir(body)
    return caught.value.message, rooted(caught.value.expression, where_of(caught.value))


def test_a_year_of_proposals_is_validated_in_full_once_per_shape(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kept = _kept()
    calls: list[Any] = []

    def counted(body: Any) -> Any:
        calls.append(body)
        return appointment_from_fhir(body)

    monkeypatch.setattr(mappings.series, "appointment_from_fhir", counted)
    booking = book_from_fhir(_body(kept))

    assert isinstance(booking, SeriesBooking)
    assert len(calls) == 2  # one booked proposal, one draft
    assert [k.request for k in booking.kept] == [appointment_from_fhir(r) for r in kept]
    assert [k.recurrence_id for k in booking.kept] == list(range(1, COUNT + 1))


@pytest.mark.parametrize(
    ("element", "value", "expression"),
    [
        ("start", "2027-02-30T15:00:00Z", f"{AT_99}.start"),  # no 30th of February
        ("start", "2027-03-01T15:00:00", f"{AT_99}.start"),  # an instant needs its zone
        ("start", "2027-03-01T15:00Z", f"{AT_99}.start"),  # and its seconds (Python needs none)
        ("start", "2027-03-01 15:00:00Z", f"{AT_99}.start"),  # and its T
        ("end", "tomorrow", f"{AT_99}.end"),
        ("comment", 7, f"{AT_99}.comment"),  # a wrong type
        ("color", "red", f"{AT_99}.color"),  # an unknown element
    ],
)
def test_a_bad_value_in_the_100th_kept_proposal_is_refused_as_before(
    element: str, value: Any, expression: str
) -> None:
    kept = _kept()
    assert "slot" in kept[99]  # a proposal with a session, shaped as the others
    kept[99] = kept[99] | {element: value}

    message, refused_at = _refusal(_body(kept))

    assert refused_at == expression
    assert message.startswith(f"Appointment.{element}: ")


def test_a_bad_slot_recurrence_id_or_draft_time_in_the_100th_is_refused_as_before() -> None:
    kept = _kept()
    assert "requestedPeriod" in kept[98]
    bad_slot = copy.deepcopy(kept)
    bad_slot[99]["slot"] = [{"reference": "Practitioner/prac-1"}]
    bad_id = copy.deepcopy(kept)
    bad_id[99]["extension"][0]["valuePositiveInt"] = 0
    bad_period = copy.deepcopy(kept)
    bad_period[98]["requestedPeriod"][0]["end"] = "2027-13-01T00:00:00Z"

    assert _refusal(_body(bad_slot))[1] == f"{AT_99}.slot[0]"
    assert _refusal(_body(bad_id))[1] == f"{AT_99}.extension[0].valuePositiveInt"
    assert _refusal(_body(bad_period))[1] == (
        "Parameters.parameter[appointment-resource][98].resource.requestedPeriod[0].end"
    )


def test_equal_parameters_are_validated_once_and_a_refusal_names_the_first() -> None:
    kept = _kept()
    body = _body(kept)
    for index in (99, 100):
        body["parameter"][index] = {"resource": kept[index]}  # no name

    message, expression = _refusal(body)

    assert expression == "Parameters.parameter[99].name"
    assert "required" in message.lower()
