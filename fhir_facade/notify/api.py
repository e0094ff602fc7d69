"""The Subscription resource and its operations (Subscriptions R5 Backport IG, R4).

  POST   /fhir/Subscription                      create (status requested; handshake follows)
  GET    /fhir/Subscription[?status=]            the caller's subscriptions
  POST   /fhir/Subscription/_search
  GET    /fhir/Subscription/<id>                 read (status, and the error when failing)
  PUT    /fhir/Subscription/<id>                 update (e.g. status off; If-Match honoured)
  DELETE /fhir/Subscription/<id>                 delete
  GET|POST /fhir/Subscription/<id>/$status       SubscriptionStatus (a searchset Bundle)
  GET|POST /fhir/Subscription/<id>/$events       past events by number (a history Bundle)

A subscription is its creator's (the token subject): others get 404. It keeps the
creator's scope claim: notifications and `$events` reveal only what that token could
read. The topic's resource type must be searchable with the token.
"""

from __future__ import annotations

from typing import Any

from flask import Response, request
from flask.views import MethodView
from flask_smorest import Blueprint

from fhir_facade import openapi
from fhir_facade.context import caller, database, settings
from fhir_facade.http import (
    base_url,
    fhir_response,
    if_match_version,
    prefer,
    read_json_body,
    resource_headers,
)
from fhir_facade.notify.delivery import allowed_endpoint
from fhir_facade.notify.events import filter_conditions
from fhir_facade.notify.render import rendered
from fhir_facade.writes import body_for
from mappings.errors import InvalidSearch, Unprocessable
from mappings.subscription import (
    CONTENTS,
    TOPICS,
    endpoint_origin,
    notification_bundle,
    status_bundle,
    subscription_from_fhir,
    subscription_to_fhir,
)
from store import outbox
from store.errors import VersionMismatch
from store.models import utcnow
from store.subscriptions import (
    SubscriptionSpec,
    create_subscription,
    delete_subscription,
    owned,
    owned_by,
    update_subscription,
)

#: Most events one `$events` answer holds; ask again from the next number for more.
EVENTS_PAGE = 100
STATUSES = ("requested", "active", "error", "off")


def blueprint() -> Blueprint:
    blp = Blueprint("subscriptions", __name__, url_prefix="/fhir")

    @blp.route("/Subscription", endpoint="Subscription-type")
    class Subscriptions(MethodView):
        @openapi.documented(blp, openapi.subscription_doc("search"))
        def get(self) -> Response:
            return search(list(request.args.items(multi=True)))

        @openapi.documented(blp, openapi.subscription_doc("create"))
        def post(self) -> Response:
            return create()

    @blp.route("/Subscription/_search", endpoint="Subscription-search")
    class SubscriptionSearch(MethodView):
        @openapi.documented(blp, openapi.subscription_doc("search-post"))
        def post(self) -> Response:
            pairs = list(request.args.items(multi=True)) + list(request.form.items(multi=True))
            return search(pairs)

    @blp.route("/Subscription/<string:ident>", endpoint="Subscription-instance")
    class SubscriptionInstance(MethodView):
        @openapi.documented(blp, openapi.subscription_doc("read"))
        def get(self, ident: str) -> Response:
            return read(ident)

        @openapi.documented(blp, openapi.subscription_doc("update"))
        def put(self, ident: str) -> Response:
            return update(ident)

        @openapi.documented(blp, openapi.subscription_doc("delete"))
        def delete(self, ident: str) -> Response:
            return delete(ident)

    @blp.route("/Subscription/<string:ident>/$status", endpoint="Subscription-status")
    class SubscriptionStatus(MethodView):
        @openapi.documented(blp, openapi.subscription_operation_doc("status", "GET"))
        def get(self, ident: str) -> Response:
            return status(ident)

        @openapi.documented(blp, openapi.subscription_operation_doc("status", "POST"))
        def post(self, ident: str) -> Response:
            return status(ident)

    @blp.route("/Subscription/<string:ident>/$events", endpoint="Subscription-events")
    class SubscriptionEvents(MethodView):
        @openapi.documented(blp, openapi.subscription_operation_doc("events", "GET"))
        def get(self, ident: str) -> Response:
            return events(ident, list(request.args.items(multi=True)))

        @openapi.documented(blp, openapi.subscription_operation_doc("events", "POST"))
        def post(self, ident: str) -> Response:
            return events(ident, _parameters(read_json_body()))

    return blp


def create() -> Response:
    grants = caller()
    grants.require("Subscription", "c")
    spec = _checked(subscription_from_fhir(read_json_body()))
    base = base_url()
    record = database().write(
        lambda db: subscription_to_fhir(
            create_subscription(db, grants.subject, grants.claim, base, spec)
        )
    )
    headers = resource_headers(record)
    headers["Location"] = (
        f"{base}/Subscription/{record['id']}/_history/{record['meta']['versionId']}"
    )
    return fhir_response(record, 201, headers)


