"""The validator gate, as one command.

    python -m conformance.gate                                  # own server, demo data
    python -m conformance.gate --base-url https://host/fhir --token "$TOKEN" \\
        [--limited-token "$READ_ONLY_TOKEN"] [--out DIR]

Walks the server (walk.py), saves every response body under --out, runs every
validator over them (validators.py), prints the report, exits 1 on any error.
Against your own server, TOKEN needs create/read/update/search on the declared types
(and the permissions to create sessions); LIMITED_TOKEN, if given, is one without
Slot create and Coverage read, for the 403 cases. The walk writes test data.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from conformance.gate.server import FULL_SCOPE, LIMITED_SCOPE, local_server
from conformance.gate.validators import Report, node_available, validate
from conformance.gate.walk import Walk


def run_gate(
    base_url: str | None,
    token: str | None,
    limited_token: str | None,
    out: Path,
    *,
    require_node: bool = True,
) -> Report:
    use_node = node_available()
    if require_node and not use_node:
        raise SystemExit(
            "node or conformance/gate/node_modules missing: run "
            "`npm ci --prefix conformance/gate` (or `make install`)"
        )
    server = None
    try:
        if base_url is None:
            server = local_server(out.parent / f"{out.name}-server")
            server.start()
            base_url = server.base
            token = server.token(FULL_SCOPE)
            limited_token = server.token(LIMITED_SCOPE)
        if not token:
            raise SystemExit("--token is required with --base-url")
        Walk(base_url, out, token, limited_token).run()
    finally:
        if server is not None:
            server.stop()
    return validate(out, use_node=use_node)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m conformance.gate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--base-url",
        help="FHIR base, e.g. http://127.0.0.1:8080/fhir; "
        "without it a fresh local server with demo data is started",
    )
    parser.add_argument("--token", help="bearer token with full access")
    parser.add_argument("--limited-token", help="bearer token lacking some scopes (403 cases)")
    parser.add_argument("--out", type=Path, help="where the response bodies go")
    parser.add_argument(
        "--no-node",
        action="store_true",
        help="skip medplum and FHIR.js (only when node is unavailable)",
    )
    args = parser.parse_args(argv)
    out = args.out or Path(tempfile.mkdtemp(prefix="fhir-gate-")) / "responses"
    out.mkdir(parents=True, exist_ok=True)
    report = run_gate(
        args.base_url or None,
        args.token or None,
        args.limited_token or None,
        out,
        require_node=not args.no_node,
    )
    print(report.render())
    print(f"response bodies saved in {out}")
    return 1 if report.errors else 0


if __name__ == "__main__":
    sys.exit(main())
