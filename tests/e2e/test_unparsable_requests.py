"""Requests a real server (gunicorn) cannot or will not take whole still get an
OperationOutcome with the right status: gunicorn's own refusals (request line,
headers, raw non-ASCII) and the app's (URL length, streamed body over the limit)."""

from __future__ import annotations

import json
import socket

from tests.e2e.conftest import Server

MAX_BODY = 1_000_000  # FHIR_FACADE_MAX_BODY_BYTES's default


def _exchange(server: Server, raw: bytes) -> tuple[int, str, dict[str, object]]:
    """Send raw bytes; (status, Content-Type, parsed body) of the answer."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(raw)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers.get("Content-Type", ""), json.loads(body)


def _request(line: str | bytes, *headers: str, body: bytes = b"") -> bytes:
    start = line.encode() if isinstance(line, str) else line
    fields = "".join(f"{h}\r\n" for h in ("Host: localhost", "Connection: close", *headers))
    return start + b"\r\n" + fields.encode() + b"\r\n" + body


def _chunked(body: bytes, size: int = 65536) -> bytes:
    parts = [body[i : i + size] for i in range(0, len(body), size)]
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"


CASES = [
    (
        "request line over gunicorn's limit",
        _request("GET /fhir/metadata?x=" + "a" * 9000 + " HTTP/1.1"),
        414,
        "too-long",
    ),
    (
        "URL over the app's limit",
        _request("GET /fhir/metadata?x=" + "a" * 8100 + " HTTP/1.1"),
        414,
        "too-long",
    ),
    (
        "a header line over gunicorn's limit",
        _request("GET /fhir/metadata HTTP/1.1", "X-Big: " + "a" * 9000),
        431,
        "too-long",
    ),
    (
        "too many header fields",
        _request("GET /fhir/metadata HTTP/1.1", *(f"X-{i}: a" for i in range(120))),
        431,
        "too-long",
    ),
    ("raw UTF-8 in the path", _request("GET /fhir/Patient/é HTTP/1.1".encode()), 400, "invalid"),
    (
        "raw UTF-8 in the query",
        _request("GET /fhir/Patient?family=é HTTP/1.1".encode()),
        400,
        "invalid",
    ),
    ("a request line that is no HTTP", _request("GARBAGE"), 400, "invalid"),
    ("an unknown path", _request("GET /nowhere HTTP/1.1"), 404, "not-found"),
]


def test_requests_the_server_refuses_get_an_operation_outcome_with_their_status(
    server: Server, auth: dict[str, str]
) -> None:
    token = f"Authorization: {auth['Authorization']}"
    too_large = json.dumps({"resourceType": "Patient", "name": [{"family": "a" * MAX_BODY}]})
    with_token = [
        ("an unknown resource type", _request("GET /fhir/Encounter HTTP/1.1", token)),
        (
            "a chunked body over the limit",
            _request(
                "POST /fhir/Patient HTTP/1.1",
                token,
                "Content-Type: application/fhir+json",
                "Transfer-Encoding: chunked",
                body=_chunked(too_large.encode()),
            ),
        ),
    ]
    answers = {}
    for name, raw in [(name, raw) for name, raw, _, _ in CASES] + with_token:
        status, content_type, body = _exchange(server, raw)
        assert content_type == "application/fhir+json; charset=utf-8", (name, body)
        assert body["resourceType"] == "OperationOutcome", (name, body)
        answers[name] = (status, body["issue"][0]["code"])  # type: ignore[index]

    assert answers == {
        **{name: (status, code) for name, _, status, code in CASES},
        "an unknown resource type": (404, "not-supported"),
        "a chunked body over the limit": (413, "too-long"),  # not 400 "malformed JSON"
    }
