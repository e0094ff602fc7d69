"""SMART scopes, permission scopes and bearer tokens (fhir_facade.auth)."""

from __future__ import annotations

import datetime as dt
import time

import jwt
import pytest

from fhir_facade.auth import (
    PATIENT_BLOCKED,
    RECHECK_SECONDS,
    SCHEDULE_MANAGE,
    Grants,
    TokenService,
    grants_from_scopes,
)
from fhir_facade.config import Settings
from fhir_facade.oauth import granted_scopes
from fhir_facade.outcomes import AuthError
from store.errors import PermissionRequired

SECRET = "unit-test-signing-key-0123456789-abcdefghijklmnop"
OTHER_SECRET = "another-signing-key-9876543210-zyxwvutsrqponmlkj"
HOUR = dt.timedelta(hours=1)


def rights(grants: Grants, resource_type: str) -> str:
    return "".join(letter for letter in "cruds" if grants.allows(resource_type, letter))


def grants(scope: str) -> Grants:
    return grants_from_scopes("tester", scope)


# -- scopes ---------------------------------------------------------------------------


def test_smart_v2_cruds_grants_every_interaction_on_that_type_only():
    granted = grants("user/Appointment.cruds")
    assert rights(granted, "Appointment") == "cruds"
    assert rights(granted, "Slot") == ""


def test_smart_v2_rs_grants_read_and_search_only():
    assert rights(grants("user/Slot.rs"), "Slot") == "rs"


def test_scopes_add_up():
    granted = grants("user/Slot.rs user/Slot.u openid fhirUser")
    assert rights(granted, "Slot") == "rus"


@pytest.mark.parametrize(
    ("scope", "expected"),
    [("user/Patient.read", "rs"), ("user/Patient.write", "cud"), ("user/Patient.*", "cruds")],
)
def test_smart_v1_scopes_translate_to_v2_letters(scope, expected):
    assert rights(grants(scope), "Patient") == expected


@pytest.mark.parametrize("separator", ["\u00a0", "\u3000", "\u001f", "\t", "\n", "\u2028"])
def test_a_scope_claim_split_on_anything_but_a_space_is_refused(separator):
    # RFC 6749 §3.3: scope tokens are separated by 0x20 alone; a lenient split would
    # read "x<U+00A0>__patient.blocked" as the privacy permission.
    with pytest.raises(AuthError, match="RFC 6749"):
        grants(f"user/Patient.rs x{separator}__patient.blocked")


@pytest.mark.parametrize("token", ["__patient.blocked\u00e9", 'user/Patient.rs"', "user\\Slot.rs"])
def test_a_scope_token_outside_rfc_6749_characters_is_refused(token):
    with pytest.raises(AuthError):
        grants(token)


def test_scope_tokens_separated_by_several_spaces_are_understood():
    granted = grants("  user/Slot.rs   __patient.blocked ")
    assert rights(granted, "Slot") == "rs"
    assert granted.access.restricted_patients


def test_a_wildcard_type_applies_to_every_resource_type():
    granted = grants("user/*.rs")
    assert rights(granted, "Patient") == "rs"
    assert rights(granted, "Appointment") == "rs"


def test_system_scopes_grant_like_user_scopes():
    assert rights(grants("system/Appointment.cruds"), "Appointment") == "cruds"
    assert rights(grants("system/*.read"), "Slot") == "rs"


def test_patient_scopes_grant_nothing_without_a_launch_context():
    granted = grants("patient/Appointment.cruds patient/*.read")
    assert rights(granted, "Appointment") == ""
    assert granted.letters == {}


@pytest.mark.parametrize(
    "scope", ["user/appointment.rs", "user/Slot.x", "user/Slot", "Slot.rs", "user/Slot.rs?x=1"]
)
def test_malformed_scopes_grant_nothing(scope):
    assert rights(grants(scope), "Slot") == ""


def test_without_permission_scopes_there_are_no_permissions():
    granted = grants("user/*.cruds")
    assert granted.permissions == frozenset()
    assert granted.access.restricted_patients is False


def test_the_schedule_manage_scope_is_a_permission():
    granted = grants(f"user/Slot.rs {SCHEDULE_MANAGE}")
    assert granted.permissions == {SCHEDULE_MANAGE}
    granted.require_permission(SCHEDULE_MANAGE)


