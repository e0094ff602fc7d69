"""What the caller may see, as far as the store is concerned."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

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
