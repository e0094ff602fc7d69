"""Write the conformance package (FHIR NPM layout) from the code, so it cannot drift.

This folder is the `package/` folder of a FHIR NPM package: `package.json`,
`.index.json`, one JSON file per conformance resource, and `example/` (with its own
`.index.json`). Every file is generated here from the tables the server runs on:
the CapabilityStatement is `fhir_facade.capability.capability_statement`, the code
systems are `mappings.codes` tables, the examples are what `mappings` renders for
fixed records, and each URL is the constant the server emits. The builders of each
kind of artifact live in `artifacts/`: a sub-folder, which `-ig <folder>` does not read.

    python -m conformance.package.build           # rewrite the files
    python -m conformance.package.build --check   # exit 1 if a committed file is stale
"""

from __future__ import annotations

import html
import json
import sys
from pathlib import Path

from conformance.package.artifacts import extensions, operations, subscriptions, terminology
from conformance.package.artifacts.common import FHIR_VERSION, HERE, JSON, PACKAGE_NAME, PUBLISHER
from conformance.package.artifacts.examples import examples
from fhir_facade.capability import (
    RELEASE_DATE,
    SEARCH_PARAMETER_DEFINITIONS,
    SOFTWARE_VERSION,
    SUPPORTED_PROFILES,
    capability_statement,
)
from mappings.codes import (
    CANONICAL,
)

# -- the package ---------------------------------------------------------------------


def _narrative(resource: JSON) -> JSON:
    """The resource with a generated narrative (dom-6) from its title and description."""
    title = html.escape(resource.get("title") or resource["name"], quote=False)
    description = html.escape(resource["description"], quote=False)
    div = (
        f'<div xmlns="http://www.w3.org/1999/xhtml"><p><b>{title}</b></p><p>{description}</p></div>'
    )
    head = {k: resource[k] for k in ("resourceType", "id")}
    return {**head, "text": {"status": "generated", "div": div}, **resource}


def definitions() -> list[JSON]:
    """The conformance resources, in the package's root folder."""
    (profile,) = SUPPORTED_PROFILES["Slot"]
    (agent,) = SEARCH_PARAMETER_DEFINITIONS.values()
    return [
        capability_statement(CANONICAL),
        *map(_narrative, _described(profile, agent)),
        *subscriptions.topics(),
    ]


def _described(profile: str, agent: str) -> list[JSON]:
    return [
        *extensions.definitions(profile),
        *operations.definitions(),
        *subscriptions.operations(),
        *terminology.definitions(agent),
    ]


def filename(resource: JSON) -> str:
    return f"{resource['resourceType']}-{resource['id']}.json"


def index(resources: list[JSON]) -> JSON:
    """`.index.json` as FHIR packages carry it (index-version 1)."""
    files = []
    for resource in resources:
        entry: JSON = {
            "filename": filename(resource),
            "resourceType": resource["resourceType"],
            "id": resource["id"],
        }
        for key in ("url", "version", "kind", "type"):
            if isinstance(resource.get(key), str):
                entry[key] = resource[key]
        files.append(entry)
    return {"index-version": 1, "files": files}


def manifest() -> JSON:
    return {
        "name": PACKAGE_NAME,
        "version": SOFTWARE_VERSION,
        "tools-version": 3,
        "type": "fhir.ig",
        "date": RELEASE_DATE.replace("-", "") + "000000",
        "title": "fhir-facade conformance resources",
        "description": (
            "What the fhir-facade group-session scheduling server declares and emits: its "
            "CapabilityStatement, the group-capacity, closed-session, waitlist and series "
            "extensions, the "
            "group-session Slot profile, the $find, $book and $cancel-series operations, its "
            "code systems, and examples rendered by the server's own mappings."
        ),
        "author": PUBLISHER,
        "canonical": CANONICAL,
        "url": CANONICAL,
        "fhirVersions": [FHIR_VERSION],
        "dependencies": {"hl7.fhir.r4.core": FHIR_VERSION},
        "directories": {"example": "example"},
    }


def render(content: JSON) -> str:
    return json.dumps(content, indent=2, ensure_ascii=False) + "\n"


def files() -> dict[str, str]:
    """Every file of the package, by path relative to this folder."""
    out = {"package.json": render(manifest())}
    defined, shown = definitions(), examples()
    out[".index.json"] = render(index(defined))
    out.update({filename(r): render(r) for r in defined})
    out["example/.index.json"] = render(index(shown))
    out.update({f"example/{filename(r)}": render(r) for r in shown})
    return out


def stale(folder: Path = HERE) -> list[str]:
    """Files missing or different from what the code generates."""
    problems = []
    for path, text in files().items():
        target = folder / path
        if not target.is_file() or target.read_text(encoding="utf-8") != text:
            problems.append(path)
    return problems


def main(argv: list[str]) -> int:
    if "--check" in argv:
        problems = stale()
        for path in problems:
            print(f"stale: conformance/package/{path} (run python -m conformance.package.build)")
        return 1 if problems else 0
    for path, text in files().items():
        target = HERE / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
