"""Blocked (restricted) patients do not exist for a caller without `__patient.blocked`
(issue 3, point 4; DESIGN §7).

The world: a clinic with a restricted patient R ("Zzyzx Quillon", MRN, SSN and phone,
registered through the API by a privacy officer), R's insurance plan, R's self-pay
coverage, a family plan of a visible patient V with R as its subscriber, and R's
booking (with a business identifier) in a group session V is booked into too.

As a user with `user/*.cruds` but without the permission, every request below is
made, and for every answer (status, body, every header):

* when the request names none of R's secrets, none of them appears in the answer:
  R's id, family and given names, MRN, phone (any formatting, digits alone), SSN
  (clear, digits alone, last four), the SSN's keyed hash, the ids of R's appointment
  and coverages, the member ids of R's coverages, R's booking identifier;
* when the request names one of them itself (e.g. `_id=<R>` or `GET Patient/<R>`),
  the answer is indistinguishable from the same request naming a nonexistent value
  of the same length: same status, same headers, same body once the substituted
  value is put back (new ids and timestamps aside) — and still no other secret.

Paths walked (R = R's id, Ra = R's appointment, Rc/Rs/Rf = R's plan, R's self-pay,
the family plan; "=R..." stands for each of R's values listed above):

Reads — `GET /fhir/Patient/R`, `/Patient/R/_history`, `/Patient/R/_history/1`,
`/Appointment/Ra`, `/Coverage/Rc`, `/Coverage/Rs`, `/Coverage/Rf`, `/Slot/<session>`.

Patient searches (GET and `POST /fhir/Patient/_search`) — no parameters; `_id` (R,
and R with V); `family` (prefix, full, `:exact`, `:contains`); `given` (prefix, full,
`:exact`); `name` (prefix, given, `:contains`); `identifier` (MRN with and without
system, SSN with and without dashes, masked SSN); `phone` in four formattings;
`telecom` (`phone|…` and bare); `birthdate` (`eq`, `ge`); `gender`; family+given
ANDed; `_sort`; `_lastUpdated` (also as the sort key); `_count=1` and every `next` page.

Appointment searches — no parameters; `_id=Ra`; `patient` (`Patient/R`, bare R,
`:Patient`); `actor` (`Patient/R`, bare R, the Practitioner, the Location);
`practitioner`; `location`; `date` (day, `ge`); `status` (booked, `:not` cancelled);
`slot` (the shared session); `appointment-type`; `identifier` (R's booking
identifier with and without system); chained `patient.family` (prefix and full),
`patient.given`, `patient.name`, `patient.identifier` (MRN, SSN), `patient.phone`,
`patient.telecom`, `patient.birthdate`, `patient.gender`, `patient._id`,
`patient._lastUpdated`; `_lastUpdated`; `_include=Appointment:patient|slot|practitioner|location`.

Slot, Schedule — `Slot?_id=<session>&_revinclude=Appointment:slot`,
`Slot?schedule=…&_include=Slot:schedule&_revinclude=Appointment:slot`,
`Slot?start=…`, `Slot?status=free`, `Schedule?_id=…&_revinclude=Slot:schedule`.

Coverage searches — no parameters; `_id` (Rc, Rf); `patient` (`Patient/R`, bare R,
V); `beneficiary` (R, V); `subscriber` (R); `payor` (`Patient/R`, bare R, the payer
Organization); `status` (active, `:not` cancelled); `type` (self-pay, insurance);
`identifier` (R's and the family plan's member ids, with and without system);
chained `patient.family`, `patient.phone`, `beneficiary.identifier`,
`beneficiary.name`, `subscriber.family`, `subscriber.given`, `subscriber._id`,
`patient._id`, `beneficiary._lastUpdated`; `_lastUpdated`; `_include=Coverage:payor`,
`_include=Coverage:beneficiary`.

Operations — `POST /fhir/Appointment/$find` for R and for V; `$book` of a proposal
for R, of V with R's coverage, of R's appointment as a draft to resolve;
`POST /fhir/Appointment/Ra/$cancel-series`.

Writes — `POST /fhir/Patient` with `If-None-Exist` on R's MRN, on R's name and on
R's SSN; `POST /fhir/Coverage` with `If-None-Exist` on R's member id, for R as
beneficiary, as subscriber, as payor; `POST /fhir/Appointment` booking R (into the
shared session and into an empty one), booking V with R's plan as primary and with
the family plan as secondary, with `If-None-Exist` on R's booking identifier (see
the note in that test);
`PUT /fhir/Appointment/Ra` (cancel), `PUT` of V's appointment moved to R,
`PUT /fhir/Patient/R` (plain, with a stale `If-Match`), `PUT /fhir/Coverage/Rc`.

Bundles (`POST /fhir`) — a batch of GETs: R's Patient, `Patient?family`, SSN
identifier, R's appointment, `Appointment?patient=R`, `?patient.family`, R's plan,
`Coverage?subscriber=R`, the shared session with `_revinclude`; a batch with a PUT of
R and a booking of R; a transaction booking R; a transaction registering a patient
and booking V with R's plan.

Errors — no token (401), a token without Patient scope (403), `DELETE` (405),
`AuditEvent` search and read (403), malformed values next to R's values (400),
unknown parameters and includes (400), a wrong reference type naming R (400), an
update whose body id differs from the URL (400), an unknown element (400).

Then, with the permission, R is found by search and read, carries the
`v3-Confidentiality#R` label, shows up in the shared session's revinclude, and is
booked. Group counts include R throughout: the session says 2/10 to everyone.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import parse_qsl, quote, quote_plus, urlencode, urlsplit

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select
from werkzeug.test import TestResponse

from mappings.search_params import SEARCHES
from mappings.timing import EXT_RECURRENCE_ID, EXT_SERIES_TIMING
from store.models import AuditRecord, Booking, PatientIdentifier
from tests.factories import (
    MONDAY,
    MRN,
    Clinic,
    make_clinic,
    make_coverage,
    make_patient,
    make_session,
)
from tests.integration.helpers import BOOKING_ID_SYSTEM, appointment, capacity_of, state
from tests.integration.privacy_helpers import (
    ACT_CODE,
    MEMBER,
    PLAIN_AUDITOR,
    PRIVACY_OFFICER,
    RESTRICTED,
    SELF_PAY,
    SSN,
    STAFF,
    body,
    coverage_body,
    create,
    included,
    make_payer,
    match_ids,
    matches,
    patient_body,
    send,
    token,
)

FAMILY, GIVEN, R_MRN = "Zzyzx", "Quillon", "ZQ-880017"
R_SSN, R_PHONE = "512-44-7391", "(555) 019-7733"
R_MEMBER, FAMILY_MEMBER, R_BOOKING = "ACME-R-001", "ACME-F-001", "R-BOOK-1"
PAYER = "payer-acme"
TIMING = {
    "repeat": {
        "boundsPeriod": {"start": "2027-01-04"},
        "count": 2,
        "duration": 90,
        "durationUnit": "min",
        "frequency": 1,
        "period": 1,
        "periodUnit": "wk",
        "dayOfWeek": ["mon"],
        "timeOfDay": ["10:00:00"],
    }
}


@dataclass(frozen=True)
class World:
    clinic: Clinic
    session: str  # V and R booked here
    spare_session: str  # nobody booked
    visible: str
    visible_self_pay: str
    visible_plan: str
    visible_appointment: str
    restricted: str
    restricted_plan: str
    restricted_self_pay: str
    family_plan: str  # V's coverage whose subscriber is R
    restricted_appointment: str
    ssn_hash: str
    twin_ssn_hash: str  # the keyed hash of the stand-in SSN (512-44-8402)
    restricted_draft: str | None = None  # R's draft (only in the restricted-later world)


def build_world(app, client: FlaskClient, database, *, restrict_later: bool = False) -> World:
    """The world above. With `restrict_later`, R is registered unrestricted, gets every
    record (and a draft of a series) while visible, and is restricted only then."""

    def store_part(db):
        clinic = make_clinic(db)
        session = make_session(db, clinic, capacity=10)
        spare = make_session(db, clinic, start=MONDAY + dt.timedelta(days=7))
        make_payer(db, PAYER, "Acme Health")
        visible = make_patient(db, family="Visible", given="Vera", self_pay=False).id
        return clinic, session.id, spare.id, visible, make_coverage(db, visible, self_pay=True).id

    clinic, session, spare, visible, visible_self_pay = database.write(store_part)
    officer = token(app, PRIVACY_OFFICER, "privacy-officer")
    staff = token(app, STAFF, "front-desk")
    registration = patient_body(
        FAMILY, GIVEN, mrn=R_MRN, ssn=R_SSN, phone=R_PHONE, restricted=not restrict_later
    )
    restricted = create(client, registration, officer)["id"]
    plan = coverage_body(restricted, payor=f"Organization/{PAYER}", order=1, member=R_MEMBER)
    restricted_plan = create(client, plan, officer)["id"]
    self_pay = coverage_body(restricted, payor=f"Patient/{restricted}", self_pay=True)
    restricted_self_pay = create(client, self_pay, officer)["id"]
    family = coverage_body(
        visible,
        payor=f"Organization/{PAYER}",
        order=2,
        member=FAMILY_MEMBER,
        subscriber=restricted,
    )
    family_plan = create(client, family, officer)["id"]
    visible_plan = create(
        client,
        coverage_body(visible, payor=f"Organization/{PAYER}", order=1, member="ACME-V-1"),
        staff,
    )["id"]
    restricted_appointment = create(
        client,
        appointment(
            session,
            restricted,
            identifier=R_BOOKING,
            supportingInformation=[{"reference": f"Coverage/{restricted_plan}"}],
        ),
        officer,
    )["id"]
    visible_appointment = create(
        client,
        appointment(
            session,
            visible,
            identifier="V-BOOK-1",
            supportingInformation=[{"reference": f"Coverage/{visible_plan}"}],
        ),
        staff,
    )["id"]
    draft = None
    if restrict_later:
        drafted = {**proposal_for(session, clinic, restricted), "requestedPeriod": [
            {"start": "2027-01-11T15:00:00Z", "end": "2027-01-11T16:30:00Z"}]}  # fmt: skip
        del drafted["slot"], drafted["start"], drafted["end"]
        stored = body(send(client, "POST", "/fhir/Appointment/$book",
                           book_parameters([drafted]), officer), 200)  # fmt: skip
        draft = stored["entry"][0]["resource"]["id"]
        set_restriction(client, officer, restricted, restricted=True)
    with database.reading() as db:
        ssn_hash = db.scalar(
            select(PatientIdentifier.value).where(
                PatientIdentifier.patient_id == restricted, PatientIdentifier.system == SSN
            )
        )
    return World(
        clinic,
        session,
        spare,
        visible,
        visible_self_pay,
        visible_plan,
        visible_appointment,
        restricted,
        restricted_plan,
        restricted_self_pay,
        family_plan,
        restricted_appointment,
        ssn_hash,
        app.extensions["fhir_facade.ssn"].digest("512448402"),
        draft,
    )


def set_restriction(
    client: FlaskClient, officer: dict[str, str], patient: str, *, restricted: bool
) -> None:
    """Restrict or unrestrict a patient as a privacy officer does: PUT with or without the
    `v3-Confidentiality#R` label."""
    current = body(client.get(f"/fhir/Patient/{patient}", headers=officer), 200)
    current["meta"] = {"security": [RESTRICTED]} if restricted else {}
    body(send(client, "PUT", f"/fhir/Patient/{patient}", current, officer), 200)


# -- secrets: what must not show, and a same-length stand-in for each --------------------


def _stand_in(n: int) -> str:
    return f"nonexistent-{n}".ljust(32, "0")


@dataclass(frozen=True)
class Secrets:
    """R's secrets by label: each form as it may appear, with its stand-in."""

    forms: dict[str, list[tuple[str, str]]]
    digits: dict[str, str]  # label -> digits that must not appear, whatever the separators
    hashed: str

    @classmethod
    def of(cls, w: World) -> Secrets:
        phone = [
            (f, f.replace("7733", "8844"))
            for f in (R_PHONE, "555.019.7733", "+1 555 019 7733", "5550197733", "019-7733")
        ]
        ssn = [(f, f.replace("7391", "8402")) for f in (R_SSN, "512447391", "***-**-7391")]
        return cls(
            forms={
                "patient id": [(w.restricted, _stand_in(0))],
                "appointment id": [(w.restricted_appointment, _stand_in(1))]
                + ([(w.restricted_draft, _stand_in(5))] if w.restricted_draft else []),
                "coverage id": [
                    (w.restricted_plan, _stand_in(2)),
                    (w.restricted_self_pay, _stand_in(3)),
                    (w.family_plan, _stand_in(4)),
                ],
                "family name": [(FAMILY, "Qqxqv")],
                "given name": [(GIVEN, "Xandrop")],
                "MRN": [(R_MRN, "ZQ-990017")],
                "member id": [(R_MEMBER, "ACME-X-001"), (FAMILY_MEMBER, "ACME-Y-001")],
                "booking identifier": [(R_BOOKING, "X-BOOK-1")],
                "phone": phone,
                "SSN": ssn,
                "SSN hash": [(w.ssn_hash, w.twin_ssn_hash)],
            },
            digits={"phone": "5550197733", "SSN": "512447391"},
            hashed=w.ssn_hash,
        )

    def found(self, text: str) -> set[str]:
        """The labels of the secrets `text` shows."""
        lowered = text.lower()
        labels = {
            label
            for label, forms in self.forms.items()
            for form, _ in forms
            if any(v.lower() in lowered for v in _encodings(form))
        }
        collapsed = re.sub(r"[\s().+\-]|%2[0-9B]|%28|%29", "", text)
        labels |= {label for label, digits in self.digits.items() if digits in collapsed}
        if re.search(r"(?<![0-9A-Za-z])7391(?![0-9A-Za-z])", text):
            labels.add("SSN")
        if self.hashed.split(":")[-1] in text:
            labels.add("SSN hash")
        return labels

    def substitute(self, text: str) -> str:
        """`text` with every secret replaced by its stand-in (longest forms first)."""
        pairs = [
            (encoded_form, encoded_stand_in)
            for forms in self.forms.values()
            for form, stand_in in forms
            for encoded_form, encoded_stand_in in zip(
                _encodings(form), _encodings(stand_in), strict=True
            )
        ]
        for form, stand_in in sorted(pairs, key=lambda p: -len(p[0])):
            text = re.sub(re.escape(form), stand_in.replace("\\", "\\\\"), text, flags=re.I)
        return re.sub(r"(?<![0-9A-Za-z])7391(?![0-9A-Za-z])", "8402", text)


