"""What every resource of the conformance package shares: the canonical metadata."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fhir_facade.capability import (
    RELEASE_DATE,
    SOFTWARE_VERSION,
)

HERE = Path(__file__).resolve().parent.parent  # the package folder itself
PACKAGE_NAME = "fhir-facade.conformance"
PUBLISHER = "fhir-facade"
FHIR_VERSION = "4.0.1"
BASE = "http://hl7.org/fhir/StructureDefinition"
JSON = dict[str, Any]


# -- common --------------------------------------------------------------------------


def canonical(resource_type: str, ident: str, url: str, name: str, title: str) -> JSON:
    """The metadata every canonical resource of this package starts with."""
    return {
        "resourceType": resource_type,
        "id": ident,
        "url": url,
        "version": SOFTWARE_VERSION,
        "name": name,
        "title": title,
        "status": "active",
        "experimental": False,
        "date": RELEASE_DATE,
        "publisher": PUBLISHER,
    }


def tail(url: str) -> str:
    return url.rsplit("/", 1)[1]
