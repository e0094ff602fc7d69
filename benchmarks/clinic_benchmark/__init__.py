"""Benchmark a real-sized clinic network (issue 6): build it, measure the hot paths, report.

    .venv/bin/python -m benchmarks.clinic_benchmark --backend postgresql --scale 1 --out report.json
    .venv/bin/python -m benchmarks.clinic_benchmark --backend sqlite --scale 1
    .venv/bin/python -m benchmarks.clinic_benchmark --backend postgresql --scales 1,4,16

Not a test: it times things. For each backend and scale it creates its own
database (PostgreSQL: a new database next to the one in --postgres-url, dropped
afterwards; SQLite: a file in a temporary folder), builds the synthetic network
of `benchmarks.clinic_data` with bulk inserts, then measures

  1. week view: one provider's week of Slots (~15), in-process (Flask test client)
     and over HTTP (a real `fhir-facade serve`, gunicorn, keep-alive connection);
  2. a 500-Slot search page: server time and its parts (SQL, ORM, mapping,
     bundle, orjson) against the orjson floor for the same rows;
  3. patient search by family-name prefix, phone, SSN (and MRN); on PostgreSQL
     the EXPLAIN ANALYZE of each statement the app issued;
  4. booking throughput over HTTP with N concurrent clients into sessions with
     capacity, the overbooked count checked in the database, and the database's
     own limit for the same conditional UPDATE + INSERT through the driver;
  5. `$find` / `$book` of a 52-week Mon/Wed/Fri series: time and SQL statements;
  6. gunicorn workers' RSS after the load; with several scales, week view and
     booking latency per scale (flat is the goal).

Prints markdown tables and writes a JSON report (--out).
"""
