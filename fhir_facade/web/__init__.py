"""The staff scheduling app at /app/: static files, and the demo sign-in.

The app itself (static/) speaks only the public /fhir API with the signed-in user's
bearer token. This blueprint serves its files, tells it how to sign in
(`config.json`), and, only while the instance signs its own tokens (no
FHIR_FACADE_JWKS_URL), offers the demo staff users at `/app/sign-in`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import Blueprint, Flask, Response, jsonify, request, send_from_directory

from fhir_facade.auth import PATIENT_BLOCKED, SCHEDULE_MANAGE
from fhir_facade.config import Settings
from fhir_facade.context import tokens
from fhir_facade.outcomes import BadRequest

STATIC = Path(__file__).with_name("static")
TOKEN_LIFETIME = dt.timedelta(hours=8)

# What a scheduler's screens read and write: calendars, patients and their plans,
# bookings (drafts resolved and cancelled by update), a self-pay Coverage when needed.
APP_SCOPE = (
    "user/Organization.rs user/Location.rs user/Practitioner.rs user/Schedule.rs "
    "user/Slot.rs user/Patient.rs user/Coverage.crs user/Appointment.crus"
)


@dataclass(frozen=True)
class StaffUser:
    """A demo sign-in identity (not FHIR data): who the token names and what it grants."""

    id: str
    name: str
    role: str
    scope: str

    def public(self) -> dict[str, str]:
        return {"id": self.id, "name": self.name, "role": self.role, "scope": self.scope}


DEMO_USERS = (
    StaffUser("sam.ortiz", "Sam Ortiz", "Scheduler", APP_SCOPE),
    StaffUser(
        "alex.morgan",
        "Alex Morgan",
        "Schedule admin (Manage Appointments)",
        f"{APP_SCOPE} user/Slot.c {SCHEDULE_MANAGE}",
    ),
    StaffUser(
        "priya.shah",
        "Priya Shah",
        "Scheduler with access to blocked patients",
        f"{APP_SCOPE} {PATIENT_BLOCKED}",
    ),
)


def register(app: Flask, settings: Settings) -> None:
    """Serve the app; add the demo sign-in only while the instance's dev key signs tokens."""
    blp = Blueprint("staff_app", __name__, url_prefix="/app")
    dev_sign_in = not settings.jwks_url

    @blp.get("/")
    def index() -> Response:
        return _static("index.html")

    @blp.get("/<path:name>")
    def asset(name: str) -> Response:
        return _static(name)

    @blp.get("/config.json")
    def config() -> Response:
        body: dict[str, Any] = {
            "signIn": "demo" if dev_sign_in else "identity-provider",
            "clientId": settings.app_client_id,
            "scope": f"openid fhirUser {APP_SCOPE} {SCHEDULE_MANAGE} {PATIENT_BLOCKED}",
        }
        return _no_store(jsonify(body))

    if dev_sign_in:

        @blp.get("/sign-in")
        def users() -> Response:
            return _no_store(jsonify({"users": [user.public() for user in DEMO_USERS]}))

        @blp.post("/sign-in")
        def sign_in() -> Response:
            user = _chosen_user()
            token = tokens().mint(user.id, user.scope, TOKEN_LIFETIME)
            body = {
                "access_token": token,
                "token_type": "Bearer",
                "expires_in": int(TOKEN_LIFETIME.total_seconds()),
                "scope": user.scope,
                "user": user.public(),
            }
            return _no_store(jsonify(body))

    app.register_blueprint(blp)


def _chosen_user() -> StaffUser:
    payload: Any = request.get_json(silent=True) if request.is_json else request.form
    wanted = payload.get("user") if hasattr(payload, "get") else None
    for user in DEMO_USERS:
        if user.id == wanted:
            return user
    known = ", ".join(user.id for user in DEMO_USERS)
    raise BadRequest(f"unknown demo user; choose one of {known}", expression="user")


def _static(name: str) -> Response:
    response = send_from_directory(STATIC, name, max_age=0)
    if name.endswith(".mjs"):
        response.mimetype = "text/javascript"
    return response


def _no_store(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    return response
