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

Endpoints (`endpoint_refusal`): https only (plain http to loopback where the setting
allows it, for the demo and tests), never this server itself, and never a host that
resolves to a loopback, private, link-local or otherwise internal address unless the
host is named in FHIR_FACADE_SUBSCRIPTION_ALLOWED_HOSTS. Checked when a subscription is
created or changed, and again before every send, after resolving the name: the
notification then goes to the very address that passed (no second lookup to rebind).

The worker reads and writes through `store.scope.Store`: its own bookkeeping as the
server (the least access), each event through a Store opened with the subscriber's
access (`render`). A subscription whose end has come, or whose API client is no longer
registered, is turned off with the reason.

Run it with `fhir-facade worker`; several workers may share a database (a subscription
is held by one at a time).
"""

from __future__ import annotations

import datetime as dt
import http.client
import logging
import socket
import ssl
import threading
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from functools import partial
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Any, TypeVar
from urllib.parse import urlsplit

import orjson

from fhir_facade.config import Settings
from fhir_facade.notify.events import why_not_listening
from fhir_facade.notify.render import rendered
from mappings.subscription import endpoint_origin, notification_bundle
from store.access import Access
from store.db import Database
from store.models import Subscription, utcnow
from store.outbox import LISTENING
from store.scope import Store

log = logging.getLogger("fhir_facade.notify")
T = TypeVar("T")

#: How long a worker holds a subscription beyond the send it is about to make (renewed
#: before each): a crashed worker's subscriptions wait this long for another.
LEASE = dt.timedelta(seconds=5)
#: Notifications sent to one subscription per round before others get their turn.
PER_ROUND = 50
#: The worker's own view, for its bookkeeping on subscription rows (no permission;
#: it reads no patient data with it: events are read as each subscriber may see them
#: now, through a Store opened with that subscriber's access, in render).
WORKER = Access()
ALLOWED_HOSTS_SETTING = "FHIR_FACADE_SUBSCRIPTION_ALLOWED_HOSTS"


@dataclass(frozen=True)
class EndpointPolicy:
    """Where notifications may go. `http_loopback`: plain http (and https) to loopback
    hosts (demo and tests); `allowed_hosts`: host names or addresses allowed although
    internal; `own`: this server's origins (scheme, host, port)."""

    http_loopback: bool = False
    allowed_hosts: frozenset[str] = frozenset()
    own: frozenset[tuple[str, str, int | None]] = frozenset()

    def serving(self, *bases: str) -> EndpointPolicy:
        """The policy, knowing this server by the base URLs it answers at."""
        return EndpointPolicy(
            self.http_loopback, self.allowed_hosts, self.own | {endpoint_origin(b) for b in bases}
        )


def allowed_hosts(setting: str | None) -> frozenset[str]:
    """FHIR_FACADE_SUBSCRIPTION_ALLOWED_HOSTS: comma-separated host names or addresses."""
    return frozenset(h.strip().lower().strip("[]") for h in (setting or "").split(",") if h.strip())


@dataclass(frozen=True)
class DeliverySettings:
    retry: dt.timedelta = dt.timedelta(seconds=5)
    max_failures: int = 6
    http_loopback: bool = False  # plain http allowed to loopback hosts (demo and tests)
    allowed_hosts: frozenset[str] = field(default_factory=frozenset)

    @property
    def policy(self) -> EndpointPolicy:
        return EndpointPolicy(self.http_loopback, self.allowed_hosts)


def delivery_settings(settings: Settings) -> DeliverySettings:
    return DeliverySettings(
        retry=dt.timedelta(seconds=settings.notify_retry_s),
        max_failures=settings.notify_max_failures,
        http_loopback=settings.subscription_http_loopback,
        allowed_hosts=allowed_hosts(settings.subscription_allowed_hosts),
    )


def endpoint_policy(settings: Settings) -> EndpointPolicy:
    return delivery_settings(settings).policy


class Undeliverable(Exception):
    """The endpoint did not acknowledge a notification (the reason is the message)."""


#: A host name and port -> the addresses it resolves to (empty: it does not resolve).
Resolve = Callable[[str, int], list[str]]


def resolve(host: str, port: int) -> list[str]:
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return []
    return list(dict.fromkeys(str(info[4][0]) for info in found))


def endpoint_refusal(
    url: str, policy: EndpointPolicy, addresses: Collection[str] | None = None
) -> str | None:
    """Why notifications may not go to `url` (None: they may). `addresses`: what its host
    resolves to (None: resolve it now; a name that does not resolve is not refused here,
    as it cannot be sent to either, and is checked again at each send)."""
    scheme, host, port = endpoint_origin(url)
    if not host or port is None or scheme not in ("https", "http"):
        return "the endpoint must be an absolute https URL"
    loopback_allowed = policy.http_loopback and _loopback(host)
    if scheme == "http" and not loopback_allowed:
        if policy.http_loopback:
            return "plain http endpoints must be on this machine (localhost, 127.0.0.1, ::1)"
        return "the endpoint must be an https URL"
    if (scheme, host, port) in policy.own or (
        not loopback_allowed and host in {h for _, h, _ in policy.own}
    ):
        return "the endpoint may not be this server itself"
    if host in policy.allowed_hosts:
        return None
    for address in resolve(host, port) if addresses is None else addresses:
        ip = ip_address(address.split("%")[0])
        if loopback_allowed and ip.is_loopback:
            continue
        if _internal(ip):
            return (
                f"the endpoint's host {host} is an internal address ({address}: loopback, "
                f"private, link-local or reserved); name it in {ALLOWED_HOSTS_SETTING} to "
                "allow it"
            )
    return None


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False


