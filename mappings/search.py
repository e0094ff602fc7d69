"""FHIR search (R4 §3.1.1.5 / search.html) -> store queries.

A query string becomes `store.search.Query`: each parameter occurrence is one
`AnyOf` (its comma-separated values are alternatives), occurrences are ANDed.
The parameters each resource type supports, with the translator of each value
(prefixes, modifiers), are the table `mappings.search_params.SEARCHES`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from mappings.errors import InvalidSearch, TooCostly, TooLong
from mappings.limits import check_text
from mappings.search_params import SEARCHES, Include, ResourceSearch, RevInclude
from mappings.subsetting import Subset, elements, summary
from store.access import Access
from store.search import AnyOf, Condition, Query
from store.ssn import SSN_SYSTEM, SsnHasher, link_safe

DEFAULT_COUNT = 50
MAX_COUNT = 1000
#: Largest _offset (and _count before capping) accepted: beyond it the database refuses.
MAX_OFFSET = 2**31 - 1
#: Most comma-separated values (alternatives) one parameter may have, and most
#: parameters one search may have: beyond them SQLite refuses the statement
#: (expression depth) while PostgreSQL grinds through it, so both answer 400.
MAX_ALTERNATIVES = 100
MAX_PARAMETERS = 50
#: Longest search value (one alternative): longer than any stored value it could match.
MAX_VALUE_CHARS = 500


@dataclass
class SearchRequest:
    resource_type: str
    query: Query
    includes: list[Include]
    revincludes: list[RevInclude]
    canonical: list[tuple[str, str]]  # the parameters honoured, for self/next links
    subset: Subset | None = None  # _summary=true|text|data or _elements: part of each match
    #: Types searched through chained parameters (the caller must be allowed to search them).
    chained: set[str] = field(default_factory=set)


#: Result parameters understood everywhere (besides the resource's own parameters).
RESULT_PARAMS = frozenset(
    {
        "_count",
        "_offset",
        "_include",
        "_revinclude",
        "_sort",
        "_format",
        "_summary",
        "_elements",
        "_total",
    }
)
TOTAL_MODES = ("none", "estimate", "accurate")
#: `_total=estimate` (the default): totals up to this many matches are exact; beyond it,
#: PostgreSQL's planner estimates them (a COUNT grows with the matches). SQLite counts.
EXACT_TOTAL_UP_TO = 1000


def parse_search(
    resource_type: str,
    params: list[tuple[str, str]],
    access: Access,
    *,
    lenient: bool = False,
    ssn: SsnHasher | None = None,
) -> SearchRequest:
    """Turn query-string pairs into a store query plus includes.

    Unknown parameters raise InvalidSearch unless `lenient` (Prefer: handling=lenient),
    in which case they are ignored and left out of the canonical parameters.
    """
    spec = SEARCHES[resource_type]
    query = Query(kind=spec.kind, access=access, limit=DEFAULT_COUNT, ssn=ssn)
    includes: list[Include] = []
    revincludes: list[RevInclude] = []
    canonical: list[tuple[str, str]] = []
    chained_types: set[str] = set()
    sort: list[tuple[str, bool]] = []
    if len(params) > MAX_PARAMETERS:
        raise TooCostly(f"a search takes at most {MAX_PARAMETERS} parameters")
    shaping = _Shaping(resource_type)
    for raw_name, value in params:
        check_text(raw_name, None, InvalidSearch)
        name, _, modifier = raw_name.partition(":")
        check_text(value, name, InvalidSearch)
        if name in RESULT_PARAMS:
            if name in _Shaping.PARAMS:
                shaping.take(name, value, query)
            else:
                _result_param(
                    spec, name, raw_name, value, query, includes, revincludes, sort, lenient
                )
            if name != "_offset":
                canonical.append((raw_name, value))
            continue
        head, dot, tail = name.partition(".")
        if dot and head in spec.chains:
            inner = parse_search(
                "Patient",
                [(tail + (f":{modifier}" if modifier else ""), value)],
                access,
                lenient=False,
                ssn=ssn,
            )
            chained = Condition(spec.chains[head], "eq", (access, tuple(inner.query.where), ssn))
            chained_types.add("Patient")
            query.where.append(AnyOf((chained,)))
            canonical.append((raw_name, _without_clear_ssn(tail, value, ssn)))
            continue
        param = spec.params.get(name)
        if param is None:
            if lenient:
                continue
            known = ", ".join(sorted(spec.params))
            raise InvalidSearch(
                f"unknown search parameter {name!r} for {resource_type}; supported: {known}",
                expression=name,
            )
        if modifier and modifier not in param.modifiers and param.type != "reference":
            raise InvalidSearch(
                f"{name}: modifier {modifier!r} is not supported", expression=raw_name
            )
        if value == "":
            raise InvalidSearch(f"{name}: empty value", expression=name)
        conditions: list[Condition] = []
        for alternative in _alternatives(name, value):
            conditions.extend(param.translate(modifier or None, alternative))
        query.where.append(AnyOf(tuple(conditions)))
        canonical.append((raw_name, _without_clear_ssn(name, value, ssn)))
    query.sort = sort or list(spec.default_sort)
    if shaping.total == "none" and query.limit > 0:
        query.count_total = False  # a next link still comes when more matches follow
    query.exact_up_to = EXACT_TOTAL_UP_TO if shaping.total == "estimate" else None
    return SearchRequest(
        resource_type, query, includes, revincludes, canonical, shaping.subset, chained_types
    )


class _Shaping:
    """`_summary`, `_elements` and `_total`: how much of each match, and of the total."""

    PARAMS = frozenset({"_summary", "_elements", "_total"})

    def __init__(self, resource_type: str) -> None:
        self.resource_type = resource_type
        self.subset: Subset | None = None
        self.total = "estimate"

    def take(self, name: str, value: str, query: Query) -> None:
        if name == "_total":
            if value not in TOTAL_MODES:
                raise InvalidSearch(
                    f"_total must be one of {', '.join(TOTAL_MODES)}", expression="_total"
                )
            self.total = value
            return
        if name == "_summary" and value == "count":
            query.limit = 0
            query.count_total = True
            return
        subset = (
            summary(self.resource_type, value)
            if name == "_summary"
            else elements(self.resource_type, value)
        )
        if subset is not None and self.subset is not None:
            raise InvalidSearch(
                "give one of _summary (true, text, data) and _elements, not both", expression=name
            )
        self.subset = subset or self.subset


def parse_read(resource_type: str, params: list[tuple[str, str]]) -> Subset | None:
    """The part of a read resource to return (`_summary`, `_elements`); `_format` is the
    HTTP layer's, and a read ignores other parameters, as it always has."""
    shaping = _Shaping(resource_type)
    for name, value in params:
        if name in ("_summary", "_elements"):
            shaping.take(name, value, Query(kind=SEARCHES[resource_type].kind))
    return shaping.subset


