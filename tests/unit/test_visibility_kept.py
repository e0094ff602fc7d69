"""Visibility clauses are built once per kind of caller without granular scopes, and
afresh for a token with them (whose shapes are as many as its tokens' queries)."""

from __future__ import annotations

from store.access import PRIVACY_OFFICER, STAFF, Access, Narrowing
from store.models import Coverage, Patient
from store.search import AnyOf, Condition
from store.visibility import visibility


def test_a_caller_without_granular_scopes_gets_the_clause_built_once():
    assert visibility(Patient, STAFF) is visibility(Patient, Access(restricted_patients=False))
    assert visibility(Patient, STAFF) is not visibility(Patient, PRIVACY_OFFICER)
    assert visibility(Coverage, STAFF) is not visibility(Patient, STAFF)


def test_a_token_with_granular_scopes_gets_its_clause_built_each_time():
    payor = AnyOf((Condition("payor", "eq", ("organization", "org-1")),))
    payer = Access(narrowed=(Narrowing(Coverage, ((payor,),)),), coverage_members=True)
    first, second = visibility(Patient, payer), visibility(Patient, payer)
    assert first is not second
    assert str(first) == str(second)
