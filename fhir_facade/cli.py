"""Command line: `fhir-facade demo | serve | token | db upgrade | db load-demo`.

Commands are registered on the app (Flask CLI); `main` is the console entry point.
"""

from __future__ import annotations

import datetime as dt
import os
from typing import Any

import click
from flask import Flask, current_app
from flask.cli import FlaskGroup, with_appcontext

from fhir_facade.context import database, tokens
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
    cli.add_command(db_group)
    cli(prog_name="fhir-facade")


if __name__ == "__main__":
    main()
