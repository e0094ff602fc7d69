"""The OpenAPI document: component schemas derived from the R4B models, one doc per route.

flask-smorest serves `/openapi.json`; this module supplies what it cannot infer from
our hand-built responses. Schemas come from `fhir.resources` R4B pydantic models
(`model_json_schema`), rewritten from pydantic's view to FHIR JSON's (DESIGN §3):

* `resourceType` is added and required; pydantic's private `fhir_comments` goes;
* `null` alternatives go (FHIR JSON has no nulls), as do pydantic's `default: null`;
* `element_required` marks become `required`, required bindings (`enum_values`) `enum`;
* nested elements, which pydantic renders as `{}`, become `$ref`s to the data type or
  backbone element, itself derived the same way and hoisted into `components/schemas`.
  The closure is cut at Extension (its own children are open objects) and at
  `contained` (open objects with a resourceType) so the document stays small; a
  `Resource` (Bundle entries, Parameters) is one of the resource types we serve or
  answer with, told apart by `resourceType`;
* FHIR date, dateTime and time get the type's own regex instead of JSON Schema formats,
  which refuse partial dates such as "2026" or "2026-11".

The document is OpenAPI 3.0.3: every keyword used is valid there.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable
from functools import cache
from typing import Any, TypeVar

from fhir.resources.R4B import get_fhir_model_class
from flask_smorest import Api, Blueprint

from fhir_facade.http import FHIR_JSON
from fhir_facade.registry import RESOURCE_TYPES, Operation
from mappings import common
from mappings.search import TOTAL_MODES
from mappings.search_params import SEARCHES
from mappings.subsetting import SUMMARY_MODES

#: The resource types whose schemas the routes use.
RESOURCES = common.FHIR_RESOURCES
SECURITY_SCHEME = "bearer"
_OPEN_OBJECT: dict[str, Any] = {"type": "object"}
#: Contained resources are not expanded: the recursion would dwarf the document.
_CONTAINED: dict[str, Any] = {
    "type": "object",
    "required": ["resourceType"],
    "properties": {"resourceType": {"type": "string"}},
}
#: Element types whose children are not expanded (Extension reaches every data type).
_LEAVES = frozenset({"Extension"})
_KEYWORDS = frozenset(
    {
        "type",
        "items",
        "pattern",
        "format",
        "minLength",
        "maxLength",
        "minimum",
        "maximum",
        "enum",
        "description",
        "anyOf",
    }
)


def ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


@cache
def component_schemas() -> dict[str, dict[str, Any]]:
    """Every schema the routes reference, by name: resources, their elements, `Resource`."""
    schemas: dict[str, dict[str, Any]] = {}
    pending = list(RESOURCES)
    while pending:
        name = pending.pop()
        if name in schemas:
            continue
        schema, wanted = _element_schema(name, expand=name not in _LEAVES)
        if name in RESOURCES:
            schema["properties"] = {
                "resourceType": {"type": "string", "enum": [name]},
                **schema["properties"],
            }
            schema["required"] = ["resourceType", *schema.get("required", [])]
        schemas[name] = schema
        pending.extend(w for w in wanted if w not in schemas)
    schemas["Resource"] = {
        "description": "A resource of one of the types this server serves or answers with.",
        "oneOf": [ref(n) for n in RESOURCES],
        "discriminator": {"propertyName": "resourceType"},
    }
    return schemas


def _element_schema(type_name: str, *, expand: bool) -> tuple[dict[str, Any], set[str]]:
    """The FHIR JSON schema of one resource, data type or backbone element, and the
    element types it references."""
    model = get_fhir_model_class(type_name)
    raw = model.model_json_schema()
    fields = {(f.alias or k): f for k, f in model.model_fields.items()}
    properties: dict[str, Any] = {}
    required = list(raw.get("required", []))
    wanted: set[str] = set()
    for prop, prop_schema in raw["properties"].items():
        if prop == "fhir_comments":
            continue
        field = fields[prop]
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        schema = _clean(prop_schema)
        element = _element_type(field.annotation)
        if prop == "contained":
            schema = _with_items(schema, _CONTAINED)
        elif element is not None:
            if not expand or element == "FHIRPrimitiveExtension":
                schema = _with_items(schema, _OPEN_OBJECT)
            else:
                schema = _with_items(schema, ref(element))
                wanted.add(element)
        elif "enum_values" in extra:
            schema = _with_enum(schema, list(extra["enum_values"]))
        else:
            schema = _with_fhir_pattern(schema, field.annotation)
        if extra.get("element_required") and prop not in required:
            required.append(prop)
        properties[prop] = schema
    result: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        result["required"] = required
    result["additionalProperties"] = False
    wanted.discard("Resource")  # built by component_schemas, not from a model
    return result, wanted


def _clean(schema: dict[str, Any]) -> dict[str, Any]:
    """Pydantic's property schema without `null` alternatives and non-OpenAPI keywords."""
    options = [o for o in schema.get("anyOf", [schema]) if o.get("type") != "null"]
    base = options[0] if len(options) == 1 else {"anyOf": options}
    cleaned = {k: v for k, v in base.items() if k in _KEYWORDS}
    items = cleaned.get("items")
    if isinstance(items, dict):
        cleaned["items"] = _clean(items)
    if "anyOf" in cleaned:
        cleaned["anyOf"] = [_clean(o) for o in cleaned["anyOf"]]
    if "description" in schema:
        cleaned["description"] = schema["description"]
    return cleaned


