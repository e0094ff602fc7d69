"""OperationOutcome builders (R4 operationoutcome.html), for errors and for the
warnings and summaries that successful writes and operations carry."""

from __future__ import annotations

import re
from typing import Any

from mappings.codes import CANONICAL

#: Our detail codes (issue.details.coding), defined in the conformance package.
CS_OUTCOME = f"{CANONICAL}/CodeSystem/outcome"


def issue(
    severity: str,
    code: str,
    text: str,
    *,
    expression: str | None = None,
    detail: str | None = None,
) -> dict[str, Any]:
    entry: dict[str, Any] = {"severity": severity, "code": code}
    details: dict[str, Any] = {"text": _printable(text)}
    if detail:
        details["coding"] = [{"system": CS_OUTCOME, "code": detail}]
    entry["details"] = details
    if expression and _EXPRESSION.fullmatch(expression):
        entry["expression"] = [expression]
    return entry


#: What an `expression` we emit may look like: a FHIRPath or a parameter name. Anything
#: else came from the client (e.g. an unknown parameter name) and is left out.
_EXPRESSION = re.compile(r"[A-Za-z0-9_.:\-\[\]()$ ,']{1,200}")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _printable(text: str) -> str:
    """Escape control characters a client sent: FHIR strings may not hold them."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def operation_outcome(*issues: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "OperationOutcome", "issue": list(issues)}


def warning(text: str, detail: str, expression: str | None = None) -> dict[str, Any]:
    return issue("warning", "business-rule", text, expression=expression, detail=detail)


def information(text: str) -> dict[str, Any]:
    return issue("information", "informational", text)