def _encodings(value: str) -> tuple[str, str, str]:
    return value, quote_plus(value), quote(value, safe="")


# -- probes ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    """One request of the walk, and what its answer must be."""

    method: str
    path: str
    params: tuple[tuple[str, str], ...] = ()
    payload: Any = None  # a JSON body
    form: bool = False  # send `params` as a form body (POST _search)
    headers: tuple[tuple[str, str], ...] = ()
    status: int = 200
    scope: str | None = STAFF  # None: no token at all
    expect_ids: tuple[str, ...] | None = None  # the matches, in any order
    note: str = ""

    @property
    def name(self) -> str:
        query = f"?{urlencode(self.params)}" if self.params and not self.form else ""
        form = f" (form {urlencode(self.params)})" if self.form else ""
        return f"{self.method} {self.path}{query}{form}{self.note}"

    def text(self) -> str:
        return " ".join(
            [
                self.path,
                *(v for _, v in self.params),
                json.dumps(self.payload),
                *(v for _, v in self.headers),
            ]
        )

    def substituted(self, secrets: Secrets) -> Probe:
        return replace(
            self,
            path=secrets.substitute(self.path),
            params=tuple((k, secrets.substitute(v)) for k, v in self.params),
            payload=json.loads(secrets.substitute(json.dumps(self.payload))),
            headers=tuple((k, secrets.substitute(v)) for k, v in self.headers),
        )


