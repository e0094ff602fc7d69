"""The delivery worker: sends each subscription's notifications to its rest-hook endpoint.

Per subscription, in this order: the handshake (a new or re-enabled subscription is
`requested` until its endpoint acknowledges one; then `active`), then every event not
yet acknowledged, one notification per event, in event-number order, then a heartbeat
when nothing was sent for the heartbeat period. An endpoint answering anything but 2xx
(or not answering within the subscription's timeout) puts the subscription in `error`,
with the reason, and it is retried after a backoff that doubles per failure; after
`max_failures` in a row it is turned `off`. The worker records each acknowledgement
after it: a crash in between sends that event again, which the receiver recognises
by its number (at least once; exactly once after deduplication).

Run it with `fhir-facade worker`; several workers may share a database (a subscription
is held by one at a time).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from ipaddress import ip_address
from typing import Any

import orjson

from fhir_facade.config import Settings
from fhir_facade.notify.render import rendered
from mappings.subscription import endpoint_origin, notification_bundle
from store import outbox
from store.db import Database
from store.models import Subscription, utcnow

log = logging.getLogger("fhir_facade.notify")

#: How long a worker holds a subscription beyond the send it is about to make (renewed
#: before each): a crashed worker's subscriptions wait this long for another.
LEASE = dt.timedelta(seconds=5)
#: Notifications sent to one subscription per round before others get their turn.
PER_ROUND = 50


@dataclass(frozen=True)
class DeliverySettings:
    retry: dt.timedelta = dt.timedelta(seconds=5)
    max_failures: int = 6
    http_loopback: bool = False  # plain http allowed to loopback hosts (demo and tests)


def delivery_settings(settings: Settings) -> DeliverySettings:
    return DeliverySettings(
        retry=dt.timedelta(seconds=settings.notify_retry_s),
        max_failures=settings.notify_max_failures,
        http_loopback=settings.subscription_http_loopback,
    )


class Undeliverable(Exception):
    """The endpoint did not acknowledge a notification (the reason is the message)."""


Send = Callable[[str, bytes, dict[str, str], float], None]


def post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> None:
    """POST a notification; anything but a 2xx answer is Undeliverable. Redirects are
    not followed: a notification goes to the endpoint the subscriber named."""
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(request, timeout=timeout) as response:
            response.read()
    except urllib.error.HTTPError as exc:
        raise Undeliverable(f"the endpoint answered {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise Undeliverable(f"the endpoint could not be reached: {reason}") from None


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def allowed_endpoint(url: str, http_loopback: bool) -> str | None:
    """Why notifications may not go to `url` (None: they may): https only, plain http
    only to a loopback host and only when allowed (demo and tests)."""
    scheme, host, port = endpoint_origin(url)
    if not host or port is None:
        return "the endpoint must be an absolute https URL"
    if scheme == "https":
        return None
    if scheme == "http" and http_loopback and _loopback(host):
        return None
    if scheme == "http" and http_loopback:
        return "plain http endpoints must be on this machine (localhost, 127.0.0.1, ::1)"
    return "the endpoint must be an https URL"


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False


class Deliverer:
    """One delivery worker over `database`."""

    def __init__(self, database: Database, settings: DeliverySettings, send: Send = post) -> None:
        self.database = database
        self.settings = settings
        self.send = send

    def run_once(self, now: dt.datetime | None = None) -> int:
        """One round over the subscriptions due; the number of notifications sent."""
        moment = now or utcnow()
        with self.database.reading() as db:
            due = outbox.due(db, moment)
        count = 0
        for ident in due:
            take = partial(outbox.take, subscription_id=ident, now=moment, lease=LEASE)
            held = self.database.write(take)
            if held is not None:
                count += self._serve(ident, held)
        return count

    def run(self, stop: threading.Event, poll: float = 0.5) -> None:
        """Deliver until `stop` is set, a round every `poll` seconds (sooner while busy)."""
        while not stop.is_set():
            try:
                busy = self.run_once() > 0
            except Exception:  # a database outage must not end the worker
                log.exception("delivery round failed")
                busy = False
            if not busy:
                stop.wait(poll)

    def _serve(self, ident: str, held: dt.datetime) -> int:
        """Send what the subscription is owed, renewing the lease before each send."""
        sent = 0
        try:
            while sent < PER_ROUND:
                now = utcnow()
                with self.database.reading() as db:
                    subscription = db.get(Subscription, ident)
                    if subscription is None or subscription.status not in outbox.LISTENING:
                        return sent
                    kind, through, body = self._next(db, subscription, now)
                if body is None:
                    return sent
                until = now + LEASE + dt.timedelta(seconds=subscription.timeout_s)
                renew = partial(outbox.renew, subscription_id=ident, held=held, until=until)
                renewed = self.database.write(renew)
                if renewed is None:
                    return sent  # the lease ran out: another worker carries on
                held = renewed
                try:
                    self._send(subscription, body)
                except Undeliverable as exc:
                    failure = partial(
                        outbox.failed,
                        subscription_id=ident,
                        reason=str(exc),
                        now=utcnow(),
                        backoff=self.settings.retry,
                        give_up_after=self.settings.max_failures,
                    )
                    self.database.write(failure)
                    return sent
                success = partial(
                    outbox.sent,
                    subscription_id=ident,
                    through=through,
                    handshake=kind == "handshake",
                    now=utcnow(),
                )
                self.database.write(success)
                sent += 1
            return sent
        finally:
            self.database.write(partial(outbox.release, subscription_id=ident, held=held))

    def _next(
        self, db: Any, subscription: Subscription, now: dt.datetime
    ) -> tuple[str, int | None, bytes | None]:
        """What to send next: (notification type, last event number in it, body)."""
        base = subscription.server_base
        if not subscription.handshake_done:
            return (
                "handshake",
                None,
                _body(notification_bundle(subscription, base, "handshake", now=now)),
            )
        if subscription.delivered < subscription.events:
            rows = outbox.events(
                db, subscription.id, subscription.delivered + 1, subscription.events, 1
            )
            if rows:
                events = rendered(db, subscription, rows, subscription.content)
                bundle = notification_bundle(
                    subscription, base, "event-notification", events, now=now
                )
                return "event-notification", events[-1].number, _body(bundle)
        due = subscription.heartbeat_due
        if subscription.status == "active" and due is not None and due <= now:
            bundle = notification_bundle(subscription, base, "heartbeat", now=now)
            return "heartbeat", None, _body(bundle)
        return "", None, None

    def _send(self, subscription: Subscription, body: bytes) -> None:
        refusal = allowed_endpoint(subscription.endpoint, self.settings.http_loopback)
        if refusal is not None:
            raise Undeliverable(refusal)
        headers = {"Content-Type": "application/fhir+json"}
        for line in orjson.loads(subscription.document).get("channel", {}).get("header", []):
            name, _, value = str(line).partition(":")
            if name.strip() and value.strip():
                headers[name.strip()] = value.strip()
        self.send(subscription.endpoint, body, headers, float(subscription.timeout_s))


def _body(bundle: dict[str, Any]) -> bytes:
    return orjson.dumps(bundle)
