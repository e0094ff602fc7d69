"""Command line: `fhir-facade demo | serve | token | client add | import | sweep-offers |
db upgrade | db load-demo`.

Commands are registered on the app (Flask CLI, for tests); `main` is the console entry
point: our commands only, each run in an app built by `create_app`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
import os
import signal
import socket
import sys
import threading
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import click
import orjson
from flask import Flask, current_app, g
from flask.cli import ScriptInfo, with_appcontext
from sqlalchemy.exc import IntegrityError

from fhir_facade.auth import grants_from_scopes, unknown_scopes
from fhir_facade.context import database, settings, tokens
from fhir_facade.http import FHIR_JSON
from fhir_facade.importer import CREATED, UPDATED, ImportReport, import_items, read_items
from fhir_facade.notify.conformance import RESOURCE_TYPE as SUBSCRIPTION
from fhir_facade.notify.delivery import Deliverer, delivery_settings
from fhir_facade.oauth import validate_jwks
from fhir_facade.registry import RESOURCE_TYPES
from mappings.outcome import issue, operation_outcome
from store.access import PRIVACY_OFFICER
from store.clients import ClientSpec, register_client, remove_client
from store.demo import extend_demo, load_demo
from store.migrate import upgrade

DEMO_SCOPE = (
    "user/Patient.cruds user/Appointment.cruds user/Slot.cruds user/Coverage.cruds "
    "user/Schedule.cruds user/Practitioner.cruds user/Location.cruds user/Organization.cruds "
    "user/Subscription.cruds __schedule.manage"
)


IMPORT_SCOPE = "user/*.cruds __schedule.manage __patient.blocked"
#: Files with more resources than this show a progress bar on a terminal.
PROGRESS_FROM = 100


def register_commands(app: Flask) -> None:
    for command in COMMANDS:
        app.cli.add_command(command)


@click.group("db", help="Database schema and data.")
def db_group() -> None:
    pass


@db_group.command("upgrade", help="Apply the schema migrations (creates the database).")
@with_appcontext
def db_upgrade() -> None:
    upgrade(database().engine)
    click.echo(f"schema up to date: {_safe_url()}")


@db_group.command(
    "load-demo",
    help="Load the demo clinic into an empty database; with data present, keep the demo "
    "clinic current (sessions for the weeks ahead).",
)
@click.option(
    "--as-of",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default=None,
    help="Load (or extend) as if today were this date (YYYY-MM-DD).",
)
@with_appcontext
def db_load_demo(as_of: dt.datetime | None) -> None:
    upgrade(database().engine)
    loaded, added = _demo_data(as_of.date() if as_of else None)
    click.echo(_demo_state(loaded, added))


def _demo_data(today: dt.date | None = None) -> tuple[bool, int]:
    """Load the demo clinic into an empty database, or extend the one there."""
    loaded = database().write(lambda db: load_demo(db, today=today))
    return loaded, 0 if loaded else _extend_demo(today)


def _extend_demo(today: dt.date | None = None) -> int:
    """Add the demo clinic's sessions for the weeks ahead (if it is loaded). Instances
    starting together on one PostgreSQL may race to add the same sessions: the loser's
    retry finds them there."""
    try:
        return database().write(lambda db: extend_demo(db, today=today))
    except IntegrityError:
        return database().write(lambda db: extend_demo(db, today=today))


def _demo_state(loaded: bool, added: int) -> str:
    if loaded:
        return "demo clinic loaded"
    if added:
        return f"existing data kept; {added} demo sessions added for the weeks ahead"
    return "existing data kept"


@click.command("token", help="Mint a development token signed with the instance's key.")
@click.option("--scope", default=DEMO_SCOPE, show_default=True)
@click.option("--subject", default="staff-demo", show_default=True)
@click.option("--hours", default=12, show_default=True, type=click.IntRange(min=1))
@with_appcontext
def token_command(scope: str, subject: str, hours: int) -> None:
    unknown = unknown_scopes(scope, [*RESOURCE_TYPES, SUBSCRIPTION])
    if unknown:
        raise click.BadParameter(
            f"unknown scope(s): {', '.join(unknown)} (use user/<Type>.<cruds>, system/..., "
            "user/*.cruds, or a permission: __schedule.manage, __patient.blocked, "
            "__audit.read)",
            param_hint="--scope",
        )
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
    unknown = unknown_scopes(scope, [*RESOURCE_TYPES, SUBSCRIPTION])
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


@client_group.command(
    "remove",
    help="Remove a client: it is issued no new tokens (those issued run out within "
    "minutes), and the subscriptions it created are turned off (the reason recorded).",
)
@click.argument("client_id")
@with_appcontext
def client_remove(client_id: str) -> None:
    upgrade(database().engine)
    turned_off = database().write(lambda db: remove_client(db, client_id))
    if turned_off is None:
        raise click.ClickException(f"no client {client_id!r} is registered")
    click.echo(f"client {client_id} removed; subscriptions turned off: {turned_off}")


@click.command(
    "import",
    help="Import a Bundle or NDJSON (one resource per line). Each resource is matched on its "
    "first identifier: created, updated or left unchanged, so importing again changes "
    "nothing. A refused resource stops nothing else unless --atomic.",
)
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--atomic", is_flag=True, help="All or nothing: one refusal imports nothing.")
@click.option(
    "--progress/--no-progress",
    default=None,
    help=f"Progress bar on stderr (default: on a terminal, for files of {PROGRESS_FROM}+ "
    "resources).",
)
@click.option("--subject", default="import", show_default=True, help="Who the audit trail names.")
@with_appcontext
def import_command(file: Path, atomic: bool, progress: bool | None, subject: str) -> None:
    upgrade(database().engine)
    items = read_items(file.read_text(encoding="utf-8"))
    g.grants = grants_from_scopes(subject, IMPORT_SCOPE)
    if progress is None:
        progress = sys.stderr.isatty() and len(items) >= PROGRESS_FROM
    bar = _Progress(len(items)) if progress else None
    report = import_items(items, g.grants, atomic=atomic, tick=bar.tick if bar else _nothing)
    if bar:
        bar.done()
    _print_report(report)
    if report.refused:
        sys.exit(1)


def _nothing() -> None:
    pass


class _Progress:
    """`import  1234/5000 [#####.....]  24%` on stderr, redrawn at most ten times a second."""

    def __init__(self, total: int) -> None:
        self.total, self.count, self.drawn = max(total, 1), 0, 0.0

    def tick(self) -> None:
        self.count += 1
        if time.monotonic() - self.drawn >= 0.1 or self.count == self.total:
            self.draw()

    def draw(self) -> None:
        self.drawn = time.monotonic()
        share = min(self.count / self.total, 1.0)
        filled = int(share * 30)
        bar = "#" * filled + "." * (30 - filled)
        click.echo(
            f"\rimport {self.count:>7}/{self.total} [{bar}] {share:4.0%}", nl=False, err=True
        )

    def done(self) -> None:
        self.draw()
        click.echo("", err=True)


def _print_report(report: ImportReport) -> None:
    for what, refs in report.outcomes.items():
        kinds: dict[str, int] = {}
        for ref in refs:
            kinds[ref.split("/")[0]] = kinds.get(ref.split("/")[0], 0) + 1
        detail = ", ".join(f"{n} {kind}" for kind, n in kinds.items())
        click.echo(f"{what}: {len(refs)}" + (f" ({detail})" if detail else ""))
        if what in (CREATED, UPDATED):
            for ref in refs:
                click.echo(f"  {ref}")
    click.echo(f"refused: {len(report.refused)}")
    for reason in report.refused:
        click.echo(f"  {reason}")


@click.command("serve", help="Serve the API with gunicorn (production-style).")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=int)
@click.option("--workers", default=lambda: int(os.environ.get("FHIR_FACADE_WORKERS", 2)), type=int)
@click.option("--threads", default=lambda: int(os.environ.get("FHIR_FACADE_THREADS", 8)), type=int)
@with_appcontext
def serve_command(host: str, port: int, workers: int, threads: int) -> None:
    upgrade(database().engine)
    _extend_demo()  # only where the demo clinic is loaded
    _gunicorn(host, port, workers, threads)


@click.command(
    "demo",
    help="Create the demo clinic (SQLite by default), or keep the one there current, print a "
    "token, serve.",
)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=int)
@with_appcontext
def demo_command(host: str, port: int) -> None:
    _check_port_free(host, port)
    upgrade(database().engine)
    loaded, added = _demo_data()
    everything = f"{DEMO_SCOPE} __patient.blocked user/AuditEvent.rs __audit.read"
    token = tokens().mint("staff-demo", everything, dt.timedelta(hours=12))
    base = f"http://{host}:{port}/fhir"
    settings().subscription_http_loopback = True  # the demo's receivers run beside it
    click.echo(
        f"\nfhir-facade demo on {base}  (database: {_safe_url()}; "
        f"{_demo_state(loaded, added)})\n\n"
        f"Staff app: http://{host}:{port}/app/  (sign in as one of the demo staff users)\n\n"
        f"Bearer token (12 h, all demo scopes):\n\n  export TOKEN={token}\n\n"
        "Try:\n"
        f'  curl -H "Authorization: Bearer $TOKEN" \\\n'
        f'       "{base}/Schedule?actor=Practitioner/prac-rivera"\n'
    )
    _gunicorn(host, port, workers=2, threads=8, deliver=True)


@click.command(
    "worker",
    help="Deliver subscription notifications (handshakes, events in order, heartbeats, "
    "retries) until stopped. Several workers may share a database.",
)
@click.option("--poll", default=0.5, show_default=True, type=click.FloatRange(min=0.05))
@click.option("--once", is_flag=True, help="One round over what is due, then exit.")
@with_appcontext
def worker_command(poll: float, once: bool) -> None:
    upgrade(database().engine)
    deliverer = Deliverer(database(), delivery_settings(settings()))
    if once:
        click.echo(f"notifications sent: {deliverer.run_once()}")
        return
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    click.echo(f"delivering notifications from {_safe_url()} (Ctrl-C stops)")
    with contextlib.suppress(KeyboardInterrupt):
        deliverer.run(stop, poll)


def _start_delivery() -> None:
    """The demo's in-process delivery: a thread in each server process (started after
    the fork; the subscriptions' leases keep the processes from sending one twice)."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]

    def run() -> None:
        with app.app_context():
            Deliverer(database(), delivery_settings(settings())).run(threading.Event())

    threading.Thread(target=run, name="notify-delivery", daemon=True).start()


