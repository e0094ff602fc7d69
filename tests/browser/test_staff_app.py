"""The seed workflow (book-patients-for-group-sessions), step by step, as a scheduler does
it in the staff app; each test checks what the person sees and what the server then holds.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any
from zoneinfo import ZoneInfo

import requests

from tests.browser.conftest import (
    JSON,
    SCHEDULE_ZONE,
    Clinic,
    Screens,
    at_sign_in,
    local_date,
    open_session,
    places,
    sign_in,
)

GROUP_CAPACITY = "http://fhir-facade.org/fhir/StructureDefinition/group-capacity"
CLOSED = "http://fhir-facade.org/fhir/StructureDefinition/closed-session"
CODES = "http://fhir-facade.org/fhir/CodeSystem"
SAM, ALEX, PRIYA = "Sam Ortiz", "Alex Morgan", "Priya Shah"


def monday(day: dt.date) -> dt.date:
    return day - dt.timedelta(days=day.weekday())


def new_session(
    clinic: Clinic,
    schedule_id: str,
    days_ahead: int,
    at: str,
    capacity: int,
    *,
    closed: bool = False,
    kind: str = "group-therapy",
) -> JSON:
    """A session created through the API (as an administrator would) at a local time."""
    zone = ZoneInfo(SCHEDULE_ZONE[schedule_id])
    day = dt.date.today() + dt.timedelta(days=days_ahead)
    hour, minute = map(int, at.split(":"))
    start = dt.datetime.combine(day, dt.time(hour, minute), tzinfo=zone).astimezone(dt.UTC)
    extension: list[JSON] = [
        {"url": GROUP_CAPACITY, "extension": [{"url": "capacity", "valueUnsignedInt": capacity}]}
    ]
    if closed:
        extension.append({"url": CLOSED, "valueBoolean": True})
    body = {
        "resourceType": "Slot",
        "status": "free",
        "schedule": {"reference": f"Schedule/{schedule_id}"},
        "start": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "end": (start + dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "extension": extension,
        "serviceType": [
            {
                "coding": [
                    {"system": f"{CODES}/group-service-type", "code": "behavioral-health-group"}
                ]
            }
        ],
        "appointmentType": {
            "coding": [{"system": f"{CODES}/group-appointment-type", "code": kind}]
        },
    }
    response = clinic.send("POST", "Slot", body)
    assert response.status_code == 201, response.text
    created: JSON = response.json()
    return created


def book_by_api(clinic: Clinic, patient_id: str, slot_id: str) -> JSON:
    body = {
        "resourceType": "Appointment",
        "status": "booked",
        "slot": [{"reference": f"Slot/{slot_id}"}],
        "participant": [{"actor": {"reference": f"Patient/{patient_id}"}, "status": "accepted"}],
    }
    response = clinic.send("POST", "Appointment", body)
    assert response.status_code == 201, response.text
    booked: JSON = response.json()
    return booked


def appointments_of(clinic: Clinic, patient_id: str, **params: str) -> list[JSON]:
    return clinic.search("Appointment", patient=f"Patient/{patient_id}", _count="200", **params)


def sessions_free_of(clinic: Clinic, schedule_id: str, patient_id: str) -> list[JSON]:
    """A schedule's future sessions with a place, leaving out those the patient has an
    appointment in (the demo books its patients into the first weeks at random)."""
    taken = {
        a["slot"][0]["reference"].removeprefix("Slot/")
        for a in appointments_of(clinic, patient_id)
        if a.get("slot")
    }
    return [s for s in clinic.future_sessions(schedule_id) if s["id"] not in taken]


def slot_now(clinic: Clinic, slot_id: str) -> JSON:
    return clinic.get(f"Slot/{slot_id}")


def search_patients(page: Any, query: str) -> None:
    page.get_by_label("Find a patient").fill(query)
    page.get_by_role("button", name="Search", exact=True).click()
    page.locator(f'[data-searched="{query}"]').wait_for()


def choose_patient(page: Any, query: str, patient_id: str) -> None:
    search_patients(page, query)
    page.locator(f'[data-patient="{patient_id}"]').click()
    page.get_by_test_id("patient-card").get_by_text("SELF PAY").wait_for()


def start_booking(page: Any, slot: JSON, *, department: str | None = None) -> None:
    open_session(page, slot, department=department)
    page.get_by_role("complementary").get_by_role("button", name="Book Appointment").click()
    page.get_by_role("heading", name="Book Appointment").wait_for()


# ---- 1. calendar -------------------------------------------------------------------------


def test_the_calendar_opens_on_this_week_and_shows_the_week_and_provider_chosen(
    page: Any, clinic: Clinic, screen: Screens
) -> None:
    sign_in(page, clinic, SAM)
    today = dt.datetime.now(ZoneInfo("America/New_York")).date()
    this_monday = monday(today)
    assert page.get_by_label("Show the week of").input_value() == this_monday.isoformat()
    tabs = page.get_by_role("tab").all_inner_texts()
    assert {"Chidi Okafor", "Dr. Ana Rivera", "Dr. Wei Chen"} <= set(tabs)  # Brooklyn's
    assert "Rami Haddad" not in tabs  # Denver's
    screen(page, "calendar-this-week")

    page.get_by_role("tab", name="Dr. Wei Chen").click()
    later = this_monday + dt.timedelta(weeks=3, days=2)
    page.get_by_label("Show the week of").fill(later.isoformat())
    shown_monday = monday(later)
    assert page.get_by_label("Show the week of").input_value() == shown_monday.isoformat()
    page.locator(".tile").first.wait_for()
    shown = sorted(page.locator(".tile").evaluate_all("els => els.map(e => e.dataset.slot)"))
    held = clinic.search(
        "Slot",
        schedule="Schedule/sched-chen-bk",
        start=[f"ge{shown_monday}", f"lt{shown_monday + dt.timedelta(days=7)}"],
    )
    assert shown == sorted(s["id"] for s in held) and shown
    screen(page, "calendar-chen-later-week")

    # Keyboard: arrows move between provider tabs.
    page.get_by_role("tab", name="Dr. Wei Chen").focus()
    page.keyboard.press("ArrowLeft")
    assert page.get_by_role("tab", name="Dr. Ana Rivera").get_attribute("aria-selected") == "true"
    page.get_by_label("Department").select_option(label="Denver Behavioral Health")
    assert {"Dr. Maja Lindqvist", "Rami Haddad"} <= set(page.get_by_role("tab").all_inner_texts())
    screen(page, "calendar-denver")

    # A tablet held upright: the week still fits the width (no sideways scrolling).
    page.set_viewport_size({"width": 820, "height": 1180})
    try:
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        screen(page, "calendar-tablet")
    finally:
        page.set_viewport_size({"width": 1280, "height": 800})


# ---- 2. tiles ----------------------------------------------------------------------------


def test_tiles_show_type_count_closed_icon_and_a_full_or_unavailable_look(
    page: Any, clinic: Clinic, screen: Screens
) -> None:
    closed = new_session(clinic, "sched-rivera-bk", 26, "08:00", 10, closed=True)
    book_by_api(clinic, "pat-030", closed["id"])
    closed = slot_now(clinic, closed["id"])
    full = new_session(clinic, "sched-lindqvist-dn", 26, "08:00", 1)
    book_by_api(clinic, "pat-030", full["id"])
    full = slot_now(clinic, full["id"])
    blocked = clinic.future_sessions("sched-haddad-dn")[3]
    blocked_body = {**blocked, "status": "busy-unavailable"}
    blocked_body.pop("meta")
    response = clinic.send(
        "PUT",
        f"Slot/{blocked['id']}",
        blocked_body,
        **{"If-Match": f'W/"{blocked["meta"]["versionId"]}"'},
    )
    assert response.status_code == 200, response.text

    sign_in(page, clinic, SAM)
    open_session(page, closed)
    tile = page.locator(f'.tile[data-slot="{closed["id"]}"]')
    capacity, booked = places(closed)
    assert (
        f"{booked}/{capacity}" in tile.inner_text() and "Group therapy session" in tile.inner_text()
    )
    assert (
        tile.locator(".closed").count() == 1 and tile.locator("svg").count() >= 2
    )  # group + closed
    details = page.get_by_role("complementary")
    assert details.get_by_test_id("details-count").inner_text() == f"{booked}/{capacity}"
    assert "Closed session" in details.inner_text()
    assert details.get_by_role("button", name="Book Appointment").is_enabled()
    screen(page, "tile-closed-details", docs="calendar.png")

    open_session(page, full, department="Denver Behavioral Health")
    tile = page.locator(f'.tile[data-slot="{full["id"]}"]')
    assert "1/1" in tile.inner_text() and "Full" in tile.inner_text()
    assert "full" in (tile.get_attribute("class") or "")
    assert (
        page.get_by_role("complementary")
        .get_by_role("button", name="Book Appointment")
        .is_disabled()
    )
    screen(page, "tile-full-details")

    open_session(page, blocked)
    tile = page.locator(f'.tile[data-slot="{blocked["id"]}"]')
    assert "Unavailable" in tile.inner_text() and "unavailable" in (
        tile.get_attribute("class") or ""
    )
    screen(page, "tile-unavailable-details")


# ---- 3. Book Appointment: search and the patient card ------------------------------------


def test_one_search_box_finds_patients_by_name_mrn_id_ssn_and_phone_and_shows_their_plans(
    page: Any, clinic: Clinic, screen: Screens
) -> None:
    patient = {
        "resourceType": "Patient",
        "name": [{"family": "Quillfeather", "given": ["Rosa"]}],
        "birthDate": "1981-04-02",
        "identifier": [{"system": "http://hl7.org/fhir/sid/us-ssn", "value": "219-09-9999"}],
        "telecom": [{"system": "phone", "value": "(555) 777-1234"}],
    }
    created = clinic.send("POST", "Patient", patient)
    assert created.status_code == 201, created.text
    rosa = created.json()["id"]
    sign_in(page, clinic, SAM)
    start_booking(page, clinic.future_sessions("sched-rivera-bk")[0])
    screen(page, "book-empty")

    def found(query: str) -> list[str]:
        page.get_by_label("Find a patient").fill(query)
        page.get_by_role("button", name="Search", exact=True).click()
        page.locator(f'[data-searched="{query}"]').wait_for()
        ids: list[str] = page.locator("[data-patient]").evaluate_all(
            "els => els.map(e => e.dataset.patient)"
        )
        return ids

    assert sorted(found("kim")) == ["pat-010", "pat-030", "pat-050"]
    assert "DOB" in page.locator('[data-patient="pat-010"]').inner_text()
    assert found("MRN100010") == ["pat-010"]
    assert found("pat-030") == ["pat-030"]
    assert found("219-09-9999") == [rosa]
    assert found("219099999") == [rosa]
    assert found("555.777.1234") == [rosa]
    assert found("(555) 7771234") == [rosa]
    assert "1981-04-02" in page.locator(f'[data-patient="{rosa}"]').inner_text()
    assert found("Nobodyhere") == []
    assert "No patient found" in page.get_by_role("main").inner_text()

    choose_patient(page, "MRN100010", "pat-010")
    card = page.get_by_test_id("patient-card")
    assert card.get_by_text("Blue Harbor Health Plan").is_visible()
    (plan,) = [
        c
        for c in clinic.search("Coverage", beneficiary="Patient/pat-010")
        if c["subscriberId"] == "BH700010"
    ]
    validity = f"valid {plan['period']['start'][:10]} to {plan['period']['end'][:10]}"
    assert "Member ID BH700010" in card.inner_text() and validity in card.inner_text()
    assert card.get_by_label("SELF PAY").is_visible()
    assert card.get_by_role("radio").nth(0).is_checked()  # the primary plan first
    secondary = page.get_by_label("Secondary insurance (optional)")
    assert "State Medicaid Program · Member ID MCD800010" in secondary.inner_text()
    screen(page, "book-patient-card")


# ---- 4 and 6. booking form, review, booked -----------------------------------------------


def test_the_booking_form_is_prefilled_and_books_with_the_chosen_plans_providers_and_type(
    page: Any, clinic: Clinic, screen: Screens
) -> None:
    slot = clinic.future_sessions("sched-chen-bk")[1]
    capacity, booked = places(slot)
    sign_in(page, clinic, SAM)
    start_booking(page, slot)
    choose_patient(page, "MRN100050", "pat-050")
    page.get_by_label("Secondary insurance (optional)").select_option("cov-pat-050-2")
    assert page.get_by_label("Provider Group").input_value() == "Harbor Behavioral Health Group"
    assert page.get_by_label("Provider Group").get_attribute("readonly") is not None
    day = dt.date.fromisoformat(local_date(slot["start"], "America/New_York"))
    assert str(day.day) in page.get_by_label("Date", exact=True).input_value()
    assert page.get_by_label("Department").input_value() == "dept-brooklyn"
    assert page.get_by_label("Dr. Wei Chen").is_checked()
    assert page.get_by_label("Appointment Type").input_value() == "anxiety-cbt"
    assert page.get_by_label("Time").input_value().startswith("2:00 PM")
    page.get_by_label("Dr. Ana Rivera").check()
    page.get_by_label("Appointment Type").select_option("group-therapy")
    screen(page, "booking-form")

    page.get_by_role("button", name="Review").click()
    review = page.get_by_role("region", name="Appointment details")
    assert "Blue Harbor Health Plan" in review.get_by_test_id("review-primary").inner_text()
    assert "State Medicaid Program · Member ID MCD800050" in review.inner_text()  # secondary
    assert "Dr. Wei Chen, Dr. Ana Rivera" in review.inner_text()
    screen(page, "review")
    page.get_by_role("button", name="Book appointment").click()
    page.get_by_role("heading", name="Appointment booked").wait_for()
    assert page.get_by_test_id("book-count").inner_text() == f"{booked + 1}/{capacity}"
    screen(page, "booked")

    assert places(slot_now(clinic, slot["id"])) == (capacity, booked + 1)
    (appointment,) = appointments_of(clinic, "pat-050", slot=f"Slot/{slot['id']}")
    assert [r["reference"] for r in appointment["supportingInformation"]] == [
        "Coverage/cov-pat-050-1",  # primary: Blue Harbor
        "Coverage/cov-pat-050-2",  # secondary: Medicaid
    ]
    actors = {p["actor"]["reference"] for p in appointment["participant"]}
    assert {
        "Practitioner/prac-chen",
        "Practitioner/prac-rivera",
        "Location/dept-brooklyn",
    } <= actors
    assert appointment["appointmentType"]["coding"][0]["code"] == "group-therapy"

    page.get_by_role("button", name="Back to the calendar").click()
    tile = page.locator(f'.tile[data-slot="{slot["id"]}"]')
    assert f"{booked + 1}/{capacity}" in tile.inner_text()


# ---- 5. Create New Slot ------------------------------------------------------------------


def test_create_new_slot_is_only_for_schedule_admins_and_the_new_session_books_at_once(
    page: Any, clinic: Clinic, screen: Screens
) -> None:
    slot = clinic.future_sessions("sched-okafor-bk")[0]
    sign_in(page, clinic, SAM)
    start_booking(page, slot)
    assert page.get_by_role("button", name="Create New Slot").count() == 0
    page.get_by_role("button", name="Sign out").click()

    sign_in(page, clinic, ALEX)
    start_booking(page, slot)
    page.get_by_role("button", name="Create New Slot").click()
    day = dt.date.today() + dt.timedelta(days=16)
    page.get_by_label("Date", exact=True).last.fill(day.isoformat())
    page.get_by_label("Start time").fill("07:15")
    page.get_by_label("Places").fill("5")
    screen(page, "create-new-slot")
    page.get_by_role("button", name="Create slot").click()
    page.get_by_text("New session created").wait_for()
    assert page.get_by_test_id("book-count").inner_text() == "0/5"
    choose_patient(page, "MRN100010", "pat-010")
    page.get_by_role("button", name="Review").click()
    page.get_by_role("button", name="Book appointment").click()
    page.get_by_role("heading", name="Appointment booked").wait_for()
    assert page.get_by_test_id("book-count").inner_text() == "1/5"

    start = dt.datetime.combine(day, dt.time(7, 15), tzinfo=ZoneInfo("America/New_York"))
    (created,) = clinic.search(
        "Slot",
        schedule="Schedule/sched-okafor-bk",
        start=start.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    )
    assert places(created) == (5, 1)
    assert appointments_of(clinic, "pat-010", slot=f"Slot/{created['id']}")


# ---- 6. refusals and the closed session --------------------------------------------------


def _to_review(page: Any, slot: JSON, mrn: str, patient_id: str) -> None:
    start_booking(page, slot)
    choose_patient(page, mrn, patient_id)
    page.get_by_role("button", name="Review").click()


def test_review_explains_a_full_session_an_already_booked_patient_and_a_stale_view(
    page: Any, clinic: Clinic, screen: Screens
) -> None:
    filling = new_session(clinic, "sched-okafor-bk", 22, "07:00", 1)
    twice = new_session(clinic, "sched-okafor-bk", 23, "07:00", 5)
    moving = new_session(clinic, "sched-okafor-bk", 24, "07:00", 5)
    book_by_api(clinic, "pat-010", twice["id"])
    sign_in(page, clinic, SAM)
    _to_review(page, filling, "MRN100010", "pat-010")
    book_by_api(clinic, "pat-030", filling["id"])  # someone else takes the last place
    page.get_by_role("button", name="Book appointment").click()
    alert = page.get_by_role("alert")
    assert "This session is full" in alert.inner_text()
    screen(page, "refused-full")
    assert places(slot_now(clinic, filling["id"])) == (1, 1)
    assert not appointments_of(clinic, "pat-010", slot=f"Slot/{filling['id']}")

    page.get_by_role("button", name="Back to the calendar").click()
    _to_review(page, twice, "MRN100010", "pat-010")
    page.get_by_role("button", name="Book appointment").click()
    assert "already booked into this session" in page.get_by_role("alert").inner_text()
    screen(page, "refused-already-booked")
    assert places(slot_now(clinic, twice["id"])) == (5, 1)

    page.get_by_role("button", name="Back to the calendar").click()
    _to_review(page, moving, "MRN100010", "pat-010")
    moved = {**slot_now(clinic, moving["id"])}
    version = moved.pop("meta")["versionId"]
    later = dt.datetime.fromisoformat(moved["start"].replace("Z", "+00:00")) + dt.timedelta(hours=2)
    moved["start"] = later.strftime("%Y-%m-%dT%H:%M:%SZ")
    moved["end"] = (later + dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    response = clinic.send("PUT", f"Slot/{moving['id']}", moved, **{"If-Match": f'W/"{version}"'})
    assert response.status_code == 200, response.text
    page.get_by_role("button", name="Book appointment").click()
    assert "has changed since you opened the calendar" in page.get_by_role("alert").inner_text()
    screen(page, "refused-stale")
    assert places(slot_now(clinic, moving["id"])) == (5, 0)


def test_a_closed_session_shows_its_warning_and_still_books(
    page: Any, clinic: Clinic, screen: Screens
) -> None:
    closed = new_session(clinic, "sched-chen-bk", 25, "08:00", 4, closed=True)
    sign_in(page, clinic, SAM)
    _to_review(page, closed, "MRN100020", "pat-020")
    assert "closed session" in page.get_by_role("region", name="Appointment details").inner_text()
    screen(page, "review-closed")
    page.get_by_role("button", name="Book appointment").click()
    page.get_by_role("heading", name="Appointment booked").wait_for()
    assert "closed" in page.locator(".warning").inner_text()
    screen(page, "booked-closed")
    assert places(slot_now(clinic, closed["id"])) == (4, 1)
    assert appointments_of(clinic, "pat-020", slot=f"Slot/{closed['id']}", status="booked")


# ---- 7. recurring series -----------------------------------------------------------------


def test_a_recurring_series_is_previewed_trimmed_reviewed_and_booked_with_drafts(
    page: Any, clinic: Clinic, screen: Screens
) -> None:
    slot = clinic.future_sessions("sched-rivera-bk")[2]
    weekday = dt.date.fromisoformat(local_date(slot["start"], "America/New_York")).weekday()
    gap_day = ["Tuesday", "Tuesday", "Thursday", "Thursday", "Saturday"][
        weekday
    ]  # no Rivera session
    before = {a["id"] for a in appointments_of(clinic, "pat-022")}
    sign_in(page, clinic, SAM)
    start_booking(page, slot)
    choose_patient(page, "MRN100022", "pat-022")
    page.get_by_role("button", name="Create Recurring Series").click()
    page.get_by_role("heading", name="Create Recurring Series").wait_for()
    review = page.get_by_role("button", name="Review", exact=True)
    assert review.is_disabled()
    page.get_by_label("Weekly").check()
    page.get_by_label(gap_day).check()
    page.get_by_label("Sessions").fill("4")
    page.get_by_role("button", name="Preview Recurrence").click()
    cards = page.get_by_test_id("occurrence")
    cards.first.wait_for()
    assert cards.count() == 4
    unmatched = page.locator(".occurrence.unmatched")
    assert unmatched.count() == 2
    assert "no group session" in unmatched.first.inner_text()
    assert review.is_enabled()
    page.get_by_label("Sessions").fill("5")
    assert review.is_disabled()  # the preview no longer matches the settings
    page.get_by_role("button", name="Preview Recurrence").click()
    page.get_by_text("5 occurrences ready to review").wait_for()
    cards.last.get_by_role("button", name=re.compile("^Remove")).click()
    assert cards.count() == 4
    screen(page, "series-preview", docs="series-preview.png")
    review.click()
    screen(page, "series-review")
    page.get_by_role("button", name="Book Appointment").click()
    result = page.get_by_test_id("series-result")
    result.wait_for()
    screen(page, "series-booked")

    held = [a for a in appointments_of(clinic, "pat-022") if a["id"] not in before]
    booked = [a for a in held if a["status"] == "booked"]
    drafts = [a for a in held if a["status"] == "proposed"]
    assert len(booked) + len(drafts) == 4 and len(drafts) == 2
    assert f"{len(booked)} booked, 2 saved as drafts" in result.inner_text()
    assert all(
        a["supportingInformation"][0]["reference"].startswith("Coverage/cov-pat-022")
        for a in booked
    )
    assert places(slot_now(clinic, slot["id"]))[1] == places(slot)[1] + 1


# ---- 8. drafts and cancelling ------------------------------------------------------------


def _drafts_for(clinic: Clinic, patient_id: str, first_day: str) -> list[JSON]:
    """Two drafts (Rivera has no Tuesday sessions) booked through $find and $book."""
    find = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "patient", "valueReference": {"reference": f"Patient/{patient_id}"}},
            {"name": "practitioner", "valueReference": {"reference": "Practitioner/prac-rivera"}},
            {
                "name": "timing",
                "valueTiming": {
                    "repeat": {
                        "boundsPeriod": {"start": first_day},
                        "count": 2,
                        "period": 1,
                        "periodUnit": "wk",
                        "dayOfWeek": ["tue"],
                        "timeOfDay": ["10:00:00"],
                    }
                },
            },
        ],
    }
    preview = clinic.send("POST", "Appointment/$find", find)
    assert preview.status_code == 200, preview.text
    kept = [
        e["resource"]
        for e in preview.json()["entry"]
        if e["resource"]["resourceType"] == "Appointment"
    ]
    book = {
        "resourceType": "Parameters",
        "parameter": [{"name": "appointment-resource", "resource": a} for a in kept],
    }
    response = clinic.send("POST", "Appointment/$book", book)
    assert response.status_code == 200, response.text
    return [
        e["resource"] for e in response.json()["entry"] if e["resource"].get("status") == "proposed"
    ]


def test_drafts_are_resolved_with_use_this_slot_and_cancelling_frees_a_place(
    page: Any, clinic: Clinic, screen: Screens
) -> None:
    sessions = clinic.future_sessions("sched-rivera-bk")
    held_slot, target = sessions[4], sessions[6]
    kept = book_by_api(clinic, "pat-040", held_slot["id"])
    gone = book_by_api(clinic, "pat-040", sessions[5]["id"])
    gone.pop("meta")
    response = clinic.send(
        "PUT", f"Appointment/{gone['id']}", {**gone, "status": "cancelled"}, **{"If-Match": 'W/"1"'}
    )
    assert response.status_code == 200, response.text
    drafts = _drafts_for(clinic, "pat-040", (dt.date.today() + dt.timedelta(days=7)).isoformat())
    assert len(drafts) == 2

    sign_in(page, clinic, SAM)
    open_session(page, held_slot)
    page.get_by_role("complementary").get_by_role(
        "button", name=re.compile("^López, Olivia")
    ).click()
    page.get_by_role("heading", name=re.compile("^Appointments: ")).wait_for()
    rows = page.locator("tr[data-status]")
    rows.first.wait_for()
    statuses = sorted(rows.evaluate_all("els => els.map(e => e.dataset.status)"))
    assert statuses == ["booked", "cancelled", "proposed", "proposed"]
    assert page.locator(".badge.proposed").first.inner_text() == "Draft"
    screen(page, "patient-appointments")

    page.get_by_role("button", name=re.compile("^Reschedule")).click()
    editor = page.locator(f'[data-draft="{drafts[0]["id"]}"]')
    editor.get_by_label("Date for this occurrence").fill(
        local_date(target["start"], "America/New_York")
    )
    editor.locator(f'[data-slot="{target["id"]}"]').click()
    screen(page, "reschedule-chosen")
    editor.get_by_role("button", name="Review").click()
    editor.get_by_role("button", name="Confirm edits").click()
    page.get_by_text("It is no longer a draft").wait_for()
    screen(page, "reschedule-confirmed")
    resolved = clinic.get(f"Appointment/{drafts[0]['id']}")
    assert resolved["status"] == "booked" and resolved["slot"] == [
        {"reference": f"Slot/{target['id']}"}
    ]
    assert places(slot_now(clinic, target["id"]))[1] == places(target)[1] + 1

    page.get_by_role("button", name="Back to the patient's appointments").click()
    row = page.locator(f'tr[data-appointment="{kept["id"]}"]')
    row.get_by_role("button", name=re.compile("^Cancel appointment")).click()
    row.get_by_role("button", name="Yes, cancel it").click()
    page.get_by_text("its place goes to the session's waitlist, or is free again").wait_for()
    screen(page, "appointment-cancelled")
    assert clinic.get(f"Appointment/{kept['id']}")["status"] == "cancelled"
    assert places(slot_now(clinic, held_slot["id"]))[1] == places(held_slot)[1]


# ---- 8b. waitlist -------------------------------------------------------------------------

WAITLIST_POLICY = "http://fhir-facade.org/fhir/StructureDefinition/waitlist-policy"
OFFER_EXPIRES = "http://fhir-facade.org/fhir/StructureDefinition/waitlist-offer-expires"


def _family(clinic: Clinic, patient_id: str) -> str:
    family: str = clinic.get(f"Patient/{patient_id}")["name"][0]["family"]
    return family


def _offer_policy(clinic: Clinic, schedule_id: str) -> None:
    """The schedule offers freed places for two hours (as an administrator sets it)."""
    schedule = clinic.get(f"Schedule/{schedule_id}")
    version = schedule.pop("meta")["versionId"]
    policy = {
        "url": WAITLIST_POLICY,
        "extension": [
            {"url": "mode", "valueCode": "offer"},
            {
                "url": "offerDuration",
                "valueDuration": {
                    "value": 2,
                    "unit": "h",
                    "system": "http://unitsofmeasure.org",
                    "code": "h",
                },
            },
        ],
    }
    schedule["extension"] = [policy]
    response = clinic.send(
        "PUT", f"Schedule/{schedule_id}", schedule, **{"If-Match": f'W/"{version}"'}
    )
    assert response.status_code == 200, response.text


def test_a_full_session_is_joined_from_its_details_and_shows_its_waitlist_and_offers(
    page: Any, clinic: Clinic, screen: Screens
) -> None:
    full = new_session(clinic, "sched-chen-bk", 26, "09:00", 1)
    seated = book_by_api(clinic, "pat-030", full["id"])
    sign_in(page, clinic, SAM)
    open_session(page, full)
    details = page.get_by_role("complementary")
    assert details.get_by_role("button", name="Book Appointment").is_disabled()
    details.get_by_text("Nobody is waiting.").wait_for()
    details.get_by_role("button", name="Join waitlist").click()
    page.get_by_role("heading", name="Join Waitlist").wait_for()
    choose_patient(page, "MRN100010", "pat-010")
    page.get_by_role("button", name="Review").click()
    screen(page, "waitlist-review")
    page.get_by_role("button", name="Join waitlist").click()
    page.get_by_role("heading", name="Added to the waitlist").wait_for()
    screen(page, "waitlist-joined")
    (entry,) = appointments_of(clinic, "pat-010", slot=f"Slot/{full['id']}")
    assert entry["status"] == "waitlist"
    assert places(slot_now(clinic, full["id"])) == (1, 1)

    second = {
        "resourceType": "Appointment",
        "status": "waitlist",
        "slot": [{"reference": f"Slot/{full['id']}"}],
        "participant": [{"actor": {"reference": "Patient/pat-020"}, "status": "accepted"}],
    }
    response = clinic.send("POST", "Appointment", second)
    assert response.status_code == 201, response.text
    page.get_by_role("button", name="Back to the calendar").click()
    page.locator(f'.tile[data-slot="{full["id"]}"]').click()
    queue = page.get_by_role("list", name="Waitlist")
    queue.locator("li").nth(1).wait_for()
    shown = queue.locator("li").evaluate_all("els => els.map(e => e.dataset.appointment)")
    assert shown == [entry["id"], response.json()["id"]]
    assert _family(clinic, "pat-010") in queue.locator("li").first.inner_text()
    screen(page, "waitlist-in-order")

    _offer_policy(clinic, "sched-chen-bk")
    seated.pop("meta")
    response = clinic.send("PUT", f"Appointment/{seated['id']}", {**seated, "status": "cancelled"})
    assert response.status_code == 200, response.text
    offer = clinic.get(f"Appointment/{entry['id']}")
    assert offer["status"] == "pending"
    (expires,) = [e["valueInstant"] for e in offer["extension"] if e["url"] == OFFER_EXPIRES]
    details.get_by_role("button", name="Close", exact=True).click()
    page.locator(f'.tile[data-slot="{full["id"]}"]').click()
    offers = page.get_by_role("list", name="Pending offers")
    offers.locator("li").first.wait_for()
    (offered,) = offers.locator("li").all_inner_texts()
    local = dt.datetime.fromisoformat(expires.replace("Z", "+00:00")).astimezone(
        ZoneInfo(SCHEDULE_ZONE["sched-chen-bk"])
    )
    assert _family(clinic, "pat-010") in offered and "offer expires" in offered
    assert local.strftime("%-I:%M") in offered, (offered, local)
    assert len(page.get_by_role("list", name="Waitlist").locator("li").all()) == 1
    screen(page, "waitlist-offer-pending")

    offers.get_by_role("button").first.click()
    row = page.locator(f'tr[data-appointment="{entry["id"]}"]')
    row.get_by_text("Place offered").wait_for()
    row.get_by_role("button", name=re.compile("^Accept offer")).click()
    page.get_by_text("The offer is accepted").wait_for()
    screen(page, "waitlist-offer-accepted")
    assert clinic.get(f"Appointment/{entry['id']}")["status"] == "booked"
    assert places(slot_now(clinic, full["id"])) == (1, 1)


# ---- 9. sign-in --------------------------------------------------------------------------


def test_sign_in_offers_three_staff_users_whose_tokens_carry_their_permissions(
    page: Any, clinic: Clinic, screen: Screens
) -> None:
    at_sign_in(page, clinic)
    buttons = page.locator("button.signin")
    assert buttons.count() == 3
    screen(page, "sign-in")
    scopes = {}
    for user in ("sam.ortiz", "alex.morgan", "priya.shah"):
        answer = requests.post(f"{clinic.app_url}sign-in", json={"user": user}, timeout=10)
        assert answer.status_code == 200 and answer.headers["Cache-Control"] == "no-store"
        scopes[user] = set(answer.json()["scope"].split())
        metadata = requests.get(
            f"{clinic.base}/Schedule",
            headers={"Authorization": f"Bearer {answer.json()['access_token']}"},
            timeout=10,
        )
        assert metadata.status_code == 200  # the instance's key signed it
    assert not {"__schedule.manage", "__patient.blocked"} & scopes["sam.ortiz"]
    assert (
        "__schedule.manage" in scopes["alex.morgan"]
        and "__patient.blocked" not in scopes["alex.morgan"]
    )
    assert (
        "__patient.blocked" in scopes["priya.shah"]
        and "__schedule.manage" not in scopes["priya.shah"]
    )
    refused = requests.post(f"{clinic.app_url}sign-in", json={"user": "root"}, timeout=10)
    assert refused.status_code == 400 and refused.json()["resourceType"] == "OperationOutcome"

    sign_in(page, clinic, PRIYA)
    assert "Scheduler with access to blocked patients" in page.locator("header").inner_text()
    page.get_by_role("button", name="Sign out").click()
    buttons.first.wait_for()


# ---- blocked patients --------------------------------------------------------------------


def test_a_restricted_patient_leaves_no_trace_without_the_privacy_permission(
    page: Any, clinic: Clinic, screen: Screens
) -> None:
    session, other = sessions_free_of(clinic, "sched-haddad-dn", "pat-013")[1:3]
    book_by_api(clinic, "pat-013", session["id"])  # Jensen, James: restricted
    held = slot_now(clinic, session["id"])
    sign_in(page, clinic, SAM)
    start_booking(page, held, department="Denver Behavioral Health")
    search_patients(page, "Jensen")
    assert "pat-013" not in page.locator("[data-patient]").evaluate_all(
        "els => els.map(e => e.dataset.patient)"
    )
    assert "James" not in page.get_by_role("list", name="Patients found").inner_text()
    search_patients(page, "MRN100013")
    assert "No patient found" in page.get_by_role("main").inner_text()
    screen(page, "restricted-hidden-search")
    page.get_by_role("button", name="Back to the calendar").click()
    open_session(page, held, department="Denver Behavioral Health")
    details = page.get_by_role("complementary")
    capacity, booked = places(held)
    assert details.get_by_test_id("details-count").inner_text() == f"{booked}/{capacity}"
    details.get_by_text(re.compile("None.|DOB")).first.wait_for()
    assert "Jensen, James" not in details.inner_text() and details.locator(".lock").count() == 0
    screen(page, "restricted-hidden-details")
    page.get_by_role("button", name="Sign out").click()

    sign_in(page, clinic, PRIYA)
    open_session(page, held, department="Denver Behavioral Health")
    details = page.get_by_role("complementary")
    details.get_by_text("Jensen, James").wait_for()
    assert details.locator(".lock").count() == 1
    page.get_by_role("complementary").get_by_role("button", name="Close").click()
    start_booking(page, other, department="Denver Behavioral Health")
    search_patients(page, "Jensen")
    result = page.locator('[data-patient="pat-013"]')
    assert result.locator(".lock").count() == 1
    screen(page, "restricted-shown-with-lock")
    result.click()
    page.get_by_test_id("patient-card").get_by_text("SELF PAY").wait_for()
    page.get_by_role("button", name="Review").click()
    page.get_by_role("button", name="Book appointment").click()
    page.get_by_role("heading", name="Appointment booked").wait_for()
    assert appointments_of(clinic, "pat-013", slot=f"Slot/{other['id']}", status="booked")


# ---- keyboard ----------------------------------------------------------------------------


def test_a_scheduler_reaches_book_appointment_and_finds_a_patient_with_the_keyboard_alone(
    page: Any, clinic: Clinic, screen: Screens
) -> None:
    slot = clinic.future_sessions("sched-rivera-bk")[3]
    sign_in(page, clinic, SAM)
    page.get_by_label("Show the week of").fill(local_date(slot["start"], "America/New_York"))
    page.locator('[role=tab][data-schedule="sched-rivera-bk"]').focus()
    page.keyboard.press("Enter")
    tile = page.locator(f'.tile[data-slot="{slot["id"]}"]')
    tile.focus()
    page.keyboard.press("Enter")
    focused = "document.activeElement && document.activeElement.id"
    page.wait_for_function(f"{focused} === 'details-heading'")  # focus moved to the details
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Book Appointment"
    page.keyboard.press("Enter")
    page.get_by_role("heading", name="Book Appointment").wait_for()
    page.get_by_label("Find a patient").focus()
    page.keyboard.type("MRN100010")
    page.keyboard.press("Enter")  # the search form submits
    page.locator('[data-searched="MRN100010"]').wait_for()
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")  # past the Search button to the first result
    assert page.evaluate("document.activeElement.dataset.patient") == "pat-010"
    page.keyboard.press("Enter")
    page.get_by_test_id("patient-card").get_by_text("SELF PAY").wait_for()
    screen(page, "keyboard-patient-chosen")
