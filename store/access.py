"""What the caller may see, as far as the store is concerned."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar, cast

if TYPE_CHECKING:
    from store.search import AnyOf


@dataclass(frozen=True)
class Narrowing:
    """Records of `kind` are visible only when they match one of `alternatives` (each a
    list of conditions, all of which must hold): the queries of SMART v2 granular scopes."""

    kind: type[Any]
    alternatives: tuple[tuple[AnyOf, ...], ...]


@dataclass(frozen=True)
class Access:
    """`restricted_patients`: the caller holds the "access blocked patients" permission.
    `narrowed`: granular scopes, per record kind. `coverage_members`: a payer's view: of
    patients, only the beneficiaries of the coverages the caller sees; of bookings, only
    those that used one of those coverages."""

    restricted_patients: bool = False
    narrowed: tuple[Narrowing, ...] = ()
    coverage_members: bool = False


STAFF = Access(restricted_patients=False)
PRIVACY_OFFICER = Access(restricted_patients=True)


F = TypeVar("F", bound=Callable[..., Any])


def built_once_per_access(maxsize: int) -> Callable[[F], F]:
    """For a function building SQL for an `Access` (its last argument): kept per whole
    Access when the caller has no granular scopes, the shapes most callers have (a few
    values, so no part of the Access can be left out of the key; SQL expressions are
    immutable, so one serves every statement that embeds it). With granular scopes (a
    shape per token) it is built each time."""

    def decorate(build: F) -> F:
        kept = functools.lru_cache(maxsize=maxsize)(build)

        @functools.wraps(build)
        def built(*args: Any) -> Any:
            access: Access = args[-1]
            return build(*args) if access.narrowed else kept(*args)

        return cast(F, built)

    return decorate