def test_the_patient_blocked_scope_opens_restricted_patients():
    granted = grants(f"user/Patient.rs {PATIENT_BLOCKED}")
    assert granted.access.restricted_patients is True


def test_require_passes_when_the_scope_allows():
    grants("user/Appointment.cruds").require("Appointment", "c")


def test_require_refuses_a_missing_letter_with_forbidden():
    with pytest.raises(PermissionRequired, match="create on Slot"):
        grants("user/Slot.rs").require("Slot", "c")


def test_require_permission_refuses_without_the_permission_scope():
    with pytest.raises(PermissionRequired, match=SCHEDULE_MANAGE):
        grants("user/*.cruds").require_permission(SCHEDULE_MANAGE)


# -- tokens ---------------------------------------------------------------------------


@pytest.fixture
def settings(tmp_path):
    return Settings(instance_path=tmp_path, jwt_secret=SECRET)


@pytest.fixture
def tokens(settings):
    return TokenService(settings)


def bearer(token: str) -> str:
    return f"Bearer {token}"


def test_a_minted_token_verifies_to_its_subject_and_scopes(tokens):
    token = tokens.mint("dr-rivera", f"user/Slot.rs {SCHEDULE_MANAGE}", HOUR)
    verified = tokens.verify(bearer(token))
    assert verified.subject == "dr-rivera"
    assert rights(verified, "Slot") == "rs"
    assert verified.permissions == {SCHEDULE_MANAGE}


def test_a_token_with_an_audience_verifies_when_the_audience_is_configured(tmp_path):
    service = TokenService(
        Settings(instance_path=tmp_path, jwt_secret=SECRET, jwt_audience="http://x/fhir")
    )
    assert service.verify(bearer(service.mint("me", "user/*.rs", HOUR))).subject == "me"


def test_an_expired_token_is_refused(tokens):
    token = tokens.mint("me", "user/*.rs", -dt.timedelta(seconds=10))
    with pytest.raises(AuthError, match="expired"):
        tokens.verify(bearer(token))


def test_a_token_signed_with_another_key_is_refused(tmp_path, tokens):
    forger = TokenService(Settings(instance_path=tmp_path, jwt_secret=OTHER_SECRET))
    with pytest.raises(AuthError):
        tokens.verify(bearer(forger.mint("me", "user/*.cruds", HOUR)))


def test_a_token_from_another_issuer_is_refused(tmp_path, tokens):
    other = TokenService(
        Settings(instance_path=tmp_path, jwt_secret=SECRET, jwt_issuer="someone-else")
    )
    with pytest.raises(AuthError):
        tokens.verify(bearer(other.mint("me", "user/*.cruds", HOUR)))


def test_a_token_without_subject_is_refused(tokens):
    expires = dt.datetime.now(dt.UTC) + HOUR
    token = jwt.encode(
        {"iss": "fhir-facade-dev", "scope": "user/*.rs", "exp": expires}, SECRET, algorithm="HS256"
    )
    with pytest.raises(AuthError):
        tokens.verify(bearer(token))


def test_an_unsigned_token_is_refused(tokens):
    expires = dt.datetime.now(dt.UTC) + HOUR
    token = jwt.encode(
        {"iss": "fhir-facade-dev", "sub": "me", "exp": expires}, None, algorithm="none"
    )
    with pytest.raises(AuthError):
        tokens.verify(bearer(token))