def get(path: str, *params: tuple[str, str], **options: Any) -> Probe:
    return Probe("GET", path, tuple(params), **options)


def search_form(path: str, *params: tuple[str, str], **options: Any) -> Probe:
    return Probe("POST", path, tuple(params), form=True, **options)


def post(path: str, payload: Any, status: int, **options: Any) -> Probe:
    return Probe("POST", path, payload=payload, status=status, **options)


def put(path: str, payload: Any, status: int, **options: Any) -> Probe:
    return Probe("PUT", path, payload=payload, status=status, **options)


@dataclass
class Walk:
    app: Any
    client: FlaskClient
    secrets: Secrets
    walked: list[str] = field(default_factory=list)

    def send(self, probe: Probe) -> TestResponse:
        headers = dict(probe.headers)
        if probe.scope is not None:
            headers |= token(self.app, probe.scope, "front-desk")
        if probe.form:
            return self.client.post(probe.path, data=dict(probe.params), headers=headers)
        if probe.payload is not None:
            return send(self.client, probe.method, probe.path, probe.payload, headers)
        return self.client.open(
            probe.path, method=probe.method, query_string=list(probe.params), headers=headers
        )

    def check(
        self, probe: Probe, undo: Callable[[dict[str, Any]], None] | None = None
    ) -> dict[str, Any]:
        """Make the request; prove the answer shows nothing of R; return its body.
        `undo` is called with each answer, so the twin request meets the same state."""
        response = self.send(probe)
        answer = body(response, probe.status)
        if undo is not None:
            undo(answer)
        asked = self.secrets.found(probe.text())
        if "SSN" in asked:
            # Paging links carry the keyed hash of an SSN the caller sent, never the SSN.
            asked.add("SSN hash")
        shown = self.secrets.found(_visible_text(response))
        assert shown <= asked, (probe.name, shown - asked, response.get_data(as_text=True))
        if asked:
            twin = self.send(probe.substituted(self.secrets))
            twin_answer = body(twin, probe.status)
            if undo is not None:
                undo(twin_answer)
            assert response.headers.get("Content-Length") == twin.headers.get("Content-Length"), (
                probe.name
            )
            ours = _normalized(self.secrets.substitute(_visible_text(response)))
            theirs = _normalized(_visible_text(twin))
            assert ours == theirs, (probe.name, ours, theirs)
        if probe.expect_ids is not None:
            assert sorted(match_ids(answer)) == sorted(probe.expect_ids), probe.name
            assert answer.get("total", len(probe.expect_ids)) == len(probe.expect_ids), probe.name
        self.walked.append(probe.name)
        return answer

    def follow_pages(self, probe: Probe) -> list[str]:
        """Walk `probe` and every `next` page; the ids matched on all pages."""
        page = self.check(probe)
        found = match_ids(page)
        while nexts := [link["url"] for link in page["link"] if link["relation"] == "next"]:
            url = urlsplit(nexts[0])
            params = tuple(parse_qsl(url.query))
            page = self.check(Probe("GET", url.path, params, note=" (next page)"))
            found += match_ids(page)
        return found


def _visible_text(response: TestResponse) -> str:
    headers = "\n".join(f"{k}: {v}" for k, v in response.headers if k != "Content-Length")
    return headers + "\n" + response.get_data(as_text=True)


