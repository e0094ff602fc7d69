"""How the store talks to its database: reads on PostgreSQL hold no transaction (each
statement is its own, as READ COMMITTED would give anyway, without BEGIN/COMMIT round
trips); reads on SQLite keep one snapshot for the whole request."""

from __future__ import annotations

from sqlalchemy import text


def test_reads_hold_a_transaction_only_where_it_buys_a_snapshot(database):
    with database.reading() as db:
        if database.is_sqlite:
            db.execute(text("SELECT count(*) FROM patient"))
            # A second connection's write must not show up inside this read.
            database.write(
                lambda w: w.execute(
                    text(
                        "INSERT INTO provider_group (id, name, kind, version, last_updated) "
                        "VALUES ('g-snap', 'Snapshot', 'provider-group', 1, '2027-01-01')"
                    )
                )
            )
            seen = db.scalar(text("SELECT count(*) FROM provider_group WHERE id = 'g-snap'"))
            assert seen == 0
        else:
            db.execute(text("SELECT pg_sleep(0.01)"))
            in_transaction = db.scalar(text("SELECT now() <> statement_timestamp()"))
            assert in_transaction is False