def _with_items(schema: dict[str, Any], target: dict[str, Any]) -> dict[str, Any]:
    if schema.get("type") == "array":
        return {**schema, "items": target}
    if "description" in schema and "$ref" not in target:
        return {**target, "description": schema["description"]}
    return target


def _with_fhir_pattern(schema: dict[str, Any], annotation: Any) -> dict[str, Any]:
    """FHIR date, dateTime and time allow partial dates and zone-less times that
    JSON Schema's `date`, `date-time` and `time` formats refuse: use the type's regex."""
    primitive = _primitive(annotation)
    if getattr(primitive, "__visit_name__", None) not in ("date", "dateTime", "time"):
        return schema
    kind: Any = type(primitive)
    pattern = f"^{kind.pattern.pattern}$"
    if schema.get("type") == "array":
        return {**schema, "items": _with_pattern(schema["items"], pattern)}
    return _with_pattern(schema, pattern)


def _with_pattern(schema: dict[str, Any], pattern: str) -> dict[str, Any]:
    return {**{k: v for k, v in schema.items() if k != "format"}, "pattern": pattern}


def _primitive(annotation: Any) -> object | None:
    """The fhir_core primitive marker (Date(), DateTime(), ...) inside an annotation."""
    if typing.get_origin(annotation) is typing.Annotated:
        return next((m for m in annotation.__metadata__ if hasattr(m, "__visit_name__")), None)
    for arg in typing.get_args(annotation):
        found = _primitive(arg)
        if found is not None:
            return found
    return None


def _with_enum(schema: dict[str, Any], values: list[str]) -> dict[str, Any]:
    if schema.get("type") == "array":
        return {**schema, "items": {**schema["items"], "enum": values}}
    return {**schema, "enum": values}