def read(ident: str) -> Response:
    grants = caller()
    grants.require("Subscription", "r")
    with database().reading() as db:
        record = subscription_to_fhir(owned(db, grants.subject, ident))
    return fhir_response(record, headers=resource_headers(record))


def search(pairs: list[tuple[str, str]]) -> Response:
    """The caller's subscriptions, optionally by `status` (all on one page)."""
    grants = caller()
    grants.require("Subscription", "s")
    wanted: str | None = None
    for name, value in pairs:
        if name == "status" and value in STATUSES:
            wanted = value
        elif name == "status":
            raise InvalidSearch(f"status is one of {', '.join(STATUSES)}", expression="status")
        elif name not in ("_format",) and prefer("handling") != "lenient":
            raise InvalidSearch(f"unknown search parameter {name!r}", expression=name)
    with database().reading() as db:
        found = [subscription_to_fhir(s) for s in owned_by(db, grants.subject, wanted)]
    base = base_url()
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(found),
        "link": [{"relation": "self", "url": f"{base}/Subscription"}],
    }
    if found:
        bundle["entry"] = [
            {
                "fullUrl": f"{base}/Subscription/{r['id']}",
                "resource": r,
                "search": {"mode": "match"},
            }
            for r in found
        ]
    return fhir_response(bundle)


def update(ident: str) -> Response:
    grants = caller()
    grants.require("Subscription", "u")
    body = body_for(ident, read_json_body())
    spec = _checked(subscription_from_fhir(body))
    expected = if_match_version()

    def work(db: Any) -> dict[str, Any]:
        if expected is not None:
            current = owned(db, grants.subject, ident, lock=True)
            if current.version != expected:
                raise VersionMismatch("Subscription", ident, expected, current.version)
        return subscription_to_fhir(
            update_subscription(db, grants.subject, ident, grants.claim, spec)
        )

    record = database().write(work)
    return fhir_response(record, headers=resource_headers(record))


def delete(ident: str) -> Response:
    grants = caller()
    grants.require("Subscription", "d")
    database().write(lambda db: delete_subscription(db, grants.subject, ident))
    return Response(status=204)


def status(ident: str) -> Response:
    """$status (Backport IG): the subscription's status, event count and error."""
    grants = caller()
    grants.require("Subscription", "r")
    with database().reading() as db:
        subscription = owned(db, grants.subject, ident)
        bundle = status_bundle([subscription], base_url())
    return fhir_response(bundle)


def events(ident: str, pairs: list[tuple[str, str]]) -> Response:
    """$events (Backport IG): past events by number, to fill the gaps a receiver found.
    At most EVENTS_PAGE events; content defaults to the subscription's own."""
    grants = caller()
    grants.require("Subscription", "r")
    values = dict(pairs)
    for name in values:
        if name not in ("eventsSinceNumber", "eventsUntilNumber", "content", "_format"):
            raise InvalidSearch(f"$events has no parameter {name!r}", expression=name)
    since = _number(values, "eventsSinceNumber", 1)
    with database().reading() as db:
        subscription = owned(db, grants.subject, ident)
        until = _number(values, "eventsUntilNumber", subscription.events)
        content = values.get("content", subscription.content)
        if content not in CONTENTS:
            raise InvalidSearch(f"content is one of {', '.join(CONTENTS)}", expression="content")
        rows = outbox.events(db, ident, since, until, EVENTS_PAGE)
        found = rendered(db, subscription, rows, content)
        bundle = notification_bundle(subscription, base_url(), "query-event", found, now=utcnow())
    return fhir_response(bundle)


def _number(values: dict[str, str], name: str, default: int) -> int:
    raw = values.get(name)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 9:
        raise InvalidSearch(f"{name} is an event number (a non-negative integer)", expression=name)
    return int(raw)


def _parameters(body: Any) -> list[tuple[str, str]]:
    """A Parameters body's valueString/valueCode/valueInteger parameters as pairs."""
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        raise Unprocessable("send a Parameters resource", expression="Parameters")
    pairs = []
    for parameter in body.get("parameter", []):
        value = next((v for k, v in parameter.items() if k.startswith("value")), None)
        pairs.append((str(parameter.get("name")), str(value)))
    return pairs


def _checked(spec: SubscriptionSpec) -> SubscriptionSpec:
    """Refuse what the subscriber could not search, filters that do not parse, and
    endpoints we will not send to (plain http but on loopback in demo and tests; this
    server itself)."""
    topic = TOPICS[spec.topic]
    caller().require(topic.resource_type, "s")
    filter_conditions(topic, spec.criteria)  # InvalidSearch / Unprocessable name the filter
    refusal = allowed_endpoint(spec.endpoint, settings().subscription_http_loopback)
    if refusal is not None:
        raise Unprocessable(refusal, expression="Subscription.channel.endpoint")
    ours = {endpoint_origin(base_url()), endpoint_origin(request.host_url)}
    if endpoint_origin(spec.endpoint) in ours:
        raise Unprocessable(
            "the endpoint may not be this server itself", expression="Subscription.channel.endpoint"
        )
    return spec
