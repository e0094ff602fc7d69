"""Node validators: skipped when missing, unless FHIR_FACADE_REQUIRE_CONFORMANCE=1 (CI)."""

from __future__ import annotations

import os

import pytest

from conformance.gate.validators import node_available

REQUIRE = os.environ.get("FHIR_FACADE_REQUIRE_CONFORMANCE") == "1"


@pytest.fixture
def node_validators() -> None:
    if node_available():
        return
    message = (
        "validator gate needs node and conformance/gate/node_modules "
        "(run `make install`, which runs `npm ci` there)"
    )
    if REQUIRE:
        pytest.fail(f"FHIR_FACADE_REQUIRE_CONFORMANCE=1 but {message}")
    pytest.skip(message)
