"""The validator gate: a real server on a fresh SQLite with the demo clinic, walked whole
(metadata, every search parameter, include, operation, write and error case), every
response body run through medplum, FHIR.js, fhirkit and the R4 invariants. Zero errors.

Skipped only when conformance/gate/node_modules is missing and
FHIR_FACADE_REQUIRE_CONFORMANCE is not 1 (CI sets it: there a skip is a failure).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from conformance.gate.__main__ import run_gate


@pytest.mark.slow
@pytest.mark.usefixtures("node_validators")
def test_every_response_of_the_demo_server_passes_every_validator(tmp_path: Path) -> None:
    report = run_gate(None, None, None, tmp_path / "responses")

    assert report.files > 100, report.render()
    assert report.resources["Subscription"] >= 3, "the walk reaches Subscription"
    assert report.resources["Parameters"] >= 3, "and $status, $events' SubscriptionStatus"
    for validator in ("medplum", "fhirjs", "fhirkit", "invariants"):
        assert report.validated[validator] == sum(report.resources.values()), validator
    if report.errors:
        pytest.fail(report.render(list_warnings=False), pytrace=False)
