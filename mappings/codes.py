"""Code systems, extension URLs and the code tables shared by the mappings."""

from __future__ import annotations

from typing import Any, NamedTuple

from mappings.errors import InvalidResource, Unprocessable

CANONICAL = "http://fhir-facade.org/fhir"

EXT_GROUP_CAPACITY = f"{CANONICAL}/StructureDefinition/group-capacity"
EXT_CLOSED_SESSION = f"{CANONICAL}/StructureDefinition/closed-session"
EXT_SLOT_CAPACITY_SMART = "http://fhir-registry.smarthealthit.org/StructureDefinition/slot-capacity"
EXT_TIMEZONE = "http://hl7.org/fhir/StructureDefinition/timezone"

CS_APPOINTMENT_TYPE_LOCAL = f"{CANONICAL}/CodeSystem/group-appointment-type"
CS_V2_0276 = "http://terminology.hl7.org/CodeSystem/v2-0276"
CS_SERVICE_TYPE_LOCAL = f"{CANONICAL}/CodeSystem/group-service-type"
CS_CONFIDENTIALITY = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
CS_IDENTIFIER_TYPE = "http://terminology.hl7.org/CodeSystem/v2-0203"
CS_ORGANIZATION_TYPE = "http://terminology.hl7.org/CodeSystem/organization-type"

SYSTEM_MRN = f"{CANONICAL}/sid/mrn"


class Coding(NamedTuple):
    system: str
    code: str
    display: str

    def as_fhir(self) -> dict[str, str]:
        return {"system": self.system, "code": self.code, "display": self.display}


def _table(*codings: Coding) -> dict[str, Coding]:
    return {c.code: c for c in codings}


#: Internal appointment-type code -> coding. Our group types, plus HL7 v2 table 0276
#: (the preferred binding of Slot/Appointment.appointmentType in R4).
APPOINTMENT_TYPES: dict[str, Coding] = _table(
    Coding(CS_APPOINTMENT_TYPE_LOCAL, "group-therapy", "Group therapy session"),
    Coding(CS_APPOINTMENT_TYPE_LOCAL, "dbt-skills", "DBT skills group"),
    Coding(CS_APPOINTMENT_TYPE_LOCAL, "substance-use-recovery", "Substance use recovery group"),
    Coding(CS_APPOINTMENT_TYPE_LOCAL, "anxiety-cbt", "CBT for anxiety group"),
    Coding(CS_APPOINTMENT_TYPE_LOCAL, "grief-support", "Grief support group"),
    Coding(CS_V2_0276, "CHECKUP", "A routine check-up, such as an annual physical"),
    Coding(CS_V2_0276, "EMERGENCY", "Emergency appointment"),
    Coding(CS_V2_0276, "FOLLOWUP", "A follow up visit from a previous appointment"),
    Coding(CS_V2_0276, "ROUTINE", "Routine appointment - default if not valued"),
    Coding(CS_V2_0276, "WALKIN", "A previously unscheduled walk-in visit"),
)

SERVICE_TYPES: dict[str, Coding] = _table(
    Coding(CS_SERVICE_TYPE_LOCAL, "behavioral-health-group", "Behavioral health group session"),
    Coding(CS_SERVICE_TYPE_LOCAL, "psychoeducation-group", "Psychoeducation group"),
)

RESTRICTED_LABEL = Coding(CS_CONFIDENTIALITY, "R", "restricted")


def lookup(table: dict[str, Coding], system: str | None, code: str) -> str | None:
    """Internal code for (system, code), or None when the table does not know it."""
    coding = table.get(code)
    if coding is None or (system and system != coding.system):
        return None
    return coding.code


def concept_code(concept: Any, table: dict[str, Coding], expression: str) -> str | None:
    """Internal code of an input CodeableConcept; the first coding the table knows wins."""
    if concept is None:
        return None
    for coding in concept.coding or []:
        if coding.code and (code := lookup(table, coding.system, coding.code)):
            return code
    known = ", ".join(f"{c.system}|{c.code}" for c in table.values())
    raise Unprocessable(f"unknown code; known codes: {known}", expression=expression)


#: Codes of the required bindings of the elements we keep as sent (R4 value sets).
GENDERS = ("male", "female", "other", "unknown")
IDENTIFIER_USES = ("usual", "official", "temp", "secondary", "old")
REQUIRED_CODES: dict[str, tuple[str, ...]] = {
    "gender": GENDERS,
    "telecom.system": ("phone", "fax", "email", "pager", "url", "sms", "other"),
    "telecom.use": ("home", "work", "temp", "old", "mobile"),
    "name.use": ("usual", "official", "temp", "nickname", "anonymous", "old", "maiden"),
    "address.use": ("home", "work", "temp", "old", "billing"),
    "address.type": ("postal", "physical", "both"),
    "identifier.use": IDENTIFIER_USES,
    "contact.gender": GENDERS,
    "link.type": ("replaced-by", "replaces", "refer", "seealso"),
}


def check_required_codes(
    resource: dict[str, Any],
    resource_type: str,
    required: dict[str, tuple[str, ...]] = REQUIRED_CODES,
) -> None:
    """Refuse a code outside its required value set (the models check only its form)."""
    for path, allowed in required.items():
        head, _, leaf = path.rpartition(".")
        items = [resource] if not head else resource.get(head) or []
        for index, item in enumerate(items if isinstance(items, list) else [items]):
            code = item.get(leaf) if isinstance(item, dict) else None
            if code is not None and code not in allowed:
                where = (
                    f"{resource_type}.{head}[{index}].{leaf}" if head else f"{resource_type}.{leaf}"
                )
                raise InvalidResource(
                    f"{where}: {code!r} is not one of {', '.join(allowed)}", expression=where
                )
