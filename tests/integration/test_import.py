"""`fhir-facade import FILE` (issue 12, item 3): what it reports, what a refused line
does with and without --atomic, updates on a second import, the progress bar."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from store.models import Department, GroupSession, Provider, ProviderSchedule
from tests import clinic_setup

TODAY = dt.date.today()


def run_import(app, tmp_path: Path, text: str, *options: str, name: str = "clinic.ndjson") -> Any:
    path = tmp_path / name
    path.write_text(text)
    return app.test_cli_runner().invoke(args=["import", str(path), *options])


def stored(database) -> dict[str, int]:
    with database.reading() as db:
        return {
            kind.__name__: db.scalar(select(func.count()).select_from(kind)) or 0
            for kind in (Department, Provider, ProviderSchedule, GroupSession)
        }


def with_bad_berlin_zone() -> str:
    return clinic_setup.ndjson(TODAY).replace("Europe/Berlin", "Europe/Atlantis")


def test_a_refused_line_stops_only_itself_and_what_refers_to_it(app, database, tmp_path):
    result = run_import(app, tmp_path, with_bad_berlin_zone())

    assert result.exit_code == 1
    assert "line 2 (Location/ber): 422 business-rule: 'Europe/Atlantis' is not an IANA" in (
        result.output
    )
    assert "line 4 (Schedule/ber): refers to Location/ber (line 2), which was refused" in (
        result.output
    )
    assert "refused: 7" in result.output  # the department, its calendar, its 5 sessions
    assert stored(database) == {
        "Department": 1,
        "Provider": 2,
        "ProviderSchedule": 1,
        "GroupSession": clinic_setup.WEEKS,
    }


def test_an_atomic_import_with_a_refused_line_imports_nothing(app, database, tmp_path):
    result = run_import(app, tmp_path, with_bad_berlin_zone(), "--atomic")

    assert result.exit_code == 1
    assert "line 2 (Location/ber): 422" in result.output
    assert "nothing was imported (--atomic)" in result.output
    assert set(stored(database).values()) == {0}


def test_an_unreadable_line_or_one_without_identifier_is_refused_by_its_number(
    app, database, tmp_path
):
    lines = clinic_setup.ndjson(TODAY).splitlines()
    nameless = json.loads(lines[2])
    del nameless["identifier"]
    text = "\n".join([lines[0], "{not json", json.dumps(nameless), lines[1]]) + "\n"

    result = run_import(app, tmp_path, text)

    assert "line 2: malformed JSON" in result.output
    assert "line 3 (Practitioner/ber): an imported resource needs an identifier" in result.output
    assert "created: 2 (1 Organization, 1 Location)" in result.output
    assert stored(database)["Provider"] == 0


def test_a_second_import_updates_only_what_changed(app, database, tmp_path):
    run_import(app, tmp_path, clinic_setup.ndjson(TODAY))
    renamed = clinic_setup.ndjson(TODAY).replace('"given": ["Alex"]', '"given": ["Alexandra"]', 1)

    result = run_import(app, tmp_path, renamed)

    assert result.exit_code == 0, result.output
    assert "updated: 1 (1 Practitioner)" in result.output
    assert f"unchanged: {len(clinic_setup.resources(TODAY)) - 1} " in result.output
    with database.reading() as db:
        assert db.scalar(select(Provider.given).where(Provider.family == "Schulz")) == "Alexandra"


def test_a_transaction_bundle_file_imports_like_the_ndjson(app, database, tmp_path):
    bundle = json.dumps(clinic_setup.transaction(TODAY))

    first = run_import(app, tmp_path, bundle, name="clinic.json")
    again = run_import(app, tmp_path, clinic_setup.ndjson(TODAY))

    assert first.exit_code == 0, first.output
    assert f"created: {len(clinic_setup.resources(TODAY))} " in first.output
    assert f"unchanged: {len(clinic_setup.resources(TODAY))} " in again.output


@pytest.mark.parametrize("flag", ["--progress", None])
def test_the_progress_bar_goes_to_stderr_only_when_asked_or_on_a_terminal(
    app, tmp_path, flag, database_url
):
    if not database_url.startswith("sqlite"):
        pytest.skip("output only: one backend is enough")
    path = tmp_path / "clinic.ndjson"
    path.write_text(clinic_setup.ndjson(TODAY))
    runner = app.test_cli_runner()

    result = runner.invoke(args=["import", str(path), *([flag] if flag else [])])

    count = len(clinic_setup.resources(TODAY))
    if flag:
        assert f"\rimport {count:>7}/{count} [{'#' * 30}] 100%" in result.stderr
    else:
        assert result.stderr == ""
    assert "import " not in result.stdout
