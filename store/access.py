"""What the caller may see, as far as the store is concerned."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Access:
    """`restricted_patients`: the caller holds the "access blocked patients" permission."""

    restricted_patients: bool = False


STAFF = Access(restricted_patients=False)
PRIVACY_OFFICER = Access(restricted_patients=True)
