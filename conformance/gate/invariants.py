"""R4 invariants (FHIRPath constraints) evaluated with fhirpathpy, plus our own rules.

The instance is walked with the element types of the official StructureDefinitions
(`r4_definitions.json`, see build_definitions.py), so every node is checked against the
invariants of the element it fills (backbone ones such as `pat-1`) and of its data type
(`per-1` on every Period, `ext-1` on every Extension, ...). Each Bundle entry and each
Parameters resource is checked as a resource of its own (%resource / %rootResource).

fhirpathpy needs three corrections, each applied narrowly and said why in `_REWRITES`:
it compares dates and instants as strings, it has no `hasValue()`, and `ref-1`
needs the guard the HL7 validator applies.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import fhirpathpy
from fhirpathpy.engine.nodes import ResourceNode
from fhirpathpy.models import models

DEFINITIONS = Path(__file__).resolve().parent / "r4_definitions.json"
_MODEL = models["r4"]
_PRIMITIVE_TAIL = "abcdefghijklmnopqrstuvwxyz"


def _has_value(inputs: list[Any]) -> bool:
    """FHIRPath hasValue(): one primitive that carries a value (not only extensions)."""
    return len(inputs) == 1 and inputs[0] is not None and not isinstance(inputs[0], dict | list)


_OPTIONS = {"userInvocationTable": {"hasValue": {"fn": _has_value, "arity": {0: []}}}}

# Expressions as the official definitions state them, replaced for fhirpathpy. Keyed by
# invariant key AND the exact official text, so a changed definition is not rewritten.
_REWRITES: dict[tuple[str, str], str] = {
    # fhirpathpy compares two dateTime/instant strings as strings: "…T10:00:00+02:00" <=
    # "…T09:00:00Z" is false although it is the same instant minus an hour. Convert first.
    (
        "per-1",
        "start.hasValue().not() or end.hasValue().not() or (start <= end)",
    ): "start.hasValue().not() or end.hasValue().not() or (start.toDateTime() <= end.toDateTime())",
    # The HL7 validator only applies ref-1 to references that have a `reference`
    # (a Reference with only identifier/display is valid) and resolves '#id' within the
    # resource being validated; trace() is noise here.
    (
        "ref-1",
        "reference.startsWith('#').not() or (reference.substring(1).trace('url') in "
        "%rootResource.contained.id.trace('ids'))",
    ): "reference.exists().not() or reference.startsWith('#').not() or "
    "(reference.substring(1) in %rootResource.contained.id)",
}

# Invariants fhirpathpy cannot evaluate faithfully; each skipped with its reason.
_SKIPPED = {
    # Uses descendants().as(canonical|uri|url) and two-argument trace(); fhirpathpy
    # cannot type primitives by the FHIR model this way. It concerns contained
    # resources only, which we never emit; medplum evaluates it.
    "dom-3": "needs FHIR-typed as() over descendants(); medplum checks it",
}


@dataclass(frozen=True)
class Rule:
    key: str
    severity: str
    human: str
    expression: str


# Our own rules (DESIGN §4): a session is a real interval; an appointment never ends
# before it starts. Compared as instants, not strings.
OWN_RULES: dict[str, list[Rule]] = {
    "Slot": [
        Rule(
            "facade-slot-1",
            "error",
            "Slot start SHALL be before end",
            "start.toDateTime() < end.toDateTime()",
        )
    ],
    "Appointment": [
        Rule(
            "facade-appt-1",
            "error",
            "Appointment start SHALL NOT be after end",
            "start.exists().not() or end.exists().not() or "
            "(start.toDateTime() <= end.toDateTime())",
        )
    ],
}


@dataclass(frozen=True)
class Finding:
    severity: str  # error | warning
    path: str
    message: str


@cache
def _definitions() -> dict[str, Any]:
    types: dict[str, Any] = json.loads(DEFINITIONS.read_text(encoding="utf-8"))["types"]
    return types


@cache
def _compiled(expression: str) -> Callable[..., list[Any]]:
    return fhirpathpy.compile(expression, _MODEL, _OPTIONS)


def _rules(raw: list[dict[str, Any]]) -> list[Rule]:
    rules = []
    for c in raw:
        if c["key"] in _SKIPPED:
            continue
        expression = _REWRITES.get((c["key"], c["expression"]), c["expression"])
        rules.append(Rule(c["key"], c["severity"], c["human"], expression))
    return rules


class Checker:
    """Evaluates every applicable invariant; counts what it evaluated."""

    def __init__(self) -> None:
        self.evaluated = 0
        self.indeterminate = 0  # empty result (e.g. dates of different precision)
        self.keys_seen: set[str] = set()

    def check(self, resource: dict[str, Any]) -> list[Finding]:
        findings: list[Finding] = []
        self._resource(resource, resource.get("resourceType", "?"), None, findings)
        return findings

    # -- walking ---------------------------------------------------------------------

    def _resource(
        self,
        node: dict[str, Any],
        path: str,
        container: dict[str, Any] | None,
        findings: list[Finding],
    ) -> None:
        kind = node.get("resourceType")
        defs = _definitions()
        if not isinstance(kind, str) or kind not in defs:
            return  # unknown types are the structural validators' business
        root = container if container is not None else node
        env = {"resource": node, "rootResource": root}
        rules = _rules(defs[kind]["elements"].get(kind, {}).get("constraints", []))
        rules += OWN_RULES.get(kind, [])
        self._evaluate(node, kind, rules, env, path, findings)
        self._children(node, kind, kind, env, path, findings)

    def _children(
        self,
        node: dict[str, Any],
        sd: str,
        element: str,
        env: dict[str, Any],
        path: str,
        findings: list[Finding],
    ) -> None:
        elements = _definitions()[sd]["elements"]
        for name, value in node.items():
            if name == "resourceType":
                continue
            if name.startswith("_"):  # extensions on a primitive: an Element
                for item, where in _items(value, f"{path}.{name}"):
                    if isinstance(item, dict):
                        self._datatype(item, "Element", [], env, where, findings)
                continue
            found = _element(elements, f"{element}.{name}", name)
            if found is None:
                continue  # unknown element: reported by medplum / FHIR.js / fhirkit
            child_path, type_code = found
            definition = elements[child_path]
            if "ref" in definition:  # contentReference: same structure as another path
                child_path, definition = definition["ref"], elements[definition["ref"]]
                type_code = "BackboneElement"
            local = _rules(definition.get("constraints", []))
            for item, where in _items(value, f"{path}.{name}"):
                if not isinstance(item, dict):
                    continue  # primitives carry no invariant but ele-1
                if type_code == "Resource":
                    own_root = sd in ("Bundle", "Parameters")  # contained keeps its container
                    self._resource(item, where, None if own_root else env["rootResource"], findings)
                elif type_code in ("BackboneElement", "Element") and sd not in ("Element",):
                    self._evaluate(item, child_path, local, env, where, findings)
                    self._children(item, sd, child_path, env, where, findings)
                else:
                    self._datatype(item, type_code, local, env, where, findings)

    def _datatype(
        self,
        node: dict[str, Any],
        type_code: str,
        local: list[Rule],
        env: dict[str, Any],
        path: str,
        findings: list[Finding],
    ) -> None:
        defs = _definitions()
        if type_code not in defs:
            return
        own = _rules(defs[type_code]["elements"].get(type_code, {}).get("constraints", []))
        keys = {r.key for r in own}
        rules = own + [r for r in local if r.key not in keys]
        self._evaluate(node, type_code, rules, env, path, findings)
        self._children(node, type_code, type_code, env, path, findings)

    # -- evaluating ------------------------------------------------------------------

    def _evaluate(
        self,
        node: dict[str, Any],
        model_path: str,
        rules: list[Rule],
        env: dict[str, Any],
        path: str,
        findings: list[Finding],
    ) -> None:
        """`model_path` (e.g. "Extension", "Appointment.participant") tells fhirpathpy the
        node's type, so choice elements such as `value` resolve to `valueInteger`."""
        for rule in rules:
            self.evaluated += 1
            self.keys_seen.add(rule.key)
            # fhirpathpy annotates what it walks: give it copies.
            context = {k: copy.deepcopy(v) for k, v in env.items()}
            try:
                typed = ResourceNode.create_node(copy.deepcopy(node), model_path)  # type: ignore[no-untyped-call]
                result = _compiled(rule.expression)(typed, context)
            except Exception as exc:  # a defect of the checker, not of the resource
                findings.append(
                    Finding(
                        "error",
                        path,
                        f"{rule.key}: could not evaluate "
                        f"{rule.expression!r}: {type(exc).__name__}: {exc}",
                    )
                )
                continue
            if result == []:
                self.indeterminate += 1
                continue
            if result != [True]:
                findings.append(
                    Finding(
                        "error" if rule.severity == "error" else "warning",
                        path,
                        f"{rule.key}: {rule.human} [{rule.expression}] -> {result!r}",
                    )
                )


def _items(value: Any, path: str) -> Iterator[tuple[Any, str]]:
    if isinstance(value, list):
        for index, item in enumerate(value):
            yield item, f"{path}[{index}]"
    else:
        yield value, path


def _element(elements: dict[str, Any], wanted: str, name: str) -> tuple[str, str] | None:
    """(element path, type code) for a JSON property, resolving choice types value[x]."""
    definition = elements.get(wanted)
    if definition is not None:
        types = definition.get("types") or ["BackboneElement"]
        return wanted, types[0]
    parent = wanted.rsplit(".", 1)[0]
    for index in range(1, len(name)):
        if not name[index].isupper():
            continue
        choice = f"{parent}.{name[:index]}[x]"
        definition = elements.get(choice)
        if definition is None:
            continue
        suffix = name[index:]
        for type_code in definition.get("types", []):
            if type_code[:1].upper() + type_code[1:] == suffix:
                return choice, type_code
    return None
