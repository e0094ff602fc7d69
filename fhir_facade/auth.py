"""Bearer JWTs, SMART App Launch v2 scopes and our permission scopes.

Scopes understood:
  user/<Type|*>.<cruds>   SMART v2 (letters: create, read, update, delete, search)
  user/<Type|*>.read|write|*   SMART v1 equivalents
  system/...             same as user/ for backend services
  user/<Type>.<cruds>?param=value[&param=value]
                         SMART v2 granular scope: only records matching that search
                         (any search parameter the type declares) are granted. A query
                         we cannot parse, or one on `*`, makes the scope grant nothing:
                         a restriction we cannot honour must not become no restriction.
  __schedule.manage      "Schedule Admin: Manage Appointments" (create/alter sessions)
  __patient.blocked      "Privacy: Access Blocked Patients"
  __audit.read           administrators: read and search AuditEvent
`patient/` scopes need a launch context we do not provide, so they grant nothing.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import secrets
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import jwt

from fhir_facade.config import Settings
from fhir_facade.outcomes import AuthError
from mappings.errors import InvalidSearch
from mappings.search import scope_conditions
from mappings.search_params import SEARCHES
from store.access import Access, Narrowing
from store.errors import PermissionRequired
from store.ssn import SsnHasher, SsnKey

SCHEDULE_MANAGE = "__schedule.manage"
PATIENT_BLOCKED = "__patient.blocked"
AUDIT_READ = "__audit.read"

PERMISSION_SCOPES = {
    SCHEDULE_MANAGE: "Schedule Admin: Manage Appointments (create and alter group sessions)",
    PATIENT_BLOCKED: "Privacy: Access Blocked Patients",
    AUDIT_READ: "Administrator: Read the Audit Trail",
}

_SCOPE = re.compile(
    r"^(user|system|patient)/(\*|[A-Z][A-Za-z]+)\.(\*|read|write|[cruds]+)(?:\?(.+))?$"
)
_V1 = {"read": "rs", "write": "cud", "*": "cruds"}
#: The coverage search parameter whose presence in every Coverage scope makes a payer token.
PAYER_PARAM = "payor"


@dataclass(frozen=True)
class Scope:
    """One resource scope: `system/Coverage.rs?payor=Organization/x`. `query` is empty for
    an unrestricted scope; its pairs are ANDed, as in a search."""

    resource_type: str  # a type, or "*"
    letters: frozenset[str]
    query: tuple[tuple[str, str], ...] = ()

    def covers(self, resource_type: str) -> bool:
        return self.resource_type in (resource_type, "*")


def parse_scope(item: str) -> Scope | None:
    """A resource scope, or None for anything else (permissions, `patient/`, malformed,
    or a granular query we cannot honour)."""
    match = _SCOPE.match(item)
    if match is None or match.group(1) == "patient":
        return None
    _, resource_type, rights, query = match.groups()
    letters = frozenset(_V1.get(rights, rights))
    if query is None:
        return Scope(resource_type, letters)
    if resource_type not in SEARCHES:
        return None  # `*` or a type we do not serve: its parameters mean nothing here
    try:
        pairs = tuple(parse_qsl(query, keep_blank_values=True, strict_parsing=True))
        scope_conditions(resource_type, pairs)
    except (ValueError, InvalidSearch):
        return None
    return Scope(resource_type, letters, pairs)


#: RFC 6749 §3.3: scope = scope-token *( SP scope-token ), scope-token = 1*NQCHAR.
_SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")


@dataclass(frozen=True)
class Grants:
    subject: str
    letters: dict[str, frozenset[str]] = field(default_factory=dict)  # type -> c r u d s
    permissions: frozenset[str] = frozenset()
    scopes: tuple[Scope, ...] = ()
    claim: str = ""  # the scope claim as the token carried it (kept with a Subscription)
    expires: float | None = None  # the token's exp (seconds since the epoch)

    @cached_property
    def access(self) -> Access:
        """What reads, searches, includes and chains may see."""
        return self.access_for("rs")

    def access_for(self, letters: str) -> Access:
        """The store's view for an interaction needing one of `letters`: restricted
        patients, granular-scope narrowing per record kind, and payer scoping."""
        narrowed = []
        for resource_type, search in SEARCHES.items():
            queries = self.narrowing(resource_type, letters)
            if queries:
                alternatives = tuple(scope_conditions(resource_type, q) for q in queries)
                narrowed.append(Narrowing(search.kind, alternatives))
        payer = self.narrowing("Coverage", letters)
        return Access(
            restricted_patients=PATIENT_BLOCKED in self.permissions,
            narrowed=tuple(narrowed),
            coverage_members=bool(payer)
            and all(any(name.partition(":")[0] == PAYER_PARAM for name, _ in q) for q in payer),
        )

    def narrowing(
        self, resource_type: str, letters: str
    ) -> tuple[tuple[tuple[str, str], ...], ...]:
        """The queries a record must match one of, for an interaction needing one of
        `letters`: empty when some scope grants it without a query (scopes add up)."""
        queries = []
        for scope in self.scopes:
            if scope.covers(resource_type) and scope.letters & set(letters):
                if not scope.query:
                    return ()
                queries.append(scope.query)
        return tuple(queries)

    def allows(self, resource_type: str, letter: str) -> bool:
        return any(letter in self.letters.get(key, frozenset()) for key in (resource_type, "*"))

    def require(self, resource_type: str, letter: str) -> None:
        if not self.allows(resource_type, letter):
            words = {"c": "create", "r": "read", "u": "update", "d": "delete", "s": "search"}
            raise PermissionRequired(
                f"the token's scopes do not allow {words[letter]} on {resource_type} "
                f"(needs e.g. user/{resource_type}.{letter})"
            )

    def authorize(self, resource_type: str, letter: str, permission: str | None = None) -> None:
        """The scope for `letter` on the type, and the permission the type needs on top
        (the audit trail's `__audit.read`), or Forbidden."""
        self.require(resource_type, letter)
        if permission is not None:
            self.require_permission(permission)

    def require_permission(self, permission: str) -> None:
        if permission not in self.permissions:
            raise PermissionRequired(
                f"this needs the {PERMISSION_SCOPES[permission]!r} permission (scope {permission})"
            )


def ssn_hasher(settings: Settings) -> SsnHasher:
    """SSN keys from FHIR_FACADE_SSN_KEYS, else one kept in the instance folder."""
    if settings.ssn_keys:
        keys = []
        for item in settings.ssn_keys.split(","):
            key_id, _, secret = item.strip().partition(":")
            if not key_id or len(secret) < 16:
                raise ValueError("FHIR_FACADE_SSN_KEYS: use keyid:secret with 16+ characters")
            keys.append(SsnKey(key_id, secret.encode()))
        return SsnHasher(keys)
    secret = instance_secret(settings.instance_path, "ssn-key")
    return SsnHasher([SsnKey("local", secret.encode())])


def scope_tokens(scope: str) -> list[str]:
    """The scope claim's tokens, separated by the space character (0x20) alone.

    A claim holding anything else (another kind of whitespace such as U+00A0, U+3000
    or U+001F, a control character, non-ASCII) is not an RFC 6749 scope: the token is
    refused (401) rather than guessed at, since a lenient split could turn
    `x\u00a0__patient.blocked` into a permission. Repeated spaces are tolerated.
    """
    tokens = [item for item in scope.split(" ") if item]
    for item in tokens:
        if not _SCOPE_TOKEN.fullmatch(item):
            raise AuthError(
                "the token's scope claim is not a list of RFC 6749 scope tokens separated "
                f"by spaces: {item.encode('unicode_escape').decode()!r}"
            )
    return tokens


def grants_from_scopes(subject: str, scope: str) -> Grants:
    letters: dict[str, set[str]] = {}
    permissions: set[str] = set()
    scopes: list[Scope] = []
    for item in scope_tokens(scope):
        if item in PERMISSION_SCOPES:
            permissions.add(item)
            continue
        parsed = parse_scope(item)
        if parsed is None:
            continue
        scopes.append(parsed)
        letters.setdefault(parsed.resource_type, set()).update(parsed.letters)
    return Grants(
        subject,
        {k: frozenset(v) for k, v in letters.items()},
        frozenset(permissions),
        tuple(scopes),
        " ".join(scope_tokens(scope)),
    )


def unknown_scopes(scope: str, resource_types: Collection[str]) -> list[str]:
    """The scopes in `scope` that would grant nothing here: not a permission, not a
    user/ or system/ scope on a type we serve (`patient/` needs a launch context we
    do not offer)."""
    unknown = []
    for item in (item for item in scope.split(" ") if item):  # split as verify splits
        if not _SCOPE_TOKEN.fullmatch(item):
            unknown.append(item)
            continue
        parsed = parse_scope(item)  # None also for a granular query we cannot honour
        known = item in PERMISSION_SCOPES or (
            parsed is not None and parsed.resource_type in {"*", *resource_types}
        )
        if not known:
            unknown.append(item)
    return unknown


#: Tokens a process keeps verified: a staff app or an EHR sends the same token with
#: every request, and checking its signature and claims and parsing its scopes cost
#: as much as a week view's SQL.
VERIFIED_TOKENS = 1024
#: A kept token is checked again at least this often (seconds), so a signing key the
#: identity provider withdraws stops its tokens as soon as the JWKS client notices.
RECHECK_SECONDS = 60.0


class TokenService:
    """Verifies tokens: a local HS256 key (dev/demo) or an issuer's JWKS (production)."""

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self._clock = clock
        self._jwks: Any = None
        self._secret: str | None = None
        #: token -> (until when it stands without a new check, its grants)
        self._verified: dict[str, tuple[float, Grants]] = {}
        if settings.jwks_url:
            self._jwks = jwt.PyJWKClient(settings.jwks_url, cache_keys=True)
        else:
            self._secret = settings.jwt_secret or instance_secret(
                settings.instance_path, "jwt-secret"
            )

    def verify(self, header: str | None) -> Grants:
        """The grants of a bearer token. A token verified lately stands until the earlier
        of its expiry (`exp`, which PyJWT also enforces: valid while now < exp) and
        `RECHECK_SECONDS` after its last check; only tokens that passed are kept."""
        if not header or not header.startswith("Bearer "):
            raise AuthError("a bearer token is required (Authorization: Bearer <token>)")
        token = header.removeprefix("Bearer ").strip()
        now = self._clock()
        kept = self._verified.get(token)
        if kept is not None and now < kept[0]:
            return kept[1]
        claims = self._decode(token)
        grants = replace(
            grants_from_scopes(str(claims["sub"]), str(claims.get("scope", ""))),
            expires=float(claims["exp"]),
        )
        if len(self._verified) >= VERIFIED_TOKENS:
            self._verified.clear()  # the tokens in use come back at their next request
        self._verified[token] = (min(float(claims["exp"]), now + RECHECK_SECONDS), grants)
        return grants

    def _decode(self, token: str) -> dict[str, Any]:
        options: Any = {"require": ["exp", "sub"]}
        try:
            if self._jwks is not None:
                key: Any = self._jwks.get_signing_key_from_jwt(token).key
                algorithms = ["RS256", "ES256", "PS256"]
            else:
                key, algorithms = self._secret, ["HS256"]
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=algorithms,
                issuer=self.settings.jwt_issuer,
                audience=self.settings.jwt_audience,
                options=options,
            )
        except jwt.PyJWTError as exc:
            raise AuthError(f"the bearer token is not valid: {exc}") from None
        return claims

    def mint(self, subject: str, scope: str, lifetime: dt.timedelta) -> str:
        """Sign a development token with the local key."""
        if self._secret is None:
            raise RuntimeError("tokens are issued by the configured identity provider (JWKS)")
        now = dt.datetime.now(dt.UTC)
        claims: dict[str, Any] = {
            "iss": self.settings.jwt_issuer,
            "sub": subject,
            "scope": scope,
            "iat": now,
            "exp": now + lifetime,
        }
        if self.settings.jwt_audience:
            claims["aud"] = self.settings.jwt_audience
        return jwt.encode(claims, self._secret, algorithm="HS256")


def instance_secret(instance_path: Path, name: str) -> str:
    """A secret kept in the instance folder, created on first use (mode 600; first writer
    wins, so processes starting together agree)."""
    path = instance_path / name
    if not path.exists():
        instance_path.mkdir(parents=True, exist_ok=True)
        tmp = instance_path / f".{name}.{secrets.token_hex(8)}"
        tmp.write_text(secrets.token_urlsafe(48))
        tmp.chmod(0o600)
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
        tmp.unlink()
    return path.read_text().strip()
