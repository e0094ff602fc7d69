"""Errors raised while translating FHIR input.

MappingError
 ├── InvalidResource   the body is not a valid R4 resource of the expected type (400)
 ├── InvalidSearch     a search parameter is unknown or malformed (400)
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
