"""US Social Security numbers are never stored in clear.

Each is kept as a keyed hash (HMAC-SHA256, `<key id>:<hex>`) for exact-match search,
plus its last four digits for masked display. Several keys may be configured:
the first hashes new values; all are tried when searching, so a key can be rotated
by putting the new one first and keeping the old one until `remaining_under` says
no hash uses it any more (values are re-hashed whenever a patient's SSN is written).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Sequence
from dataclasses import dataclass

from store.errors import RuleViolation

SSN_SYSTEM = "http://hl7.org/fhir/sid/us-ssn"
_DIGEST = re.compile(r"^[0-9a-f]{64}$")
_MASKED = re.compile(r"^\*{3}-?\*{2}-?(\d{4})$")


@dataclass(frozen=True)
class SsnKey:
    key_id: str
    secret: bytes


class SsnHasher:
    def __init__(self, keys: Sequence[SsnKey]) -> None:
        if not keys:
            raise ValueError("at least one SSN key is needed")
        self.keys = tuple(keys)

    @staticmethod
    def normalize(raw: str, *, field: str | None = None) -> str:
        """Nine digits: '123-45-6789', '123 45 6789' and '123456789' are the same SSN."""
        digits = "".join(c for c in raw if c.isdigit())
        if len(digits) != 9 or len(digits) != len(raw.replace("-", "").replace(" ", "")):
            raise RuleViolation("an SSN has nine digits (dashes optional)", field=field)
        return digits

    def digest(self, digits: str, key: SsnKey | None = None) -> str:
        key = key or self.keys[0]
        mac = hmac.new(key.secret, digits.encode(), hashlib.sha256).hexdigest()
        return f"{key.key_id}:{mac}"

    def candidates(self, raw: str) -> list[str]:
        """Every stored form `raw` may have (one per configured key); [] if not an SSN.
        A stored form itself (as put in paging links) stands for itself."""
        key_id, _, mac = raw.partition(":")
        if _DIGEST.match(mac) and any(k.key_id == key_id for k in self.keys):
            return [raw]
        try:
            digits = self.normalize(raw)
        except RuleViolation:
            return []
        return [self.digest(digits, key) for key in self.keys]


def link_safe(hasher: SsnHasher | None, raw: str) -> str:
    """What an SSN search value may show in a URL we hand out: its keyed hash."""
    found = hasher.candidates(raw) if hasher is not None else []
    return found[0] if found else "-"


def mask(last4: str | None) -> str:
    return f"***-**-{last4 or '****'}"


def masked_last4(value: str) -> str | None:
    """The last four digits of a masked SSN as we display it, else None."""
    match = _MASKED.match(value.strip())
    return match.group(1) if match else None
