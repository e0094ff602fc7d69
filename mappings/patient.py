"""Patient (FHIR R4 §8.1 Patient). Restricted patients carry the v3-Confidentiality R label."""

from __future__ import annotations

from mappings.codes import CS_IDENTIFIER_TYPE, RESTRICTED_LABEL, SYSTEM_MRN
from mappings.common import JSON, meta
from store.models import Patient


def patient_to_fhir(patient: Patient) -> JSON:
    resource_meta = meta(patient.version, patient.last_updated)
    if patient.restricted:
        resource_meta["security"] = [RESTRICTED_LABEL.as_fhir()]
    resource: JSON = {"resourceType": "Patient", "id": patient.id, "meta": resource_meta}
    identifiers: list[JSON] = []
    for ident in patient.identifiers:
        entry: JSON = {"system": ident.system, "value": ident.value}
        if ident.system == SYSTEM_MRN:
            entry = {
                "type": {
                    "coding": [
                        {
                            "system": CS_IDENTIFIER_TYPE,
                            "code": "MR",
                            "display": "Medical record number",
                        }
                    ]
                },
                **entry,
            }
        identifiers.append(entry)
    if identifiers:
        resource["identifier"] = identifiers
    resource["active"] = True
    name: JSON = {"family": patient.family}
    if patient.given:
        name["given"] = patient.given.split()
    resource["name"] = [name]
    if patient.phone:
        resource["telecom"] = [{"system": "phone", "value": patient.phone, "use": "mobile"}]
    if patient.gender:
        resource["gender"] = patient.gender
    if patient.birth_date:
        resource["birthDate"] = patient.birth_date.isoformat()
    return resource