@pytest.mark.parametrize(
    "header", [None, "", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Bearer not.a.jwt", "x.y.z"]
)
def test_a_missing_or_garbled_authorization_header_is_refused(tokens, header):
    with pytest.raises(AuthError):
        tokens.verify(header)


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def counting_decodes(monkeypatch) -> list[str]:
    decoded: list[str] = []
    real = jwt.decode

    def decode(token, *args, **kwargs):
        decoded.append(token)
        return real(token, *args, **kwargs)

    monkeypatch.setattr(jwt, "decode", decode)
    return decoded


def test_a_token_used_again_is_not_checked_again_within_the_recheck_time(settings, monkeypatch):
    clock = Clock()
    service = TokenService(settings, clock)
    token = service.mint("me", "user/Slot.rs", HOUR)
    decoded = counting_decodes(monkeypatch)
    first = service.verify(bearer(token))
    clock.now += RECHECK_SECONDS - 1
    assert service.verify(bearer(token)) is first
    assert len(decoded) == 1
    clock.now += 2
    assert service.verify(bearer(token)).subject == "me"
    assert len(decoded) == 2


def test_a_token_verified_before_is_refused_once_it_expires(tokens):
    token = tokens.mint("me", "user/*.rs", dt.timedelta(seconds=3))
    assert tokens.verify(bearer(token)).subject == "me"
    time.sleep(3.1)
    with pytest.raises(AuthError, match="expired"):
        tokens.verify(bearer(token))


def test_a_refused_token_is_checked_again_each_time(tokens, monkeypatch):
    forged = bearer(tokens.mint("me", "user/*.rs", HOUR) + "x")
    decoded = counting_decodes(monkeypatch)
    for _ in range(2):
        with pytest.raises(AuthError):
            tokens.verify(forged)
    assert len(decoded) == 2


def test_a_token_without_scope_grants_nothing(tokens):
    verified = tokens.verify(bearer(tokens.mint("me", "", HOUR)))
    assert verified.letters == {}
    assert verified.permissions == frozenset()


# -- SMART v2 granular scopes ---------------------------------------------------------


def test_a_granular_scope_keeps_its_query_and_grants_its_letters():
    granted = grants("system/Coverage.rs?payor=Organization/payer-x&status=active")
    assert rights(granted, "Coverage") == "rs"
    assert granted.narrowing("Coverage", "rs") == (
        (("payor", "Organization/payer-x"), ("status", "active")),
    )


def test_an_unrestricted_scope_for_the_same_letters_lifts_the_narrowing():
    granted = grants("user/Slot.rs?schedule=Schedule/a user/Slot.s")
    assert granted.narrowing("Slot", "rs") == ()
    assert granted.narrowing("Slot", "u") == ()  # nothing grants u: nothing to narrow


def test_two_queries_on_one_type_are_alternatives():
    granted = grants("user/Slot.rs?schedule=Schedule/a user/Slot.rs?schedule=Schedule/b")
    assert len(granted.narrowing("Slot", "rs")) == 2
    assert len(granted.access.narrowed[0].alternatives) == 2


def test_a_token_whose_coverage_scopes_all_name_a_payor_is_a_payers():
    assert grants("system/Coverage.rs?payor=Organization/x").access.coverage_members
    assert not grants("system/Coverage.rs?status=active").access.coverage_members
    mixed = grants("system/Coverage.rs?payor=Organization/x system/Coverage.rs?status=active")
    assert not mixed.access.coverage_members
    assert not grants("system/Coverage.rs").access.coverage_members


@pytest.mark.parametrize(
    "scope",
    [
        "user/Slot.rs?nonsense=1",
        "user/Slot.rs?_count=5",
        "user/Slot.rs?schedule.name=x",
        "user/Slot.rs?start=someday",
        "user/Slot.rs?schedule",
        "user/*.rs?_id=x",
        "user/Unknown.rs?_id=x",
    ],
)
def test_a_granular_scope_we_cannot_honour_grants_nothing(scope):
    assert rights(grants(scope), "Slot") == ""
    assert grants(scope).scopes == ()


@pytest.mark.parametrize(
    ("asked", "registered", "granted"),
    [
        ("system/Slot.rs", "system/Slot.rs", "system/Slot.rs"),
        ("system/Slot.r", "system/Slot.cruds", "system/Slot.r"),
        ("system/Slot.rs", "system/*.rs", "system/Slot.rs"),
        ("system/Slot.cruds", "system/Slot.rs", ""),
        ("user/Slot.rs", "system/Slot.rs", ""),
        (
            "system/Coverage.rs?payor=Organization/x",
            "system/Coverage.rs",
            "system/Coverage.rs?payor=Organization/x",
        ),
        ("system/Coverage.rs", "system/Coverage.rs?payor=Organization/x", ""),
        ("system/Coverage.rs?payor=Organization/y", "system/Coverage.rs?payor=Organization/x", ""),
        (
            f"{PATIENT_BLOCKED} system/Slot.rs",
            f"system/Slot.rs {PATIENT_BLOCKED}",
            f"{PATIENT_BLOCKED} system/Slot.rs",
        ),
        (SCHEDULE_MANAGE, "system/*.cruds", ""),
        ("openid fhirUser system/Slot.rs system/Slot.rs", "system/Slot.rs", "system/Slot.rs"),
    ],
)
def test_the_scopes_granted_are_those_asked_that_the_registration_covers(
    asked, registered, granted
):
    assert granted_scopes(asked, registered) == granted
