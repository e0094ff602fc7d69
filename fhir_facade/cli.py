"""Command line: `fhir-facade demo | serve | token | client add | db upgrade | db load-demo`.

Commands are registered on the app (Flask CLI); `main` is the console entry point.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any

import click
from flask import Flask, current_app
from flask.cli import FlaskGroup, with_appcontext

from fhir_facade.auth import PERMISSION_SCOPES, parse_scope
from fhir_facade.context import database, tokens
from fhir_facade.oauth import validate_jwks
from store.clients import ClientSpec, register_client
from store.demo import load_demo
from store.migrate import upgrade

DEMO_SCOPE = (
    "user/Patient.cruds user/Appointment.cruds user/Slot.cruds user/Coverage.cruds "
    "user/Schedule.rs user/Practitioner.rs user/Location.rs user/Organization.rs "
    "__schedule.manage"
)


def register_commands(app: Flask) -> None:
    app.cli.add_command(demo_command)
    app.cli.add_command(serve_command)
    app.cli.add_command(token_command)
    app.cli.add_command(client_group)
    app.cli.add_command(db_group)


@click.group("db", help="Database schema and data.")
def db_group() -> None:
    pass


@db_group.command("upgrade", help="Apply the schema migrations (creates the database).")
@with_appcontext
def db_upgrade() -> None:
    upgrade(database().engine)
    click.echo(f"schema up to date: {_safe_url()}")


@db_group.command("load-demo", help="Load the demo clinic into an empty database.")
@with_appcontext
def db_load_demo() -> None:
    upgrade(database().engine)
    loaded = database().write(lambda db: load_demo(db))
    click.echo("demo clinic loaded" if loaded else "data present; demo not loaded")


@click.command("token", help="Mint a development token signed with the instance's key.")
@click.option("--scope", default=DEMO_SCOPE, show_default=True)
@click.option("--subject", default="staff-demo", show_default=True)
@click.option("--hours", default=12, show_default=True, type=int)
@with_appcontext
def token_command(scope: str, subject: str, hours: int) -> None:
    click.echo(tokens().mint(subject, scope, dt.timedelta(hours=hours)))


@click.group("client", help="System clients of the token service (SMART Backend Services).")
def client_group() -> None:
    pass


@client_group.command(
    "add", help="Register a client (or replace its keys and scopes) with its public JWK Set."
)
@click.argument("client_id")
@click.option(
    "--jwks",
    "jwks_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="file holding the client's public JWK Set (RS384/ES384 keys)",
)
@click.option("--jwks-url", help="or: the URL the client publishes its JWK Set at (jku)")
@click.option("--scope", required=True, help='scopes it may be granted, e.g. "system/Slot.rs"')
@with_appcontext
def client_add(client_id: str, jwks_file: Path | None, jwks_url: str | None, scope: str) -> None:
    if (jwks_file is None) == (jwks_url is None):
        raise click.UsageError("give exactly one of --jwks FILE and --jwks-url URL")
    unknown = [s for s in scope.split() if s not in PERMISSION_SCOPES and parse_scope(s) is None]
    if unknown or not scope.split():
        raise click.BadParameter(f"not scopes we grant: {' '.join(unknown)}", param_hint="--scope")
    try:
        jwks = validate_jwks(jwks_file.read_text()) if jwks_file is not None else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--jwks") from None
    upgrade(database().engine)
    spec = ClientSpec(client_id, " ".join(scope.split()), jwks, jwks_url)
    database().write(lambda db: register_client(db, spec))
    click.echo(f"client {client_id} registered for: {spec.scope}")


@click.command("serve", help="Serve the API with gunicorn (production-style).")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=int)
@click.option("--workers", default=lambda: int(os.environ.get("FHIR_FACADE_WORKERS", 2)), type=int)
@click.option("--threads", default=lambda: int(os.environ.get("FHIR_FACADE_THREADS", 8)), type=int)
@with_appcontext
def serve_command(host: str, port: int, workers: int, threads: int) -> None:
    upgrade(database().engine)
    _gunicorn(host, port, workers, threads)


@click.command("demo", help="Create the demo clinic (SQLite by default), print a token, serve.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=int)
@with_appcontext
def demo_command(host: str, port: int) -> None:
    upgrade(database().engine)
    loaded = database().write(lambda db: load_demo(db))
    everything = f"{DEMO_SCOPE} __patient.blocked user/AuditEvent.rs __audit.read"
    token = tokens().mint("staff-demo", everything, dt.timedelta(hours=12))
    base = f"http://{host}:{port}/fhir"
    click.echo(
        f"\nfhir-facade demo on {base}  (database: {_safe_url()}; "
        f"{'demo clinic loaded' if loaded else 'existing data kept'})\n\n"
        f"Staff app: http://{host}:{port}/app/  (sign in as one of the demo staff users)\n\n"
        f"Bearer token (12 h, all demo scopes):\n\n  export TOKEN={token}\n\n"
        "Try:\n"
        f'  curl -H "Authorization: Bearer $TOKEN" \\\n'
        f'       "{base}/Schedule?actor=Practitioner/prac-rivera"\n'
    )
    _gunicorn(host, port, workers=2, threads=8)


def _safe_url() -> str:
    url = database().engine.url
    return str(url.render_as_string(hide_password=True))


def _gunicorn(host: str, port: int, workers: int, threads: int) -> None:
    from gunicorn.app.base import BaseApplication

    app = current_app._get_current_object()  # type: ignore[attr-defined]
    database().dispose()  # each worker opens its own connections after the fork

    class Server(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            self.cfg.set("bind", f"{host}:{port}")
            self.cfg.set("workers", workers)
            self.cfg.set("threads", threads)
            self.cfg.set("worker_class", "gthread")
            self.cfg.set("accesslog", os.environ.get("FHIR_FACADE_ACCESS_LOG") or None)
            self.cfg.set("graceful_timeout", 5)
            # One shared control socket per user would make instances on one host collide.
            if "control_socket_disable" in self.cfg.settings:
                self.cfg.set("control_socket_disable", True)

        def load(self) -> Any:
            return app

    Server().run()


def main() -> None:
    from fhir_facade import create_app

    cli = FlaskGroup(create_app=lambda: create_app(), add_default_commands=False)
    cli.add_command(demo_command)
    cli.add_command(serve_command)
    cli.add_command(token_command)
    cli.add_command(client_group)
    cli.add_command(db_group)
    cli(prog_name="fhir-facade")


if __name__ == "__main__":
    main()
