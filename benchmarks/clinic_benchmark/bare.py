"""The bare booking server: the least any Flask app under gunicorn can do per booking.

It answers `POST /fhir/Appointment` with the driver's own two statements (the
conditional UPDATE and the INSERT, `booking.TAKE_PLACE` and `ADD_BOOKING`), in one transaction on
one connection per thread, and nothing else: no token, no validation, no insurance, no
audit record, no version, no notification. Started like the real server (gunicorn,
gthread, the same workers and threads) and loaded by the same clients, its rate bounds
what any booking through this stack can reach on this machine, whatever the design
behind it (`python -m benchmarks.clinic_benchmark.bare --help`)."""

from __future__ import annotations

import argparse
import datetime as dt
import threading
import uuid
from typing import Any

import orjson
import psycopg
from flask import Flask, Response, request

from benchmarks.clinic_benchmark.booking import ADD_BOOKING, TAKE_PLACE

TAKE = TAKE_PLACE.format(p="%s", f="false")
ADD = ADD_BOOKING.format(p="%s")


def create_bare_app(conninfo: str, department: str) -> Flask:
    app = Flask(__name__)
    local = threading.local()
    start = dt.datetime(2030, 1, 1, 12)
    end = start + dt.timedelta(minutes=90)

    def connection() -> Any:
        conn = getattr(local, "conn", None)
        if conn is None:
            conn = local.conn = psycopg.connect(conninfo)
        return conn

    @app.get("/fhir/metadata")
    def metadata() -> Response:
        return Response(b'{"resourceType":"CapabilityStatement"}', 200)

    @app.post("/fhir/Appointment")
    def book() -> Response:
        body = orjson.loads(request.get_data())
        session = body["slot"][0]["reference"].removeprefix("Slot/")
        patient = body["participant"][0]["actor"]["reference"].removeprefix("Patient/")
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        conn = connection()
        if conn.execute(TAKE, (now, session)).rowcount != 1:
            conn.rollback()
            return Response(b'{"resourceType":"OperationOutcome"}', 409)
        ident = uuid.uuid4().hex
        conn.execute(ADD, (ident, session, patient, start, end, department, now, now))
        conn.commit()
        answer = {"resourceType": "Appointment", "id": ident, "status": "booked"}
        return Response(orjson.dumps(answer), 201, content_type="application/fhir+json")

    return app


def main() -> None:
    from gunicorn.app.base import BaseApplication

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--conninfo", required=True, help="libpq conninfo of the database")
    parser.add_argument("--department", required=True, help="the bookings' department id")
    args = parser.parse_args()
    app = create_bare_app(args.conninfo, args.department)

    class Server(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            self.cfg.set("bind", f"127.0.0.1:{args.port}")
            self.cfg.set("workers", args.workers)
            self.cfg.set("threads", args.threads)
            self.cfg.set("worker_class", "gthread")
            if "control_socket_disable" in self.cfg.settings:
                self.cfg.set("control_socket_disable", True)

        def load(self) -> Any:
            return app

    Server().run()


if __name__ == "__main__":
    main()
