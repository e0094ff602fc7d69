"""A real HTTP endpoint that receives FHIR Subscription notifications (rest-hook)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Receiver:
    """What arrived, in arrival order; `failing` > 0 answers that many requests with 503."""

    url: str = ""
    notifications: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    failing: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [n for n in self.notifications if notification_type(n) == kind]

    def events(self) -> dict[int, dict[str, Any]]:
        """Every event received, by number, duplicates dropped (what a receiver keeps)."""
        kept: dict[int, dict[str, Any]] = {}
        for bundle in self.of_type("event-notification"):
            for number, event in events_in(bundle).items():
                kept.setdefault(number, event)
        return kept


def status_of(bundle: dict[str, Any]) -> dict[str, Any]:
    """The SubscriptionStatus parameters of a notification, by name (events as a list)."""
    parameters = bundle["entry"][0]["resource"]["parameter"]
    found: dict[str, Any] = {"notification-event": []}
    for parameter in parameters:
        if parameter["name"] == "notification-event":
            found["notification-event"].append({p["name"]: p for p in parameter["part"]})
        else:
            found[parameter["name"]] = next(
                v for k, v in parameter.items() if k.startswith("value")
            )
    return found


def notification_type(bundle: dict[str, Any]) -> str:
    return str(status_of(bundle)["type"])


def events_in(bundle: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """event number -> {"focus": "Appointment/x" or None, "resource": its entry's or None}.
    Entries follow the events with a focus in order (one record may appear twice)."""
    entries = list(bundle["entry"][1:])
    found = {}
    for event in status_of(bundle)["notification-event"]:
        focus = event.get("focus", {}).get("valueReference", {}).get("reference")
        resource = None
        if focus:
            entry = entries.pop(0)
            assert entry["fullUrl"].endswith("/" + focus), (entry["fullUrl"], focus)
            resource = entry.get("resource")
        found[int(event["event-number"]["valueString"])] = {"focus": focus, "resource": resource}
    return found


@contextmanager
def receiving() -> Iterator[Receiver]:
    receiver = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            with receiver.lock:
                if receiver.failing > 0:
                    receiver.failing -= 1
                    status = 503
                else:
                    receiver.notifications.append(json.loads(body))
                    receiver.headers.append(dict(self.headers.items()))
                    status = 200
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/notify"
    # Polls for shutdown every 10 ms: the default 0.5 s was waited out by every teardown.
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
