"""Normal forms used for searching: folded names and phone digits."""

from __future__ import annotations

import unicodedata


def fold(text: str) -> str:
    """Case- and accent-insensitive form of a name: 'Zoë Müller' -> 'zoe muller'."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def phone_digits(text: str) -> str:
    """The national number of a phone: digits only, a leading US country code dropped."""
    only = "".join(c for c in text if c.isdigit())
    if len(only) == 11 and only.startswith("1"):
        return only[1:]
    return only