def _check_port_free(host: str, port: int) -> None:
    """Fail before anything is printed when another process holds the port."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gunicorn binds
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise click.ClickException(
                f"cannot serve on {host}:{port}: {exc.strerror or exc} (another server is "
                "running there? try --port)"
            ) from None


def _safe_url() -> str:
    url = database().engine.url
    return str(url.render_as_string(hide_password=True))


#: gunicorn's own limits: the longest request line it reads (its maximum; the app's own
#: 414 limit, fhir_facade.http.MAX_URL_CHARS, lies below it), the most header fields
#: and the longest header line (gunicorn's defaults, kept explicit).
LIMIT_REQUEST_LINE = 8190
LIMIT_REQUEST_FIELDS = 100
LIMIT_REQUEST_FIELD_SIZE = 8190
_GUNICORN_CODES = {400: "invalid", 403: "forbidden", 414: "too-long", 431: "too-long"}


def outcome_error(sock: Any, status_int: int, reason: str, mesg: str) -> None:
    """gunicorn's refusal of a request it could not parse (request line or headers too
    long, raw non-ASCII or garbage in the request line, bad chunking), written as an
    OperationOutcome instead of gunicorn's HTML page. Same signature and behaviour as
    `gunicorn.util.write_error`, which `_gunicorn` replaces with it."""
    from gunicorn.util import write_nonblock

    code = _GUNICORN_CODES.get(status_int, "exception" if status_int >= 500 else "invalid")
    severity = "fatal" if status_int >= 500 else "error"
    body = orjson.dumps(operation_outcome(issue(severity, code, mesg or reason)))
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\n"
        f"Content-Type: {FHIR_JSON}; charset=utf-8\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    write_nonblock(sock, head.encode("latin-1") + body)


def _gunicorn(host: str, port: int, workers: int, threads: int, *, deliver: bool = False) -> None:
    import gunicorn.util
    from gunicorn.app.base import BaseApplication

    # gunicorn answers what it cannot parse itself, through this module-level function
    # (gunicorn.workers.base.Worker.handle_error); the workers inherit it at fork.
    gunicorn.util.write_error = outcome_error

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
            self.cfg.set("limit_request_line", LIMIT_REQUEST_LINE)
            self.cfg.set("limit_request_fields", LIMIT_REQUEST_FIELDS)
            self.cfg.set("limit_request_field_size", LIMIT_REQUEST_FIELD_SIZE)
            # One shared control socket per user would make instances on one host collide.
            if "control_socket_disable" in self.cfg.settings:
                self.cfg.set("control_socket_disable", True)
            if deliver:
                self.cfg.set("post_worker_init", lambda _worker: _in_app(app, _start_delivery))

        def load(self) -> Any:
            return app

    # The app's objects (modules, classes, tables: about 150,000) stay for the process's
    # life: out of the collector's sight, a full collection costs milliseconds instead of
    # ~100 ms, and the workers forked from here share their pages instead of copying them
    # when the collector touches them (the gc module's advice for forking servers).
    gc.freeze()
    Server().run()


@click.command(
    "sweep-offers",
    help="Pass lapsed waitlist offers on to the next patient waiting. Every write touching "
    "a session already does this first; the sweep only makes it prompt.",
)
@click.option(
    "--every",
    type=click.FloatRange(min=0),
    default=0,
    show_default=True,
    help="Repeat every this many seconds (0: sweep once and exit).",
)
@with_appcontext
def sweep_offers_command(every: float) -> None:
    while True:
        lapsed = database().write_as(PRIVACY_OFFICER, lambda store: store.sweep_expired_offers())
        click.echo(f"{lapsed} lapsed offer(s) passed on")
        if not every:
            return
        time.sleep(every)


def _in_app(app: Flask, work: Any) -> None:
    with app.app_context():
        work()


COMMANDS = (
    demo_command,
    serve_command,
    worker_command,
    token_command,
    client_group,
    import_command,
    sweep_offers_command,
    db_group,
)


def _version() -> str:
    try:
        return version("fhir-facade")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "unknown"


@click.group(
    "fhir-facade",
    help="A FHIR R4 server that books behavioral-health patients into group sessions. "
    "Configuration comes from FHIR_FACADE_* environment variables (see the README).",
)
@click.version_option(_version(), "--version", prog_name="fhir-facade")
def cli() -> None:
    pass


for _command in COMMANDS:
    cli.add_command(_command)


def main() -> None:
    from fhir_facade import create_app

    cli(prog_name="fhir-facade", obj=ScriptInfo(create_app=lambda: create_app()))


if __name__ == "__main__":
    main()
