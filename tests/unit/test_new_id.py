"""Record ids: random version 4 UUIDs, as 32 lowercase hex digits."""

from __future__ import annotations

import re
import uuid

from store.common import new_id


def test_a_new_id_is_a_random_uuid4_in_hex():
    ids = [new_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    for ident in ids:
        assert re.fullmatch(r"[0-9a-f]{32}", ident), ident
        parsed = uuid.UUID(hex=ident)
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122, ident
    # Every other bit varies: the version and variant bits are the only fixed ones.
    fixed = (1 << 128) - 1
    first = int(ids[0], 16)
    for ident in ids[1:]:
        fixed &= ~(int(ident, 16) ^ first)
    assert fixed == (0xF << 76) | (0x3 << 62), hex(fixed)