def _element_type(annotation: Any) -> str | None:
    """`ReferenceType` in Optional[List[ReferenceType]] -> "Reference"; None for primitives."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType, list, typing.Annotated):
        for arg in typing.get_args(annotation):
            found = _element_type(arg)
            if found is not None:
                return found
        return None
    name = getattr(annotation, "__name__", "")
    if isinstance(annotation, type) and name.endswith("Type") and annotation.__module__ == "abc":
        return name.removesuffix("Type")
    return None


# -- route documentation -------------------------------------------------------------
# Each builder returns the keyword arguments of `Blueprint.doc` for one view method.

View = TypeVar("View", bound=Callable[..., Any])


def documented(blp: Blueprint, doc: dict[str, Any]) -> Callable[[View], View]:
    """`blp.doc(**doc)`, typed: attaches OpenAPI documentation, changes no behaviour."""
    decorator: Callable[[View], View] = blp.doc(**doc)
    return decorator


_ERROR_STATUSES = {
    "400": "Bad request: malformed JSON, an invalid resource or search",
    "401": "Missing, expired or invalid bearer token",
    "403": "The token's scopes or permissions do not allow this",
    "404": "Unknown resource (or one hidden from this caller)",
    "406": "Only JSON is served",
    "409": "Conflict: the session is full, the patient already holds a place, a duplicate",
    "412": "If-Match names another version, or If-None-Exist matches several resources",
    "415": "The body is not application/fhir+json",
    "422": "A business rule refused the change",
}
_PREFER = {
    "name": "Prefer",
    "in": "header",
    "required": False,
    "schema": {"type": "string"},
    "description": (
        "return=minimal | representation | OperationOutcome (writes); "
        "handling=strict | lenient (searches: lenient ignores unknown parameters)"
    ),
}


def _content(schema: dict[str, Any]) -> dict[str, Any]:
    return {FHIR_JSON: {"schema": schema}}


def _responses(success: dict[str, tuple[str, str]], errors: tuple[str, ...]) -> dict[str, Any]:
    responses: dict[str, Any] = {
        status: {"description": text, "content": _content(ref(schema))}
        for status, (text, schema) in success.items()
    }
    for status in errors:
        responses[status] = {"$ref": f"#/components/responses/{_response_name(status)}"}
    responses["default"] = {"$ref": "#/components/responses/OperationOutcome"}
    return responses


def _response_name(status: str) -> str:
    return f"OperationOutcome{status}"


def _body(schema: str, description: str) -> dict[str, Any]:
    return {"required": True, "description": description, "content": _content(ref(schema))}


def _search_parameters(resource_type: str) -> list[dict[str, Any]]:
    """Every query parameter a search of `resource_type` honours (`search_params.SEARCHES`)."""
    spec = SEARCHES[resource_type]
    params: list[dict[str, Any]] = []

    def add(name: str, description: str, schema: dict[str, Any] | None = None) -> None:
        params.append(
            {
                "name": name,
                "in": "query",
                "required": False,
                "description": description,
                "schema": schema or {"type": "string"},
            }
        )

    for name, param in spec.params.items():
        add(name, f"{param.documentation} ({param.type})")
        for modifier in sorted(param.modifiers):
            add(f"{name}:{modifier}", f"{param.documentation} ({param.type}, :{modifier})")
    for chain in spec.chains:
        for name, param in SEARCHES["Patient"].params.items():
            add(f"{chain}.{name}", f"Chained into Patient: {param.documentation}")
    add("_count", "Page size (at most 1000); with it the Bundle carries total", _INTEGER)
    add("_offset", "Matches to skip (paging; follow the Bundle's next link)", _INTEGER)
    if spec.includes:
        add("_include", "Also return referenced resources", _enum(list(spec.includes)))
    if spec.revincludes:
        add("_revinclude", "Also return referring resources", _enum(list(spec.revincludes)))
    sorts = sorted(spec.sorts)
    add("_sort", f"Comma-separated sort keys, '-' for descending: {', '.join(sorts)}")
    add(
        "_summary",
        "true: the R4 summary elements; text; data: all but the narrative; count: only the "
        "total; false: everything",
        _enum(list(SUMMARY_MODES)),
    )
    add("_elements", "Comma-separated element names: only those (and the mandatory ones)")
    add(
        "_total",
        "none: leave the total out; estimate (the default): exact up to 1,000 matches, "
        "beyond that PostgreSQL's planner estimate for a caller from whom nothing of the "
        "type is hidden (others get none past it); accurate: always exact",
        _enum(list(TOTAL_MODES)),
    )
    add("_format", "json only", _enum(["json", "application/json", "application/fhir+json"]))
    return params


_INTEGER: dict[str, Any] = {"type": "integer", "minimum": 0}


def _enum(values: list[str]) -> dict[str, Any]:
    return {"type": "string", "enum": values}


def _form_body(resource_type: str) -> dict[str, Any]:
    properties = {
        p["name"]: {**p["schema"], "description": p["description"]}
        for p in _search_parameters(resource_type)
    }
    form = {"schema": {"type": "object", "properties": properties}}
    return {"required": False, "content": {"application/x-www-form-urlencoded": form}}


def search_doc(resource_type: str) -> dict[str, Any]:
    return {
        "operationId": f"search-{resource_type}",
        "tags": [resource_type],
        "summary": f"Search {resource_type}",
        "description": RESOURCE_TYPES[resource_type].documentation,
        "parameters": [*_search_parameters(resource_type), _PREFER],
        "responses": _responses(
            {"200": ("A searchset Bundle", "Bundle")}, ("400", "401", "403", "406")
        ),
    }


def search_post_doc(resource_type: str) -> dict[str, Any]:
    return {
        "operationId": f"search-post-{resource_type}",
        "tags": [resource_type],
        "summary": f"Search {resource_type} with a form body (POST _search)",
        "parameters": [_PREFER],
        "requestBody": _form_body(resource_type),
        "responses": _responses(
            {"200": ("A searchset Bundle", "Bundle")}, ("400", "401", "403", "406")
        ),
    }


def read_doc(resource_type: str) -> dict[str, Any]:
    return {
        "operationId": f"read-{resource_type}",
        "tags": [resource_type],
        "summary": f"Read a {resource_type}",
        "parameters": [
            {
                "name": "_elements",
                "in": "query",
                "required": False,
                "description": "Comma-separated element names: only those (and the mandatory)",
                "schema": {"type": "string"},
            },
            {
                "name": "_summary",
                "in": "query",
                "required": False,
                "description": "true | text | data | false",
                "schema": _enum(["true", "text", "data", "false"]),
            },
        ],
        "responses": _responses(
            {"200": (f"The {resource_type}", resource_type)}, ("401", "403", "404", "406")
        ),
    }


def vread_doc(resource_type: str) -> dict[str, Any]:
    return {
        "operationId": f"vread-{resource_type}",
        "tags": [resource_type],
        "summary": f"Read a version of a {resource_type} (Location and meta.versionId name it)",
        "responses": _responses(
            {"200": (f"The {resource_type} as it was at that version", resource_type)},
            ("401", "403", "404", "406"),
        ),
    }


def history_doc(resource_type: str) -> dict[str, Any]:
    parameters = [
        {
            "name": name,
            "in": "query",
            "required": False,
            "description": description,
            "schema": schema,
        }
        for name, description, schema in (
            ("_count", "Versions per page (at most 1000)", _INTEGER),
            ("_offset", "Versions to skip (follow the Bundle's next link)", _INTEGER),
            ("_format", "json only", _enum(["json", "application/json", "application/fhir+json"])),
        )
    ]
    return {
        "operationId": f"history-{resource_type}",
        "tags": [resource_type],
        "summary": f"Every version of a {resource_type}, newest first",
        "parameters": [*parameters, _PREFER],
        "responses": _responses(
            {"200": ("A history Bundle", "Bundle")}, ("400", "401", "403", "404", "406")
        ),
    }


def create_doc(resource_type: str) -> dict[str, Any]:
    parameters = [_PREFER]
    if RESOURCE_TYPES[resource_type].conditional_create:
        parameters.append(
            {
                "name": "If-None-Exist",
                "in": "header",
                "required": False,
                "schema": {"type": "string"},
                "description": "Conditional create: a search query; a single match is returned",
            }
        )
    return {
        "operationId": f"create-{resource_type}",
        "tags": [resource_type],
        "summary": f"Create a {resource_type}",
        "description": RESOURCE_TYPES[resource_type].documentation
        + " Prefer: return=minimal answers with no body; return=OperationOutcome with one.",
        "parameters": parameters,
        "requestBody": _body(resource_type, f"The new {resource_type} (no id)"),
        "responses": _responses(
            {
                "201": (f"Created; the stored {resource_type}", resource_type),
                "200": (f"If-None-Exist matched; the existing {resource_type}", resource_type),
            },
            ("400", "401", "403", "404", "409", "412", "415", "422"),
        ),
    }


def update_doc(resource_type: str) -> dict[str, Any]:
    return {
        "operationId": f"update-{resource_type}",
        "tags": [resource_type],
        "summary": f"Update a {resource_type}",
        "description": RESOURCE_TYPES[resource_type].documentation
        + " Prefer: return=minimal answers with no body; return=OperationOutcome with one.",
        "parameters": [
            _PREFER,
            {
                "name": "If-Match",
                "in": "header",
                "required": False,
                "schema": {"type": "string"},
                "description": 'Version-aware update: the ETag read, e.g. W/"3"',
            },
        ],
        "requestBody": _body(resource_type, f"The {resource_type}; its id matches the URL"),
        "responses": _responses(
            {"200": (f"The stored {resource_type}", resource_type)},
            ("400", "401", "403", "404", "409", "412", "415", "422"),
        ),
    }


def operation_doc(resource_type: str, operation: Operation) -> dict[str, Any]:
    code = operation.code
    doc: dict[str, Any] = {
        "operationId": f"{resource_type}-{code}",
        "tags": [resource_type],
        "summary": f"{resource_type} ${code}",
        "description": operation.documentation,
        "requestBody": _body("Parameters", "The operation's input Parameters"),
        "responses": _responses(
            {"200": ("A Bundle of Appointments", "Bundle")},
            ("400", "401", "403", "404", "409", "412", "415", "422"),
        ),
    }
    if code == "cancel-series":
        doc["parameters"] = [
            {
                "name": "If-Match",
                "in": "header",
                "required": False,
                "schema": {"type": "string"},
                "description": 'The ETag of the occurrence, e.g. W/"3"',
            }
        ]
    return doc


SUBSCRIPTION_DOCUMENTATION = (
    "Topic-based subscriptions (Subscriptions R5 Backport IG, R4): criteria is the topic's "
    "canonical URL, filters in the backport-filter-criteria extension, a rest-hook channel "
    "(https; plain http to loopback only where allowed), payload content empty | id-only | "
    "full-resource, heartbeat period. Notifications reveal only what the creator's token "
    "could read. A subscription is its creator's: others get 404."
)


def subscription_doc(interaction: str) -> dict[str, Any]:
    """The Subscription routes (fhir_facade.notify.api)."""
    errors = ("400", "401", "403", "404", "412", "415", "422")
    docs: dict[str, dict[str, Any]] = {
        "search": {
            "summary": "The caller's subscriptions",
            "parameters": [
                {
                    "name": "status",
                    "in": "query",
                    "required": False,
                    "description": "requested | active | error | off",
                    "schema": _enum(["requested", "active", "error", "off"]),
                },
                _PREFER,
            ],
            "responses": _responses(
                {"200": ("A searchset Bundle", "Bundle")}, ("400", "401", "403", "406")
            ),
        },
        "search-post": {
            "summary": "The caller's subscriptions (POST _search, form body)",
            "parameters": [_PREFER],
            "requestBody": {
                "required": False,
                "content": {
                    "application/x-www-form-urlencoded": {
                        "schema": {
                            "type": "object",
                            "properties": {
                                "status": _enum(["requested", "active", "error", "off"])
                            },
                        }
                    }
                },
            },
            "responses": _responses(
                {"200": ("A searchset Bundle", "Bundle")}, ("400", "401", "403", "406")
            ),
        },
        "read": {
            "summary": "Read a Subscription (its status, and the error when failing)",
            "responses": _responses(
                {"200": ("The Subscription", "Subscription")}, ("401", "403", "404", "406")
            ),
        },
        "create": {
            "summary": "Subscribe (status requested until the endpoint answers the handshake)",
            "requestBody": _body("Subscription", "The new Subscription (no id)"),
            "responses": _responses({"201": ("The stored Subscription", "Subscription")}, errors),
        },
        "update": {
            "summary": "Change a Subscription (e.g. status off; back on starts a new handshake)",
            "parameters": [
                {
                    "name": "If-Match",
                    "in": "header",
                    "required": False,
                    "schema": {"type": "string"},
                    "description": 'Version-aware update: the ETag read, e.g. W/"3"',
                }
            ],
            "requestBody": _body("Subscription", "The Subscription; its id matches the URL"),
            "responses": _responses({"200": ("The stored Subscription", "Subscription")}, errors),
        },
        "delete": {
            "summary": "Delete a Subscription",
            "responses": {
                "204": {"description": "Deleted"},
                **_responses({}, ("401", "403", "404")),
            },
        },
    }
    return {
        "operationId": f"{interaction}-Subscription",
        "tags": ["Subscription"],
        "description": SUBSCRIPTION_DOCUMENTATION,
        **docs[interaction],
    }


_SUBSCRIPTION_OPERATIONS = {
    "status": (
        "The subscription's SubscriptionStatus: status, events since it started, the error "
        "when failing (Subscriptions Backport IG $status)",
        "A searchset Bundle of SubscriptionStatus Parameters",
        (),
    ),
    "events": (
        "Past events by number, to fill gaps (Subscriptions Backport IG $events): at most "
        "100 per answer, visible to the subscriber's token now",
        "A notification Bundle (history) of type query-event",
        (
            ("eventsSinceNumber", "First event number (default 1)"),
            ("eventsUntilNumber", "Last event number (default the latest)"),
            ("content", "empty | id-only | full-resource (default the subscription's)"),
        ),
    ),
}


def subscription_operation_doc(code: str, method: str) -> dict[str, Any]:
    summary, answer, parameters = _SUBSCRIPTION_OPERATIONS[code]
    doc: dict[str, Any] = {
        "operationId": f"Subscription-{code}-{method.lower()}",
        "tags": ["Subscription"],
        "summary": f"Subscription ${code}",
        "description": summary,
        "responses": _responses({"200": (answer, "Bundle")}, ("400", "401", "403", "404", "406")),
    }
    if method == "GET" and parameters:
        doc["parameters"] = [
            {
                "name": name,
                "in": "query",
                "required": False,
                "description": text,
                "schema": {"type": "string"},
            }
            for name, text in parameters
        ]
    if method == "POST":
        doc["requestBody"] = {**_body("Parameters", "The operation's input Parameters")}
        doc["requestBody"]["required"] = False
    return doc


def system_doc() -> dict[str, Any]:
    return {
        "operationId": "batch-transaction",
        "tags": ["System"],
        "summary": "Process a batch or transaction Bundle",
        "description": (
            "Transactions are atomic and resolve urn:uuid references; batches report "
            "per-entry outcomes."
        ),
        "parameters": [_PREFER],
        "requestBody": _body("Bundle", "A Bundle of type batch or transaction"),
        "responses": _responses(
            {"200": ("A batch-response or transaction-response Bundle", "Bundle")},
            ("400", "401", "403", "404", "409", "412", "415", "422"),
        ),
    }


def metadata_doc() -> dict[str, Any]:
    return {
        "operationId": "capabilities",
        "tags": ["System"],
        "summary": "The CapabilityStatement (no token needed)",
        "security": [],
        "responses": _responses({"200": ("The CapabilityStatement", "CapabilityStatement")}, ()),
    }


def smart_configuration_doc() -> dict[str, Any]:
    return {
        "operationId": "smart-configuration",
        "tags": ["System"],
        "summary": "SMART App Launch configuration (no token needed)",
        "security": [],
        "responses": {
            "200": {
                "description": "The SMART configuration",
                "content": {"application/json": {"schema": {"type": "object"}}},
            },
            "default": {"$ref": "#/components/responses/OperationOutcome"},
        },
    }


def register(api: Api) -> None:
    """Add the component schemas, error responses and the bearer scheme to `api.spec`."""
    components = api.spec.components
    for name, schema in component_schemas().items():
        components.schema(name, schema)
    outcome = {"content": _content(ref("OperationOutcome"))}
    components.response(
        "OperationOutcome", {"description": "An error, as an OperationOutcome", **outcome}
    )
    for status, text in _ERROR_STATUSES.items():
        components.response(_response_name(status), {"description": text, **outcome})
    components.security_scheme(
        SECURITY_SCHEME,
        {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": (
                "SMART v2 scopes (e.g. user/*.cruds) plus permissions such as "
                "__schedule.manage, __patient.blocked and __audit.read"
            ),
        },
    )
