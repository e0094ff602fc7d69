"""Errors raised while translating FHIR input.

MappingError
 ├── InvalidResource   the body is not a valid R4 resource of the expected type (400)
 ├── InvalidSearch     a search parameter or a URL id is unknown or malformed (400)
 │    └── TooCostly     more values than a search may have (400)
 ├── TooLong           a value longer than the store keeps (400)
 └── Unprocessable     valid FHIR that our model cannot take (422)
"""

from __future__ import annotations


class MappingError(Exception):
    def __init__(self, message: str, *, expression: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.expression = expression


class InvalidResource(MappingError):
    pass


class InvalidSearch(MappingError):
    pass


class Unprocessable(MappingError):
    pass


class TooLong(MappingError):
    """A value longer than the store keeps (400 too-long)."""


class TooCostly(InvalidSearch):
    """A search with more values than we answer (400 too-costly)."""