def _paging_integer(name: str, value: str) -> int:
    if not value.isascii() or not value.isdigit() or int(value) > MAX_OFFSET:
        raise InvalidSearch(f"{name} must be an integer from 0 to {MAX_OFFSET}", expression=name)
    return int(value)


def parse_history(params: list[tuple[str, str]], *, lenient: bool = False) -> slice:
    """The page of an instance history (`_count`, `_offset`; `_format` as anywhere), as a
    slice of the versions, newest first. Other parameters are refused unless `lenient`."""
    count, offset = DEFAULT_COUNT, 0
    for name, value in params:
        if name == "_count":
            count = min(_paging_integer(name, value), MAX_COUNT)
        elif name == "_offset":
            offset = _paging_integer(name, value)
        elif name == "_format":
            _check_format(value)
        elif not lenient:
            raise InvalidSearch(
                f"unknown history parameter {name!r}; supported: _count, _offset, _format",
                expression=name,
            )
    return slice(offset, offset + count)


def _without_clear_ssn(name: str, value: str, ssn: SsnHasher | None) -> str:
    """The value as it may appear in self/next links: SSNs replaced by their keyed hash."""
    if name != "identifier" or SSN_SYSTEM not in value:
        return value
    parts = []
    for alternative in _split_values(value):
        system, bar, ident = alternative.partition("|")
        if bar and system == SSN_SYSTEM:
            alternative = f"{system}|{link_safe(ssn, ident)}"
        parts.append(alternative.replace(",", "\\,"))
    return ",".join(parts)


