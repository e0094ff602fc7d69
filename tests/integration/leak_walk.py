"""The leak walk's harness: a world with a restricted patient R, R's secrets with a
same-length stand-in for each, probes (one request each) and the walk that proves an
answer shows nothing of R (tests/integration/test_blocked_patients_leak.py)."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import parse_qsl, quote, quote_plus, urlencode, urlsplit

from flask.testing import FlaskClient
from sqlalchemy import select
from werkzeug.test import TestResponse

from mappings.timing import EXT_RECURRENCE_ID, EXT_SERIES_TIMING
from store.models import PatientIdentifier
from tests.factories import (
    MONDAY,
    Clinic,
    make_clinic,
    make_coverage,
    make_patient,
    make_session,
)
from tests.integration.helpers import appointment, fhir, ids
from tests.integration.privacy_helpers import (
    PRIVACY_OFFICER,
    RESTRICTED,
    SSN,
    STAFF,
    coverage_body,
    create,
    make_payer,
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
        stored = fhir(send(client, "POST", "/fhir/Appointment/$book",
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
    current = fhir(client.get(f"/fhir/Patient/{patient}", headers=officer), 200)
    current["meta"] = {"security": [RESTRICTED]} if restricted else {}
    fhir(send(client, "PUT", f"/fhir/Patient/{patient}", current, officer), 200)


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
        answer = fhir(response, probe.status)
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
            twin_answer = fhir(twin, probe.status)
            if undo is not None:
                undo(twin_answer)
            assert response.headers.get("Content-Length") == twin.headers.get("Content-Length"), (
                probe.name
            )
            ours = _normalized(self.secrets.substitute(_visible_text(response)))
            theirs = _normalized(_visible_text(twin))
            assert ours == theirs, (probe.name, ours, theirs)
        if probe.expect_ids is not None:
            assert sorted(ids(answer)) == sorted(probe.expect_ids), probe.name
            assert answer.get("total", len(probe.expect_ids)) == len(probe.expect_ids), probe.name
        self.walked.append(probe.name)
        return answer

    def follow_pages(self, probe: Probe) -> list[str]:
        """Walk `probe` and every `next` page; the ids matched on all pages."""
        page = self.check(probe)
        found = ids(page)
        while nexts := [link["url"] for link in page["link"] if link["relation"] == "next"]:
            url = urlsplit(nexts[0])
            params = tuple(parse_qsl(url.query))
            page = self.check(Probe("GET", url.path, params, note=" (next page)"))
            found += ids(page)
        return found


def _visible_text(response: TestResponse) -> str:
    headers = "\n".join(f"{k}: {v}" for k, v in response.headers if k != "Content-Length")
    return headers + "\n" + response.get_data(as_text=True)


def _normalized(text: str) -> str:
    text = re.sub(r"(?<![0-9a-f])[0-9a-f]{32}(?![0-9a-f])", "<new id>", text)
    text = re.sub(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", "<instant>", text)
    return re.sub(r"\w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d GMT", "<http date>", text)


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