def _normalized(text: str) -> str:
    text = re.sub(r"(?<![0-9a-f])[0-9a-f]{32}(?![0-9a-f])", "<new id>", text)
    text = re.sub(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", "<instant>", text)
    return re.sub(r"\w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d GMT", "<http date>", text)


# -- the walk ------------------------------------------------------------------------------


def read_probes(w: World) -> list[Probe]:
    """Every read, search, include, revinclude, chain and read-only operation."""
    R, V = w.restricted, w.visible
    prac, dept, sched = w.clinic.provider_id, w.clinic.department_id, w.clinic.schedule_id
    v_only, none = (V,), ()
    mrn, ssn = f"{MRN}|{R_MRN}", f"{SSN}|{R_SSN}"
    patient_queries: list[tuple[tuple[str, str], ...]] = [
        (("_id", R),),
        (("_id", f"{R},{V}"),),
        (("family", "zzy"),),
        (("family", FAMILY),),
        (("family:exact", FAMILY),),
        (("family:contains", "yzx"),),
        (("given", "quil"),),
        (("given", GIVEN),),
        (("given:exact", GIVEN),),
        (("name", "zz"),),
        (("name", GIVEN),),
        (("name:contains", "uillo"),),
        (("identifier", mrn),),
        (("identifier", R_MRN),),
        (("identifier", ssn),),
        (("identifier", f"{SSN}|512447391"),),
        (("identifier", f"{SSN}|***-**-7391"),),
        (("phone", R_PHONE),),
        (("phone", "555.019.7733"),),
        (("phone", "+1 555 019 7733"),),
        (("phone", "5550197733"),),
        (("telecom", "phone|555.019.7733"),),
        (("telecom", R_PHONE),),
        (("family", "zzy"), ("given", "quil")),
    ]
    probes = [get("/fhir/Patient", expect_ids=v_only)]
    probes += [
        get("/fhir/Patient", *q, expect_ids=(V,) if q[0][1].endswith(V) else none)
        for q in patient_queries
    ]
    probes += [
        search_form("/fhir/Patient/_search", *q, expect_ids=none)
        for q in patient_queries
        if q[0][0] != "_id"
    ]
    probes += [
        get("/fhir/Patient", ("birthdate", "1980-05-17"), expect_ids=v_only),
        get("/fhir/Patient", ("birthdate", "ge1900"), ("gender", "female"), expect_ids=v_only),
        get("/fhir/Patient", ("gender", "female"), ("_sort", "-family"), expect_ids=v_only),
        get("/fhir/Patient", ("_lastUpdated", "ge2000-01-01"), expect_ids=v_only),
        get(
            "/fhir/Patient",
            ("_lastUpdated", "ge2000"),
            ("_sort", "-_lastUpdated"),
            expect_ids=v_only,
        ),
        get(f"/fhir/Patient/{R}", status=404),
        get(f"/fhir/Patient/{R}/_history", status=404),
        get(f"/fhir/Patient/{R}/_history/1", status=404),
    ]

    appointments = [
        (("_id", w.restricted_appointment), none),
        (("patient", f"Patient/{R}"), none),
        (("patient", R), none),
        (("patient:Patient", R), none),
        (("actor", f"Patient/{R}"), none),
        (("actor", R), none),
        (("actor", f"Practitioner/{prac}"), (w.visible_appointment,)),
        (("actor", f"Location/{dept}"), (w.visible_appointment,)),
        (("practitioner", f"Practitioner/{prac}"), (w.visible_appointment,)),
        (("location", f"Location/{dept}"), (w.visible_appointment,)),
        (("date", "2027-01-04"), (w.visible_appointment,)),
        (("date", "ge2027-01-01"), (w.visible_appointment,)),
        (("status", "booked"), (w.visible_appointment,)),
        (("status:not", "cancelled"), (w.visible_appointment,)),
        (("slot", f"Slot/{w.session}"), (w.visible_appointment,)),
        (("appointment-type", "group-therapy"), (w.visible_appointment,)),
        (("identifier", f"{BOOKING_ID_SYSTEM}|{R_BOOKING}"), none),
        (("identifier", R_BOOKING), none),
        (("patient.family", "zzy"), none),
        (("patient.family", FAMILY), none),
        (("patient.given", GIVEN), none),
        (("patient.name", "quil"), none),
        (("patient.identifier", mrn), none),
        (("patient.identifier", ssn), none),
        (("patient.phone", "555.019.7733"), none),
        (("patient.telecom", R_PHONE), none),
        (("patient.birthdate", "1980-05-17"), (w.visible_appointment,)),
        (("patient.gender", "female"), (w.visible_appointment,)),
        (("patient._id", R), none),
        (("_lastUpdated", "ge2000-01-01"), (w.visible_appointment,)),
        (("patient._lastUpdated", "ge2000-01-01"), (w.visible_appointment,)),
    ]
    probes += [get("/fhir/Appointment", expect_ids=(w.visible_appointment,))]
    probes += [get("/fhir/Appointment", q, expect_ids=ids) for q, ids in appointments]
    probes += [
        get(
            "/fhir/Appointment",
            ("slot", f"Slot/{w.session}"),
            ("_include", include),
            expect_ids=(w.visible_appointment,),
        )
        for include in (
            "Appointment:patient",
            "Appointment:slot",
            "Appointment:practitioner",
            "Appointment:location",
        )
    ]
    probes += [get(f"/fhir/Appointment/{w.restricted_appointment}", status=404)]

    probes += [
        get(f"/fhir/Slot/{w.session}"),
        get("/fhir/Slot", ("_id", w.session), ("_revinclude", "Appointment:slot")),
        get(
            "/fhir/Slot",
            ("schedule", f"Schedule/{sched}"),
            ("_include", "Slot:schedule"),
            ("_revinclude", "Appointment:slot"),
        ),
        get("/fhir/Slot", ("start", "2027-01-04"), ("_revinclude", "Appointment:slot")),
        get("/fhir/Slot", ("status", "free"), ("_revinclude", "Appointment:slot")),
        get("/fhir/Schedule", ("_id", sched), ("_revinclude", "Slot:schedule")),
    ]

    v_coverages = (w.visible_self_pay, w.visible_plan)
    coverages = [
        (("_id", w.restricted_plan), none),
        (("_id", w.family_plan), none),
        (("patient", f"Patient/{R}"), none),
        (("patient", R), none),
        (("patient", f"Patient/{V}"), v_coverages),
        (("beneficiary", f"Patient/{R}"), none),
        (("beneficiary", V), v_coverages),
        (("subscriber", f"Patient/{R}"), none),
        (("payor", f"Patient/{R}"), none),
        (("payor", R), none),
        (("payor", f"Organization/{PAYER}"), (w.visible_plan,)),
        (("status", "active"), v_coverages),
        (("status:not", "cancelled"), v_coverages),
        (("type", f"{SELF_PAY}|pay"), (w.visible_self_pay,)),
        (("type", f"{ACT_CODE}|EHCPOL"), (w.visible_plan,)),
        (("identifier", f"{MEMBER}|{R_MEMBER}"), none),
        (("identifier", R_MEMBER), none),
        (("identifier", FAMILY_MEMBER), none),
        (("patient.family", FAMILY), none),
        (("patient.phone", "5550197733"), none),
        (("beneficiary.identifier", mrn), none),
        (("beneficiary.name", "zzy"), none),
        (("subscriber.family", "zzy"), none),
        (("subscriber.given", GIVEN), none),
        (("subscriber._id", R), none),
        (("patient._id", R), none),
        (("_lastUpdated", "ge2000-01-01"), v_coverages),
        (("beneficiary._lastUpdated", "ge2000-01-01"), v_coverages),
    ]
    probes += [get("/fhir/Coverage", expect_ids=v_coverages)]
    probes += [get("/fhir/Coverage", q, expect_ids=ids) for q, ids in coverages]
    probes += [
        get(
            "/fhir/Coverage",
            ("payor", f"Organization/{PAYER}"),
            ("_include", "Coverage:payor"),
            expect_ids=(w.visible_plan,),
        ),
        get(
            "/fhir/Coverage",
            ("patient", V),
            ("_include", "Coverage:payor"),
            ("_include", "Coverage:beneficiary"),
            expect_ids=v_coverages,
        ),
        get(
            "/fhir/Coverage",
            ("status", "active"),
            ("_include", "Coverage:payor"),
            ("_include", "Coverage:beneficiary"),
            expect_ids=v_coverages,
        ),
    ]
    probes += [
        get(f"/fhir/Coverage/{c}", status=404)
        for c in (w.restricted_plan, w.restricted_self_pay, w.family_plan)
    ]

    probes += [
        post("/fhir/Appointment/$find", find_parameters(w, R), 404),
        post("/fhir/Appointment/$find", find_parameters(w, V), 200),
    ]
    probes += error_probes(w)
    return probes


def error_probes(w: World) -> list[Probe]:
    R = w.restricted
    return [
        get(f"/fhir/Patient/{R}", status=401, scope=None),
        get(f"/fhir/Patient/{R}", status=403, scope="user/Slot.rs"),
        get("/fhir/Patient", ("family", FAMILY), status=403, scope="user/Slot.rs"),
        Probe("DELETE", f"/fhir/Patient/{R}", status=405),
        Probe("DELETE", f"/fhir/Appointment/{w.restricted_appointment}", status=405),
        get("/fhir/AuditEvent", status=403),
        get("/fhir/AuditEvent", ("patient", f"Patient/{R}"), status=403),
        get(f"/fhir/AuditEvent/{R}", status=403),
        get("/fhir/Patient", ("family", FAMILY), ("birthdate", "soon"), status=400),
        get("/fhir/Patient", ("identifier", R_MRN), ("shoe-size", "42"), status=400),
        get("/fhir/Patient", ("_id", R), ("_sort", "shoe-size"), status=400),
        get("/fhir/Appointment", ("patient", f"Patient/{R}"), ("status", "maybe"), status=400),
        get("/fhir/Appointment", ("patient", f"Group/{R}"), status=400),
        get("/fhir/Appointment", ("patient.family", FAMILY), ("patient.shoe", "1"), status=400),
        get("/fhir/Coverage", ("patient", R), ("_include", "Coverage:subscriber"), status=400),
        get("/fhir/Slot", ("_id", w.session), ("_revinclude", "Appointment:patient"), status=400),
    ]


def find_parameters(w: World, patient: str) -> dict[str, Any]:
    return {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "patient", "valueReference": {"reference": f"Patient/{patient}"}},
            {
                "name": "practitioner",
                "valueReference": {"reference": f"Practitioner/{w.clinic.provider_id}"},
            },
            {"name": "timing", "valueTiming": TIMING},
        ],
    }


