"""Small pieces every use case needs: ids and the visibility of patients."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from store.access import Access
from store.models import Patient
from store.search import visibility


def new_id() -> str:
    return uuid.uuid4().hex


def visible_patient(db: Session, patient_id: str, access: Access) -> bool:
    """True when the patient exists and the caller may see them (store.search.visibility:
    restriction, granular scopes, a payer's members)."""
    seen = db.scalar(
        select(Patient.id).where(Patient.id == patient_id, visibility(Patient, access))
    )
    return seen is not None
