"""AuditEvent (FHIR R4 §6.4 AuditEvent) from the store's audit records."""

from __future__ import annotations

from mappings.codes import CANONICAL
from mappings.common import JSON, instant
from store.models import AuditRecord

CS_AUDIT_TYPE = "http://terminology.hl7.org/CodeSystem/audit-event-type"
CS_RESTFUL_INTERACTION = "http://hl7.org/fhir/restful-interaction"
AGENT_SYSTEM = f"{CANONICAL}/sid/token-subject"


def audit_event_to_fhir(audit: AuditRecord) -> JSON:
    resource: JSON = {
        "resourceType": "AuditEvent",
        "id": audit.id,
        "meta": {"versionId": "1", "lastUpdated": instant(audit.recorded)},
        "type": {"system": CS_AUDIT_TYPE, "code": "rest", "display": "RESTful Operation"},
        "subtype": [{"system": CS_RESTFUL_INTERACTION, "code": audit.subtype}],
        "action": audit.action,
        "recorded": instant(audit.recorded),
        "outcome": audit.outcome,
    }
    if audit.description:
        resource["outcomeDesc"] = audit.description
    resource["agent"] = [
        {"who": {"identifier": {"system": AGENT_SYSTEM, "value": audit.agent}}, "requestor": True}
    ]
    resource["source"] = {"observer": {"display": "fhir-facade"}}
    entities: list[JSON] = []
    if audit.entity_kind and audit.entity_id:
        entities.append({"what": {"reference": f"{audit.entity_kind}/{audit.entity_id}"}})
    if audit.patient_id and (audit.entity_kind, audit.entity_id) != ("Patient", audit.patient_id):
        entities.append({"what": {"reference": f"Patient/{audit.patient_id}"}})
    if entities:
        resource["entity"] = entities
    return resource


def patient_of(resource: JSON) -> str | None:
    """The patient whose data a resource is, if any (for auditing)."""
    kind = resource.get("resourceType")
    if kind == "Patient":
        return str(resource["id"])
    refs: list[str] = []
    if kind == "Appointment":
        refs = [p.get("actor", {}).get("reference", "") for p in resource.get("participant", [])]
    elif kind == "Coverage":
        refs = [resource.get("beneficiary", {}).get("reference", "")]
    for ref in refs:
        if ref.startswith("Patient/"):
            return ref.removeprefix("Patient/")
    return None
