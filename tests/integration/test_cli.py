"""The command line (issue 12, item 5): our version, our commands only, tokens that
grant what they say, and a demo that fails on a busy port before its banner."""

from __future__ import annotations

import socket
from importlib.metadata import version
from pathlib import Path

import pytest
from click.testing import CliRunner
from flask.cli import ScriptInfo

from fhir_facade import create_app
from fhir_facade.auth import TokenService
from fhir_facade.cli import cli
from fhir_facade.config import Settings
from tests.conftest import TEST_SECRET


@pytest.fixture
def run(tmp_path: Path):
    """Invoke `fhir-facade ARGS` in-process on an app of its own (SQLite in tmp_path)."""

    def invoke(*args: str):
        info = ScriptInfo(
            create_app=lambda: create_app(
                {"instance_path": tmp_path / "instance", "jwt_secret": TEST_SECRET}
            )
        )
        return CliRunner().invoke(cli, list(args), obj=info, prog_name="fhir-facade")

    return invoke


def test_version_prints_the_package_version(run):
    result = run("--version")

    assert result.exit_code == 0
    assert result.output == f"fhir-facade, version {version('fhir-facade')}\n"


def test_help_lists_our_commands_and_no_flask_options(run):
    result = run("--help")

    assert result.exit_code == 0
    commands = result.output.split("Commands:")[1].split()
    assert {"demo", "serve", "token", "import", "sweep-offers", "db"} <= set(commands)
    for flask_only in ("--env-file", "--app", "--debug", "openapi", "routes", "shell", "Flask"):
        assert flask_only not in result.output


def test_a_token_grants_the_scopes_asked_for(run):
    result = run("token", "--scope", "user/Slot.rs __schedule.manage", "--hours", "1")

    assert result.exit_code == 0, result.output
    grants = TokenService(Settings(jwt_secret=TEST_SECRET)).verify(
        f"Bearer {result.output.strip()}"
    )
    assert grants.allows("Slot", "s") and "__schedule.manage" in grants.permissions


@pytest.mark.parametrize(
    ("scope", "named"),
    [
        ("user/Slot.rs user/Spaceship.rs", "user/Spaceship.rs"),
        ("__schedule.manage __everything", "__everything"),
        ("patient/Appointment.rs", "patient/Appointment.rs"),
        ("openid", "openid"),
    ],
)
def test_a_token_with_an_unknown_scope_is_refused(run, scope, named):
    result = run("token", "--scope", scope)

    assert result.exit_code == 2
    assert f"unknown scope(s): {named}" in result.output
    assert "eyJ" not in result.output  # no token printed


@pytest.mark.parametrize("hours", ["0", "-3"])
def test_a_token_for_no_time_or_negative_time_is_refused(run, hours):
    result = run("token", "--hours", hours)

    assert result.exit_code == 2
    assert "--hours" in result.output and "eyJ" not in result.output


def test_a_second_demo_on_a_busy_port_fails_before_its_banner(run):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]

        result = run("demo", "--port", str(port))

    assert result.exit_code == 1
    assert f"cannot serve on 127.0.0.1:{port}" in result.output
    assert "export TOKEN" not in result.output and "fhir-facade demo on" not in result.output


def test_sweep_offers_passes_lapsed_offers_on_and_says_how_many(run):
    run("db", "upgrade")

    result = run("sweep-offers")

    assert result.exit_code == 0, result.output
    assert result.output == "0 lapsed offer(s) passed on\n"


def test_serve_freezes_the_apps_objects_before_its_workers_fork(run, monkeypatch):
    """Out of the collector's sight, the app's ~150,000 lasting objects cost a full
    collection nothing (it took ~100 ms a few times a minute under load), and forked
    workers share their pages."""
    import gc

    from gunicorn.app.base import BaseApplication

    frozen_at_start: list[int] = []
    monkeypatch.setattr(
        BaseApplication, "run", lambda _self: frozen_at_start.append(gc.get_freeze_count())
    )
    try:
        result = run("serve", "--port", "0")
    finally:
        gc.unfreeze()

    assert result.exit_code == 0, result.output
    assert frozen_at_start and frozen_at_start[0] > 10_000