def proposal(w: World, patient: str) -> dict[str, Any]:
    """The second occurrence as $find proposes it (into the empty session)."""
    return proposal_for(w.spare_session, w.clinic, patient)


def proposal_for(session: str, clinic: Clinic, patient: str) -> dict[str, Any]:
    return {
        "resourceType": "Appointment",
        "extension": [
            {"url": EXT_RECURRENCE_ID, "valuePositiveInt": 2},
            {"url": EXT_SERIES_TIMING, "valueTiming": TIMING},
        ],
        "status": "proposed",
        "start": "2027-01-11T15:00:00Z",
        "end": "2027-01-11T16:30:00Z",
        "slot": [{"reference": f"Slot/{session}"}],
        "participant": [
            {"actor": {"reference": f"Patient/{patient}"}, "status": "needs-action"},
            {"actor": {"reference": f"Practitioner/{clinic.provider_id}"}, "status": "accepted"},
            {"actor": {"reference": f"Location/{clinic.department_id}"}, "status": "accepted"},
        ],
    }


def book_parameters(resources: list[dict[str, Any]], *coverages: str) -> dict[str, Any]:
    parameters: list[dict[str, Any]] = [
        {"name": "appointment-resource", "resource": r} for r in resources
    ]
    parameters += [
        {"name": "coverage", "valueReference": {"reference": f"Coverage/{c}"}} for c in coverages
    ]
    return {"resourceType": "Parameters", "parameter": parameters}


def write_probes(w: World, privileged_view: Callable[[str], dict[str, Any]]) -> list[Probe]:
    """Every write that names R or R's records; each must act as if they did not exist."""
    R, V = w.restricted, w.visible
    r_appointment = privileged_view(f"/fhir/Appointment/{w.restricted_appointment}")
    v_appointment = privileged_view(f"/fhir/Appointment/{w.visible_appointment}")
    r_patient = privileged_view(f"/fhir/Patient/{R}")
    r_plan = privileged_view(f"/fhir/Coverage/{w.restricted_plan}")
    cancelled = {**r_appointment, "status": "cancelled"}
    moved = {
        **v_appointment,
        "participant": [{"actor": {"reference": f"Patient/{R}"}, "status": "accepted"}],
    }
    twin = patient_body("Newcomb", "Nia", mrn=R_MRN)
    acme = f"Organization/{PAYER}"
    return [
        post("/fhir/Patient", twin, 201, headers=(("If-None-Exist", f"identifier={MRN}|{R_MRN}"),)),
        post(
            "/fhir/Patient",
            patient_body("Newcomb", "Nia"),
            201,
            headers=(("If-None-Exist", f"family={FAMILY}&given={GIVEN}"),),
        ),
        post(
            "/fhir/Patient",
            patient_body("Newcomb", "Nia", ssn=R_SSN),
            201,
            headers=(("If-None-Exist", f"identifier={SSN}|{R_SSN}"),),
        ),
        post(
            "/fhir/Coverage",
            coverage_body(V, payor=acme, member=R_MEMBER),
            201,
            headers=(("If-None-Exist", f"identifier={MEMBER}|{R_MEMBER}"),),
        ),
        post("/fhir/Coverage", coverage_body(R, payor=acme), 404),
        post("/fhir/Coverage", coverage_body(V, payor=acme, subscriber=R), 404),
        post("/fhir/Coverage", coverage_body(V, payor=f"Patient/{R}", self_pay=True), 404),
        post("/fhir/Appointment", appointment(w.spare_session, R), 404),
        post("/fhir/Appointment", appointment(w.session, R), 404),
        post(
            "/fhir/Appointment",
            appointment(
                w.spare_session,
                V,
                supportingInformation=[{"reference": f"Coverage/{w.restricted_plan}"}],
            ),
            404,
        ),
        post(
            "/fhir/Appointment",
            appointment(
                w.spare_session,
                V,
                supportingInformation=[
                    {"reference": f"Coverage/{w.visible_plan}"},
                    {"reference": f"Coverage/{w.family_plan}"},
                ],
            ),
            404,
        ),
        put(f"/fhir/Appointment/{w.restricted_appointment}", cancelled, 404),
        put(f"/fhir/Appointment/{w.visible_appointment}", moved, 422),
        put(f"/fhir/Patient/{R}", {**r_patient, "gender": "other"}, 404),
        put(f"/fhir/Patient/{R}", r_patient, 404, headers=(("If-Match", 'W/"7"'),)),
        put(f"/fhir/Patient/{R}", {**r_patient, "id": V}, 400),
        put(f"/fhir/Patient/{R}", {**r_patient, "shoeSize": 42}, 400),
        put(f"/fhir/Coverage/{w.restricted_plan}", {**r_plan, "status": "cancelled"}, 404),
        post("/fhir/Appointment/$book", book_parameters([proposal(w, R)]), 404),
        post("/fhir/Appointment/$book", book_parameters([proposal(w, V)], w.restricted_plan), 404),
        post(
            "/fhir/Appointment/$book",
            book_parameters(
                [{**r_appointment, "slot": [{"reference": f"Slot/{w.spare_session}"}]}]
            ),
            404,
        ),
        post(
            f"/fhir/Appointment/{w.restricted_appointment}/$cancel-series",
            {"resourceType": "Parameters", "parameter": [{"name": "scope", "valueCode": "all"}]},
            404,
        ),
        post("/fhir", _bundle("batch", *_reads_of_r(w)), 200),
        post(
            "/fhir",
            _bundle(
                "batch",
                ("PUT", f"Patient/{R}", {**r_patient, "gender": "other"}),
                ("POST", "Appointment", appointment(w.spare_session, R)),
            ),
            200,
        ),
        post(
            "/fhir", _bundle("transaction", ("POST", "Appointment", appointment(w.session, R))), 404
        ),
        post(
            "/fhir",
            _bundle(
                "transaction",
                ("POST", "Patient", patient_body("Newcomb", "Nia")),
                (
                    "POST",
                    "Appointment",
                    appointment(
                        w.spare_session,
                        V,
                        supportingInformation=[{"reference": f"Coverage/{w.restricted_plan}"}],
                    ),
                ),
            ),
            404,
        ),
    ]


