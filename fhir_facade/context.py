"""Per-application services and per-request caller, as the views see them."""

from __future__ import annotations

from flask import current_app, g

from fhir_facade.auth import Grants, TokenService
from fhir_facade.config import Settings
from store.db import Database
from store.ssn import SsnHasher


def settings() -> Settings:
    configured: Settings = current_app.config["FHIR_FACADE_SETTINGS"]
    return configured


def database() -> Database:
    db: Database = current_app.extensions["fhir_facade.db"]
    return db


def tokens() -> TokenService:
    service: TokenService = current_app.extensions["fhir_facade.tokens"]
    return service


def ssn() -> SsnHasher:
    hasher: SsnHasher = current_app.extensions["fhir_facade.ssn"]
    return hasher


def caller() -> Grants:
    grants: Grants = g.grants
    return grants
