"""Patient (FHIR R4 §8.1 Patient).

What an EHR registers is kept as sent (minus the SSN in clear), so a read returns
it whole; identifiers always come from the store: the MRN typed MR, the SSN masked.
Restricted patients carry the v3-Confidentiality R security label.
"""

from __future__ import annotations

from typing import Any

import orjson

from mappings.codes import (
    CS_CONFIDENTIALITY,
    CS_IDENTIFIER_TYPE,
    RESTRICTED_LABEL,
    SYSTEM_MRN,
    check_required_codes,
)
from mappings.common import JSON, client_elements, meta, parse_resource
from mappings.errors import Unprocessable
from mappings.references import NamesNoRecord
from store.models import Patient
from store.patients import PatientSpec
from store.search import PatientRow
from store.ssn import SSN_SYSTEM, mask

_MR_TYPE = {
    "coding": [{"system": CS_IDENTIFIER_TYPE, "code": "MR", "display": "Medical record number"}]
}
_SS_TYPE = {
    "coding": [{"system": CS_IDENTIFIER_TYPE, "code": "SS", "display": "Social Security number"}]
}


def patient_to_fhir(patient: Patient | PatientRow) -> JSON:
    """The Patient from its record, or from the plain row a search page reads."""
    resource_meta = meta(patient.version, patient.last_updated)
    if patient.restricted:
        resource_meta["security"] = [RESTRICTED_LABEL.as_fhir()]
    if patient.document:  # as sent: it may name other records (Patient.link, extensions)
        kept: JSON = {"resourceType": "Patient", "id": patient.id, "meta": resource_meta}
        kept.update(orjson.loads(patient.document))
        return kept
    resource = NamesNoRecord(resourceType="Patient", id=patient.id, meta=resource_meta)
    identifiers = [_identifier(i.system, i.value, i.last4) for i in patient.identifiers]
    if identifiers:
        resource["identifier"] = identifiers
    resource["active"] = True
    name: JSON = {"family": patient.family}
    if patient.given:
        name["given"] = patient.given.split()
    resource["name"] = [name]
    if patient.phones:
        resource["telecom"] = [
            {"system": "phone", "value": p.value, **({"use": p.use} if p.use else {})}
            for p in patient.phones
        ]
    if patient.gender:
        resource["gender"] = patient.gender
    if patient.birth_date:
        resource["birthDate"] = patient.birth_date.isoformat()
    return resource


def _identifier(system: str, value: str, last4: str | None) -> JSON:
    if system == SSN_SYSTEM:
        return {"type": _SS_TYPE, "system": system, "value": mask(last4)}
    if system == SYSTEM_MRN:
        return {"type": _MR_TYPE, "system": system, "value": value}
    return {"system": system, "value": value}


def _without_clear_ssn(identifier: JSON) -> JSON:
    if identifier.get("system") != SSN_SYSTEM:
        return identifier
    digits = "".join(c for c in str(identifier.get("value", "")) if c.isdigit())
    return {**identifier, "value": mask(digits[-4:] if len(digits) >= 4 else None)}


def patient_from_fhir(body: Any) -> PatientSpec:
    """Read a registration. The first official (else first) name is indexed for search;
    the SSN goes to the store to be hashed and is removed from the kept document."""
    patient: Any = parse_resource(body, "Patient")
    check_required_codes(body, "Patient")
    if not patient.name:
        raise Unprocessable("a patient needs a name", expression="Patient.name")
    name = next((n for n in patient.name if n.use == "official"), patient.name[0])
    if not name.family:
        raise Unprocessable("a patient needs a family name", expression="Patient.name.family")
    identifiers = []
    for index, ident in enumerate(patient.identifier or []):
        if not ident.system or not ident.value:
            raise Unprocessable(
                "identifiers need a system and a value", expression=f"Patient.identifier[{index}]"
            )
        identifiers.append((ident.system, ident.value))
    phones = tuple(
        (t.value, t.use) for t in (patient.telecom or []) if t.system == "phone" and t.value
    )
    labels = {(c.system, c.code) for c in ((patient.meta.security or []) if patient.meta else [])}
    document = client_elements(body)
    if "identifier" in document:
        document["identifier"] = [_without_clear_ssn(i) for i in document["identifier"]]
    return PatientSpec(
        family=name.family,
        given=" ".join(name.given or []),
        birth_date=patient.birthDate,
        gender=patient.gender,
        phones=phones,
        identifiers=tuple(identifiers),
        restricted=(CS_CONFIDENTIALITY, "R") in labels or (CS_CONFIDENTIALITY, "V") in labels,
        document=orjson.dumps(document).decode(),
    )
