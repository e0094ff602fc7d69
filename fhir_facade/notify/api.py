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
creator's scope claim, bound to who created it: a registered API client's subscription
reveals only what that client may read *now* (its registration's scopes), and one made
with a token no registered client holds ends no later than that token expires. The
topic's resource type must be searchable with the token. Everything runs on the
caller's Store; events are read through one opened with the subscriber's access.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import Response, request
from flask.views import MethodView
from flask_smorest import Blueprint

from fhir_facade import openapi
from fhir_facade.auth import Grants
from fhir_facade.context import caller, database, settings
from fhir_facade.http import (
    base_url,
    fhir_response,
    if_match_version,
    prefer,
    read_json_body,
    resource_headers,
)
from fhir_facade.notify.delivery import endpoint_policy, endpoint_refusal
from fhir_facade.notify.events import filter_conditions
from fhir_facade.notify.render import rendered
from fhir_facade.writes import body_for
from mappings.errors import InvalidSearch, Unprocessable
from mappings.subscription import (
    CONTENTS,
    TOPICS,
    notification_bundle,
    status_bundle,
    subscription_from_fhir,
    subscription_to_fhir,
)
from store.models import utcnow
from store.scope import Store
from store.subscriptions import Binding, SubscriptionSpec

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
    body = read_json_body()
    base = base_url()
    record = database().write_as(
        grants.access, lambda store: new_subscription(store, grants, body, base)
    )
    headers = resource_headers(record)
    headers["Location"] = (
        f"{base}/Subscription/{record['id']}/_history/{record['meta']['versionId']}"
    )
    return fhir_response(record, 201, headers)


def new_subscription(
    store: Store, grants: Grants, body: Any, base: str, ident: str | None = None
) -> dict[str, Any]:
    """Create a subscription from a request body in the caller's transaction (a single
    POST, or a Bundle's entry, with the id the Bundle gave it): checked, bound to its
    creator, rendered."""
    grants.require("Subscription", "c")
    spec = _checked(grants, subscription_from_fhir(body))
    created = store.create_subscription(binding(store, grants), base, spec, subscription_id=ident)
    return subscription_to_fhir(created)


def binding(store: Store, grants: Grants) -> Binding:
    """Who the caller is to a subscription: the registered API client its token belongs
    to (client-credentials tokens carry the client id as their subject), or else a user
    token whose expiry the subscription's end may not pass."""
    client = store.find_client(grants.subject)
    expires = (
        dt.datetime.fromtimestamp(grants.expires, dt.UTC) if grants.expires is not None else None
    )
    return Binding(grants.subject, grants.claim, client.id if client else None, expires)


def read(ident: str) -> Response:
    grants = caller()
    grants.require("Subscription", "r")
    with database().read_as(grants.access) as store:
        record = subscription_to_fhir(store.own_subscription(grants.subject, ident))
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
    with database().read_as(grants.access) as store:
        found = [subscription_to_fhir(s) for s in store.own_subscriptions(grants.subject, wanted)]
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
    spec = _checked(grants, subscription_from_fhir(body))
    expected = if_match_version()

    def work(store: Store) -> dict[str, Any]:
        changed = store.update_subscription(
            binding(store, grants), ident, spec, expected_version=expected
        )
        return subscription_to_fhir(changed)

    record = database().write_as(grants.access, work)
    return fhir_response(record, headers=resource_headers(record))


def delete(ident: str) -> Response:
    grants = caller()
    grants.require("Subscription", "d")
    database().write_as(
        grants.access, lambda store: store.delete_subscription(grants.subject, ident)
    )
    return Response(status=204)


def status(ident: str) -> Response:
    """$status (Backport IG): the subscription's status, event count and error."""
    grants = caller()
    grants.require("Subscription", "r")
    with database().read_as(grants.access) as store:
        subscription = store.own_subscription(grants.subject, ident)
        bundle = status_bundle([subscription], base_url())
    return fhir_response(bundle)


def events(ident: str, pairs: list[tuple[str, str]]) -> Response:
    """$events (Backport IG): past events by number, to fill the gaps a receiver found.
    At most EVENTS_PAGE events; content defaults to the subscription's own. Each event is
    told as the subscriber may see it now (render)."""
    grants = caller()
    grants.require("Subscription", "r")
    values = dict(pairs)
    for name in values:
        if name not in ("eventsSinceNumber", "eventsUntilNumber", "content", "_format"):
            raise InvalidSearch(f"$events has no parameter {name!r}", expression=name)
    since = _number(values, "eventsSinceNumber", 1)
    with database().read_as(grants.access) as store:
        subscription = store.own_subscription(grants.subject, ident)
        until = _number(values, "eventsUntilNumber", subscription.events)
        content = values.get("content", subscription.content)
        if content not in CONTENTS:
            raise InvalidSearch(f"content is one of {', '.join(CONTENTS)}", expression="content")
        found = rendered(store, subscription, since, until, EVENTS_PAGE, content)
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


def _checked(grants: Grants, spec: SubscriptionSpec) -> SubscriptionSpec:
    """Refuse what the subscriber could not search, filters that do not parse, and
    endpoints we will not send to (delivery.endpoint_refusal: https only, plain http to
    loopback only in demo and tests, never this server, never an internal host unless
    allowed)."""
    topic = TOPICS[spec.topic]
    grants.require(topic.resource_type, "s")
    filter_conditions(topic, spec.criteria)  # InvalidSearch / Unprocessable name the filter
    policy = endpoint_policy(settings()).serving(base_url(), request.host_url)
    refusal = endpoint_refusal(spec.endpoint, policy)
    if refusal is not None:
        raise Unprocessable(refusal, expression="Subscription.channel.endpoint")
    return spec