def _alternatives(name: str, value: str) -> list[str]:
    """A parameter's values, within the bounds above."""
    values = _split_values(value)
    if len(values) > MAX_ALTERNATIVES:
        raise TooCostly(
            f"{name}: at most {MAX_ALTERNATIVES} comma-separated values", expression=name
        )
    if any(len(v) > MAX_VALUE_CHARS for v in values):
        raise TooLong(
            f"{name}: a value is longer than {MAX_VALUE_CHARS} characters", expression=name
        )
    return values


def _split_values(value: str) -> list[str]:
    """Comma separates alternatives; backslash escapes a literal comma."""
    parts = re.split(r"(?<!\\),", value)
    return [p.replace("\\,", ",") for p in parts]


def _result_param(
    spec: ResourceSearch,
    name: str,
    raw_name: str,
    value: str,
    query: Query,
    includes: list[Include],
    revincludes: list[RevInclude],
    sort: list[tuple[str, bool]],
    lenient: bool,
) -> None:
    if name in ("_count", "_offset"):
        if name == "_count":
            query.limit = min(_paging_integer(name, value), MAX_COUNT)
            query.count_total = True
        else:
            query.offset = _paging_integer(name, value)
    elif name == "_include":
        include = spec.includes.get(value)
        if include is None:
            if lenient:
                return
            raise InvalidSearch(
                f"_include={value} is not supported; "
                f"supported: {', '.join(spec.includes) or 'none'}",
                expression="_include",
            )
        includes.append(include)
    elif name == "_revinclude":
        revinclude = spec.revincludes.get(value)
        if revinclude is None:
            if lenient:
                return
            raise InvalidSearch(
                f"_revinclude={value} is not supported; supported: "
                f"{', '.join(spec.revincludes) or 'none'}",
                expression="_revinclude",
            )
        revincludes.append(revinclude)
    elif name == "_sort":
        for key in value.split(","):
            descending = key.startswith("-")
            field_name = spec.sorts.get(key.lstrip("-"))
            if field_name is None:
                raise InvalidSearch(
                    f"_sort by {key!r} is not supported; "
                    f"supported: {', '.join(spec.sorts) or 'none'}",
                    expression="_sort",
                )
            sort.append((field_name, descending))
    elif name == "_format":
        _check_format(value)


def _check_format(value: str) -> None:
    """JSON in any spelling (json, application/json, application/fhir+json, with
    parameters); the HTTP layer has already refused other versions and charsets."""
    media_type = value.partition(";")[0].strip().lower()
    if media_type not in (
        "json",
        "application/json",
        "application/fhir+json",
        "application/json+fhir",
    ):
        raise InvalidSearch("only JSON is served (_format=json)", expression="_format")


def scope_conditions(resource_type: str, query: Sequence[tuple[str, str]]) -> tuple[AnyOf, ...]:
    """The conditions of a SMART v2 granular scope's query (`Coverage.rs?payor=…`): any
    search parameter the type declares, with its modifiers and comma alternatives. Result
    parameters, chains and unknown names raise InvalidSearch, as do malformed values."""
    spec = SEARCHES[resource_type]
    for name, _ in query:
        if name.partition(":")[0] not in spec.params:
            raise InvalidSearch(
                f"{name!r} is not a search parameter of {resource_type}", expression=name
            )
    if not query:
        raise InvalidSearch("a granular scope needs a query")
    return tuple(parse_search(resource_type, list(query), Access()).query.where)