def _reads_of_r(w: World) -> list[tuple[str, str, Any]]:
    """The reads and searches a batch may carry, each naming R or R's records."""
    R = w.restricted
    return [
        ("GET", f"Patient/{R}", None),
        ("GET", f"Patient?family={FAMILY}", None),
        ("GET", f"Patient?identifier={quote(SSN)}|{R_SSN}", None),
        ("GET", f"Appointment/{w.restricted_appointment}", None),
        ("GET", f"Appointment?patient=Patient/{R}", None),
        ("GET", f"Appointment?patient.family={FAMILY}", None),
        ("GET", f"Coverage/{w.restricted_plan}", None),
        ("GET", f"Coverage?subscriber=Patient/{R}", None),
        ("GET", f"Slot?_id={w.session}&_revinclude=Appointment:slot", None),
    ]


def _bundle(kind: str, *entries: tuple[str, str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": kind,
        "entry": [
            {
                **({"resource": resource} if resource is not None else {}),
                **(
                    {"fullUrl": f"urn:uuid:00000000-0000-4000-8000-00000000000{i}"}
                    if method == "POST"
                    else {}
                ),
                "request": {"method": method, "url": url},
            }
            for i, (method, url, resource) in enumerate(entries)
        ],
    }


# -- the tests -----------------------------------------------------------------------------


@pytest.mark.slow
def test_without_the_permission_no_read_or_search_shows_a_trace_of_a_blocked_patient(
    app, client, database
):
    w = build_world(app, client, database)
    walk = Walk(app, client, Secrets.of(w))

    for probe in read_probes(w):
        walk.check(probe)
    paged = walk.follow_pages(get("/fhir/Patient", ("_count", "1")))

    assert paged == [w.visible]
    session = walk.check(get(f"/fhir/Slot/{w.session}"))
    assert capacity_of(session) == "2/10"  # the count carries no identity
    revincluded = walk.check(
        get("/fhir/Slot", ("_id", w.session), ("_revinclude", "Appointment:slot"))
    )
    assert [r["id"] for r in included(revincluded)] == [w.visible_appointment]
    assert len(walk.walked) > 140


@pytest.mark.slow
def test_without_the_permission_no_write_can_reach_a_blocked_patient(app, client, database):
    w = build_world(app, client, database)
    officer = token(app, PRIVACY_OFFICER, "privacy-officer")

    def privileged_view(path: str) -> dict[str, Any]:
        return body(client.get(path, headers=officer), 200)

    r_before = [
        privileged_view(f"/fhir/{path}")
        for path in (
            f"Patient/{w.restricted}",
            f"Appointment/{w.restricted_appointment}",
            f"Coverage/{w.restricted_plan}",
        )
    ]
    before = state(database)
    walk = Walk(app, client, Secrets.of(w))

    for probe in write_probes(w, privileged_view):
        walk.check(probe)

    after = state(database)
    assert after.booked == before.booked
    assert after.appointments == before.appointments
    assert after.versions == before.versions
    assert [privileged_view(f"/fhir/{r['resourceType']}/{r['id']}") for r in r_before] == r_before


def test_booking_with_a_hidden_bookings_identifier_answers_as_an_unused_one_would(
    app, client, database
):
    """R's booking carries R_BOOKING. Booking a visible patient with it, plainly or with
    `If-None-Exist` on it, books (201) exactly as with a value nobody uses: identifiers are
    unique per patient, so a hidden booking's identifier never collides with a visible
    patient's (store.models.BookingIdentifier)."""
    w = build_world(app, client, database)
    walk = Walk(app, client, Secrets.of(w))
    other = database.write(lambda db: make_patient(db, family="Other", given="Otto").id)
    database.write(lambda db: make_coverage(db, other, self_pay=True))
    staff = token(app, STAFF, "front-desk")

    def cancel(answer: dict[str, Any]) -> None:
        """Free the place again, so the same request with the unused value books too."""
        cancelled = {**answer, "status": "cancelled"}
        body(send(client, "PUT", f"/fhir/Appointment/{answer['id']}", cancelled, staff), 200)

    retried = post(
        "/fhir/Appointment",
        appointment(w.spare_session, w.visible, identifier=R_BOOKING),
        201,
        headers=(("If-None-Exist", f"identifier={BOOKING_ID_SYSTEM}|{R_BOOKING}"),),
    )
    plain = post(
        "/fhir/Appointment", appointment(w.spare_session, other, identifier=R_BOOKING), 201
    )

    for probe in (retried, plain):
        assert walk.check(probe, undo=cancel)["identifier"][0]["value"] == R_BOOKING
    assert capacity_of(body(client.get(f"/fhir/Slot/{w.spare_session}", headers=staff), 200)) == (
        "0/10"
    )


def audit_probes(w: World, r_event: str) -> list[Probe]:
    """The audit trail as an auditor without the privacy permission reads it."""
    R, auditor = w.restricted, PLAIN_AUDITOR
    entities = [f"Patient/{R}", f"Appointment/{w.restricted_appointment}"]
    entities += [f"Appointment/{w.restricted_draft}"] if w.restricted_draft else []
    entities += [f"Coverage/{c}" for c in (w.restricted_plan, w.restricted_self_pay, w.family_plan)]
    return [
        get("/fhir/AuditEvent", ("_count", "1000"), scope=auditor),
        get("/fhir/AuditEvent", ("patient", f"Patient/{R}"), scope=auditor, expect_ids=()),
        *(get("/fhir/AuditEvent", ("entity", e), scope=auditor, expect_ids=()) for e in entities),
        get(f"/fhir/AuditEvent/{r_event}", scope=auditor, status=404),
    ]


@pytest.mark.slow
def test_a_patient_restricted_after_their_records_exist_vanishes_and_returns_when_lifted(
    app, client, database
):
    """Everything derived from R (appointment, draft, coverages, the family plan R
    subscribes to, booking identifier, AuditEvents) follows R's *current* restriction,
    both ways: hidden everywhere once R is restricted, shown again once it is lifted."""
    w = build_world(app, client, database, restrict_later=True)
    with database.reading() as db:
        r_event = db.scalar(
            select(AuditRecord.id).where(AuditRecord.entity_id == w.family_plan).limit(1)
        )
    walk = Walk(app, client, Secrets.of(w))

    for probe in read_probes(w) + audit_probes(w, r_event):
        walk.check(probe)
    walk.check(get(f"/fhir/Appointment/{w.restricted_draft}", status=404))
    walk.check(get("/fhir/Appointment", ("status", "proposed"), expect_ids=()))
    histories = [
        f"Appointment/{w.restricted_appointment}",
        f"Appointment/{w.restricted_draft}",
        f"Coverage/{w.family_plan}",
    ]
    for path in histories:
        walk.check(get(f"/fhir/{path}/_history", status=404))
        walk.check(get(f"/fhir/{path}/_history/1", status=404))

    set_restriction(client, token(app, PRIVACY_OFFICER, "officer"), w.restricted, restricted=False)
    staff, auditor = token(app, STAFF, "front-desk"), token(app, PLAIN_AUDITOR, "auditor")

    def found(path: str, headers: dict[str, str], **params: str) -> list[str]:
        return match_ids(body(client.get(path, query_string=params, headers=headers), 200))

    for path in (
        f"Patient/{w.restricted}",
        f"Appointment/{w.restricted_appointment}",
        f"Appointment/{w.restricted_draft}",
        f"Coverage/{w.family_plan}",
        *(f"{path}/_history/1" for path in histories),
    ):
        body(client.get(f"/fhir/{path}", headers=staff), 200)
    assert sorted(found("/fhir/Coverage", staff, patient=w.restricted)) == sorted(
        [w.restricted_plan, w.restricted_self_pay]
    )
    assert found("/fhir/Appointment", staff, identifier=R_BOOKING) == [w.restricted_appointment]
    assert found("/fhir/AuditEvent", auditor, patient=f"Patient/{w.restricted}")
    assert found("/fhir/AuditEvent", auditor, entity=f"Coverage/{w.family_plan}") == [r_event]
    body(client.get(f"/fhir/AuditEvent/{r_event}", headers=auditor), 200)


def test_the_default_insurance_of_a_booking_is_never_a_plan_the_caller_cannot_see(
    app, client, database
):
    """V's family plan (order 2) has R as its subscriber: hidden, so a booking without a
    coverage choice takes V's own plan alone, never the hidden one as secondary."""
    w = build_world(app, client, database)
    walk = Walk(app, client, Secrets.of(w))

    made = walk.check(post("/fhir/Appointment", appointment(w.spare_session, w.visible), 201))

    assert made["supportingInformation"] == [{"reference": f"Coverage/{w.visible_plan}"}]


def test_with_the_permission_the_blocked_patient_is_found_labelled_and_booked(
    app, client, database
):
    w = build_world(app, client, database)
    officer = token(app, PRIVACY_OFFICER, "privacy-officer")

    def search(path: str, **params: str) -> dict[str, Any]:
        return body(client.get(path, query_string=params, headers=officer), 200)

    for params in (
        {"family": "zzy"},
        {"identifier": R_MRN},
        {"identifier": f"{SSN}|512447391"},
        {"phone": "+1 555 019 7733"},
        {"name": "quillon"},
    ):
        bundle = search("/fhir/Patient", **params)
        (patient,) = matches(bundle)
        assert patient["id"] == w.restricted, params
        assert patient["meta"]["security"] == [RESTRICTED]
        assert bundle["total"] == 1
    assert sorted(match_ids(search("/fhir/Patient"))) == sorted([w.visible, w.restricted])
    read = body(client.get(f"/fhir/Patient/{w.restricted}", headers=officer), 200)
    assert read["meta"]["security"] == [RESTRICTED]
    assert {"system": SSN, "value": "***-**-7391"} in read["identifier"]
    assert match_ids(search("/fhir/Appointment", **{"patient.family": "zzyzx"})) == [
        w.restricted_appointment
    ]
    assert sorted(match_ids(search("/fhir/Coverage", patient=w.restricted))) == sorted(
        [w.restricted_plan, w.restricted_self_pay]
    )
    assert match_ids(search("/fhir/Coverage", subscriber=w.restricted)) == [w.family_plan]
    with_bookings = search("/fhir/Slot", _id=w.session, _revinclude="Appointment:slot")
    assert sorted(r["id"] for r in included(with_bookings)) == sorted(
        [w.visible_appointment, w.restricted_appointment]
    )
    booked = send(
        client, "POST", "/fhir/Appointment", appointment(w.spare_session, w.restricted), officer
    )
    made = body(booked, 201)
    assert made["participant"][0]["actor"] == {"reference": f"Patient/{w.restricted}"}
    assert made["supportingInformation"] == [{"reference": f"Coverage/{w.restricted_plan}"}]
    with database.reading() as db:
        assert db.get(Booking, made["id"]).session_id == w.spare_session
    spare = body(client.get(f"/fhir/Slot/{w.spare_session}", headers=officer), 200)
    assert capacity_of(spare) == "1/10"
    shared = body(client.get(f"/fhir/Slot/{w.session}", headers=officer), 200)
    assert capacity_of(shared) == "2/10"


def test_the_walk_uses_every_search_parameter_include_and_revinclude():
    """If a search parameter is added, the leak walk must learn to use it."""
    w = World(Clinic("g", "d", "p", "p2", "s"), *(f"x{i}" for i in range(13)))
    probes = read_probes(w) + error_probes(w)
    used: dict[str, set[str]] = {}
    for probe in probes:
        kind = probe.path.split("/")[2]
        for name, value in probe.params:
            used.setdefault(kind, set()).add(name.partition(":")[0])
            if name in ("_include", "_revinclude"):
                used[kind].add(value)

    for kind in ("Patient", "Appointment", "Coverage", "Slot", "Schedule"):
        search = SEARCHES[kind]
        if kind in ("Patient", "Appointment", "Coverage"):
            assert set(search.params) <= used[kind], (kind, set(search.params) - used[kind])
        assert set(search.includes) <= used[kind], (kind, set(search.includes) - used[kind])
        assert set(search.revincludes) <= used[kind], (kind, search.revincludes.keys())
        for chain in search.chains:
            assert any(n.startswith(f"{chain}.") for n in used[kind]), (kind, chain)
    chained = {n.partition(".")[2] for k in ("Appointment", "Coverage") for n in used[k]}
    assert set(SEARCHES["Patient"].params) <= chained


def family_probes(w: World, booked: str, series: str) -> list[Probe]:
    """Every path that renders V's appointments booked on the family plan (subscriber R):
    `booked` (a single booking) and `series` (an occurrence of a series)."""
    V = w.visible
    mine = (w.visible_appointment, booked, series)
    return [
        *(get(f"/fhir/Appointment/{a}") for a in (booked, series)),
        *(get(f"/fhir/Appointment/{a}/_history") for a in (booked, series)),
        *(get(f"/fhir/Appointment/{a}/_history/1") for a in (booked, series)),
        get("/fhir/Appointment", ("patient", f"Patient/{V}"), expect_ids=mine),
        get("/fhir/Appointment", expect_ids=mine),
        get("/fhir/Appointment", ("_id", booked), ("_include", "Appointment:patient")),
        get("/fhir/Slot", ("_revinclude", "Appointment:slot")),
        get("/fhir/Coverage", ("patient", f"Patient/{V}")),
        get(f"/fhir/Patient/{V}"),
        get(f"/fhir/Patient/{V}/_history"),
        get("/fhir/Appointment", ("_id", booked), ("_include", "Appointment:patient")),
        post(
            "/fhir",
            _bundle(
                "batch",
                ("GET", f"Appointment/{booked}", None),
                ("GET", f"Appointment?patient=Patient/{V}", None),
                ("GET", f"Slot?_id={w.spare_session}&_revinclude=Appointment:slot", None),
            ),
            200,
        ),
    ]


@pytest.mark.slow
def test_a_visible_patients_booking_on_a_hidden_plan_keeps_the_plan_out_of_sight_and_stored(
    app, client, database
):
    """V's bookings on the family plan (its subscriber R restricted) show no trace of the
    plan to a caller without the permission, on every path and in every version, following
    R's restriction as it is now, both ways; with the permission the plan is there. An
    update by that caller keeps the link they cannot see (README, Security)."""
    w = build_world(app, client, database)
    officer = token(app, PRIVACY_OFFICER, "privacy-officer")
    staff = token(app, STAFF, "front-desk")
    other = database.write(
        lambda db: make_session(db, w.clinic, start=MONDAY + dt.timedelta(days=14)).id
    )
    family = [{"reference": f"Coverage/{w.family_plan}"}]
    booked = create(client, appointment(other, w.visible, supportingInformation=family), officer)[
        "id"
    ]
    on_family_plan = book_parameters([proposal(w, w.visible)], w.family_plan)
    made = body(send(client, "POST", "/fhir/Appointment/$book", on_family_plan, officer), 200)
    series = made["entry"][0]["resource"]["id"]
    # What an EHR sent and we keep as sent may name R too: V's link to R, V's plan's holder.
    v_patient = body(client.get(f"/fhir/Patient/{w.visible}", headers=officer), 200)
    related = {"other": {"reference": f"Patient/{w.restricted}"}, "type": "seealso"}
    body(send(client, "PUT", f"/fhir/Patient/{w.visible}", {**v_patient, "link": [related]},
              officer), 200)  # fmt: skip
    v_plan = body(client.get(f"/fhir/Coverage/{w.visible_plan}", headers=officer), 200)
    held = {**v_plan, "policyHolder": {"reference": f"Patient/{w.restricted}"}}
    body(send(client, "PUT", f"/fhir/Coverage/{w.visible_plan}", held, officer), 200)
    walk = Walk(app, client, Secrets.of(w))

    def seen(appointment_id: str, headers: dict[str, str]) -> dict[str, Any]:
        return body(client.get(f"/fhir/Appointment/{appointment_id}", headers=headers), 200)

    for probe in family_probes(w, booked, series):
        walk.check(probe)
    assert seen(booked, officer)["supportingInformation"] == family

    # An edit by staff: the plan they see replaces nothing they cannot see.
    edited = {**seen(booked, staff), "supportingInformation": [
        {"reference": f"Coverage/{w.visible_plan}"}]}  # fmt: skip
    answer = walk.check(put(f"/fhir/Appointment/{booked}", edited, 200))
    assert answer["supportingInformation"] == [{"reference": f"Coverage/{w.visible_plan}"}]
    assert seen(booked, officer)["supportingInformation"] == [
        *family,
        {"reference": f"Coverage/{w.visible_plan}"},
    ]
    # A cancel by staff, sending back what they see (no family plan): the link stays.
    cancelled = {**seen(series, staff), "status": "cancelled"}
    assert "supportingInformation" not in cancelled
    walk.check(put(f"/fhir/Appointment/{series}", cancelled, 200))
    kept = seen(series, officer)
    assert (kept["status"], kept["supportingInformation"]) == ("cancelled", family)
    # Staff update V and V's plan with what they see: the link and the holder stay.
    v_seen = body(client.get(f"/fhir/Patient/{w.visible}", headers=staff), 200)
    assert "link" not in v_seen
    walk.check(put(f"/fhir/Patient/{w.visible}", {**v_seen, "gender": "male"}, 200))
    plan_seen = body(client.get(f"/fhir/Coverage/{w.visible_plan}", headers=staff), 200)
    assert "policyHolder" not in plan_seen
    walk.check(put(f"/fhir/Coverage/{w.visible_plan}", {**plan_seen, "order": 3}, 200))
    v_kept = body(client.get(f"/fhir/Patient/{w.visible}", headers=officer), 200)
    assert (v_kept["gender"], v_kept["link"]) == ("male", [related])
    plan_kept = body(client.get(f"/fhir/Coverage/{w.visible_plan}", headers=officer), 200)
    assert (plan_kept["order"], plan_kept["policyHolder"]) == (3, held["policyHolder"])
    for probe in family_probes(w, booked, series):
        walk.check(probe)

    set_restriction(client, officer, w.restricted, restricted=False)
    assert seen(series, staff)["supportingInformation"] == family
    v_now = body(client.get(f"/fhir/Patient/{w.visible}", headers=staff), 200)
    assert v_now["link"] == [related]
    history = body(client.get(f"/fhir/Appointment/{booked}/_history", headers=staff), 200)
    assert [e["resource"].get("supportingInformation") for e in history["entry"]] == [
        [*family, {"reference": f"Coverage/{w.visible_plan}"}],
        family,
    ]
    set_restriction(client, officer, w.restricted, restricted=True)
    assert "supportingInformation" not in seen(series, staff)
