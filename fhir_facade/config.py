"""Configuration from the environment (`FHIR_FACADE_*`); see the table in the README."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PREFIX = "FHIR_FACADE_"


@dataclass
class Settings:
    instance_path: Path = field(default_factory=lambda: Path("instance").resolve())
    database_url: str | None = None
    base_url: str | None = None
    jwt_secret: str | None = None
    jwt_issuer: str = "fhir-facade-dev"
    jwt_audience: str | None = None
    jwks_url: str | None = None
    # Production (jwks_url set): the identity provider's endpoints, advertised in discovery.
    token_endpoint: str | None = None
    authorization_endpoint: str | None = None
    ssn_keys: str | None = None  # "keyid:secret,oldid:oldsecret"; the first hashes new SSNs
    max_body_bytes: int = 1_000_000
    db_pool_size: int = 10
    statement_timeout_ms: int = 15_000
    db_connect_timeout_s: int = 5
    db_read_timeout_ms: int = 20_000
    db_keepalive_s: int = 10
    series_max_occurrences: int = 366
    series_max_years: int = 2
    cors_origins: str | None = None  # "https://app.example.org,https://other" or "*"
    compress_min_bytes: int = 1400  # 0: never compress
    app_client_id: str = "fhir-facade-staff-app"  # the staff app's OAuth client at the IdP
    # Subscriptions: plain-http endpoints allowed on loopback hosts (demo and tests only).
    subscription_http_loopback: bool = False
    # Subscriptions: hosts allowed as endpoints although internal ("a.local,10.0.0.5").
    subscription_allowed_hosts: str | None = None
    notify_retry_s: int = 5  # first retry after a failed delivery; doubles per failure
    notify_max_failures: int = 6  # failures in a row before a subscription is turned off

    def __post_init__(self) -> None:
        self.instance_path = Path(self.instance_path).resolve()
        if self.jwks_url and not self.token_endpoint:
            raise ValueError(
                "FHIR_FACADE_JWKS_URL needs FHIR_FACADE_TOKEN_ENDPOINT (the identity "
                "provider's token endpoint, advertised in SMART discovery)"
            )

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.instance_path / 'fhir-facade.sqlite3'}"

    @classmethod
    def from_env(cls, overrides: dict[str, Any] | None = None) -> Settings:
        values: dict[str, Any] = {}
        env = os.environ
        text = {
            "database_url": "DATABASE_URL",
            "base_url": "BASE_URL",
            "jwt_secret": "JWT_SECRET",
            "jwt_issuer": "JWT_ISSUER",
            "jwt_audience": "JWT_AUDIENCE",
            "jwks_url": "JWKS_URL",
            "token_endpoint": "TOKEN_ENDPOINT",
            "authorization_endpoint": "AUTHORIZATION_ENDPOINT",
            "ssn_keys": "SSN_KEYS",
            "cors_origins": "CORS_ORIGINS",
            "app_client_id": "APP_CLIENT_ID",
            "subscription_allowed_hosts": "SUBSCRIPTION_ALLOWED_HOSTS",
        }
        for attr, name in text.items():
            if env.get(PREFIX + name):
                values[attr] = env[PREFIX + name]
        numbers = {
            "max_body_bytes": "MAX_BODY_BYTES",
            "db_pool_size": "DB_POOL_SIZE",
            "statement_timeout_ms": "STATEMENT_TIMEOUT_MS",
            "db_connect_timeout_s": "DB_CONNECT_TIMEOUT_S",
            "db_read_timeout_ms": "DB_READ_TIMEOUT_MS",
            "db_keepalive_s": "DB_KEEPALIVE_S",
            "series_max_occurrences": "SERIES_MAX_OCCURRENCES",
            "series_max_years": "SERIES_MAX_YEARS",
            "compress_min_bytes": "COMPRESS_MIN_BYTES",
            "notify_retry_s": "NOTIFY_RETRY_S",
            "notify_max_failures": "NOTIFY_MAX_FAILURES",
        }
        for attr, name in numbers.items():
            if env.get(PREFIX + name):
                values[attr] = int(env[PREFIX + name])
        if env.get(PREFIX + "SUBSCRIPTION_HTTP_LOOPBACK"):
            values["subscription_http_loopback"] = env[PREFIX + "SUBSCRIPTION_HTTP_LOOPBACK"] == "1"
        if env.get(PREFIX + "INSTANCE_PATH"):
            values["instance_path"] = Path(env[PREFIX + "INSTANCE_PATH"]).resolve()
        values.update(overrides or {})
        return cls(**values)
