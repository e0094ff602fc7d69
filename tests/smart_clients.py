"""A SMART Backend Services client, as the tests play it: a key pair, its public JWK Set,
and signed client assertions (SMART App Launch 2.0, backend-services §4.2.1)."""

from __future__ import annotations

import datetime as dt
import functools
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@functools.cache
def _key(client_id: str, alg: str) -> Any:
    """One key pair per client name and algorithm in a test process: each test has its
    own database, so sharing one costs nothing, and an RSA key takes ~0.1 s to make."""
    if alg.startswith("RS"):
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ec.generate_private_key(ec.SECP384R1())


@dataclass
class BackendClient:
    client_id: str
    alg: str = "RS384"
    kid: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    private_key: Any = None

    def __post_init__(self) -> None:
        if self.private_key is None:
            self.private_key = _key(self.client_id, self.alg)

    @property
    def jwks(self) -> dict[str, Any]:
        algorithm = jwt.get_algorithm_by_name(self.alg)
        public = json.loads(algorithm.to_jwk(self.private_key.public_key()))
        public.update(kid=self.kid, alg=self.alg, use="sig")
        return {"keys": [public]}

    def assertion(self, audience: str, **overrides: Any) -> str:
        """A signed assertion; `overrides` replace claims (None removes one), and
        `headers`/`alg`/`key` change how it is signed."""
        now = dt.datetime.now(dt.UTC)
        headers = {"kid": self.kid, "typ": "JWT", **overrides.pop("headers", {})}
        alg = overrides.pop("alg", self.alg)
        key = overrides.pop("key", self.private_key)
        claims: dict[str, Any] = {
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": audience,
            "exp": int((now + dt.timedelta(minutes=4)).timestamp()),
            "jti": uuid.uuid4().hex,
        }
        claims.update(overrides)
        claims = {k: v for k, v in claims.items() if v is not None}
        return jwt.encode(claims, key, algorithm=alg, headers=headers)

    def token_form(self, audience: str, scope: str, **overrides: Any) -> dict[str, str]:
        return {
            "grant_type": "client_credentials",
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": self.assertion(audience, **overrides),
            "scope": scope,
        }