def _internal(ip: IPv4Address | IPv6Address) -> bool:
    if isinstance(ip, IPv6Address) and ip.ipv4_mapped is not None:
        return _internal(ip.ipv4_mapped)
    return (
        ip.is_loopback
        or ip.is_private
        or ip.is_link_local
        or ip.is_unspecified
        or ip.is_multicast
        or ip.is_reserved
        or not ip.is_global
    )


Send = Callable[[str, bytes, dict[str, str], float, tuple[str, ...]], None]


def post(
    url: str, body: bytes, headers: dict[str, str], timeout: float, addresses: tuple[str, ...]
) -> None:
    """POST a notification to `url`'s host at one of `addresses` (those that passed the
    checks, tried in order; TLS still verifies the host name); anything but a 2xx answer
    is Undeliverable. Redirects are not followed: a notification goes to the endpoint the
    subscriber named."""
    parts = urlsplit(url)
    host, port = parts.hostname or "", endpoint_origin(url)[2]
    connection: http.client.HTTPConnection
    if parts.scheme == "https":
        context = ssl.create_default_context()
        connection = http.client.HTTPSConnection(host, port, timeout=timeout, context=context)
    else:
        connection = http.client.HTTPConnection(host, port, timeout=timeout)
    # Connect to the vetted address, not to whatever the name resolves to by now.
    connection._create_connection = _to(addresses)  # type: ignore[attr-defined]
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        connection.request("POST", path, body=body, headers=headers)
        response = connection.getresponse()
        response.read()
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise Undeliverable(f"the endpoint could not be reached: {exc}") from None
    finally:
        connection.close()
    if not 200 <= response.status < 300:
        raise Undeliverable(f"the endpoint answered {response.status} {response.reason}")


def _to(addresses: tuple[str, ...]) -> Callable[..., socket.socket]:
    def connect(target: tuple[str, int], *args: Any, **kwargs: Any) -> socket.socket:
        failure: OSError = OSError("no address to connect to")
        for address in addresses:
            try:
                return socket.create_connection((address, target[1]), *args, **kwargs)
            except OSError as exc:
                failure = exc
        raise failure

    return connect


class Deliverer:
    """One delivery worker over `database`."""

    def __init__(
        self,
        database: Database,
        settings: DeliverySettings,
        send: Send = post,
        resolver: Resolve = resolve,
    ) -> None:
        self.database = database
        self.settings = settings
        self.send = send
        self.resolve = resolver

    def run_once(self, now: dt.datetime | None = None) -> int:
        """One round over the subscriptions due; the number of notifications sent."""
        moment = now or utcnow()
        with self.database.read_as(WORKER) as store:
            due = store.subscriptions_due(moment)
        count = 0
        for ident in due:
            held = self._write(Store.take_subscription, ident=ident, now=moment, lease=LEASE)
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
                with self.database.read_as(WORKER) as store:
                    subscription = store.get(Subscription, ident)
                    if subscription is None or subscription.status not in LISTENING:
                        return sent
                    ended = self._ended(store, subscription, now)
                    kind, through, body = (
                        self._next(store, subscription, now) if ended is None else ("", None, None)
                    )
                if ended is not None:
                    self._write(Store.turn_off_subscription, ident=ident, reason=ended, now=now)
                    return sent
                if body is None:
                    return sent
                until = now + LEASE + dt.timedelta(seconds=subscription.timeout_s)
                renewed = self._write(Store.renew_subscription, ident=ident, held=held, until=until)
                if renewed is None:
                    return sent  # the lease ran out: another worker carries on
                held = renewed
                try:
                    self._send(subscription, body)
                except Undeliverable as exc:
                    self._write(
                        Store.notification_failed,
                        ident=ident,
                        reason=str(exc),
                        now=utcnow(),
                        backoff=self.settings.retry,
                        give_up_after=self.settings.max_failures,
                    )
                    return sent
                self._write(
                    Store.notification_sent,
                    ident=ident,
                    through=through,
                    handshake=kind == "handshake",
                    now=utcnow(),
                )
                sent += 1
            return sent
        finally:
            self._write(Store.release_subscription, ident=ident, held=held)

    def _write(self, method: Callable[..., T], **arguments: Any) -> T:
        """One of the Store's delivery methods in a transaction of its own, as the worker."""
        return self.database.write_as(WORKER, partial(method, **arguments))

    @staticmethod
    def _ended(store: Store, subscription: Subscription, now: dt.datetime) -> str | None:
        """Why the subscription must stop now (None: it goes on)."""
        if subscription.ends is not None and subscription.ends <= now:
            return f"ended at {subscription.ends.isoformat()} (Subscription.end)"
        return why_not_listening(store, subscription)

    def _next(
        self, store: Store, subscription: Subscription, now: dt.datetime
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
            number = subscription.delivered + 1
            events = rendered(store, subscription, number, number, 1, subscription.content)
            if events:
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
        """Send to the endpoint, checked again now that its name is resolved."""
        policy = self.settings.policy.serving(subscription.server_base)
        scheme, host, port = endpoint_origin(subscription.endpoint)
        addresses = self.resolve(host, port or 0) if host else []
        refusal = endpoint_refusal(subscription.endpoint, policy, addresses)
        if refusal is not None:
            raise Undeliverable(refusal)
        if not addresses:
            raise Undeliverable(f"the endpoint's host {host} cannot be resolved")
        headers = {"Content-Type": "application/fhir+json"}
        for line in orjson.loads(subscription.document).get("channel", {}).get("header", []):
            name, _, value = str(line).partition(":")
            if name.strip() and value.strip():
                headers[name.strip()] = value.strip()
        self.send(
            subscription.endpoint, body, headers, float(subscription.timeout_s), tuple(addresses)
        )


def _body(bundle: dict[str, Any]) -> bytes:
    return orjson.dumps(bundle)
