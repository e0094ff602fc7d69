"""Where a request's real time goes, by phase, without a profiler.

pyinstrument's hooks slow call-heavy code (SQLAlchemy, the per-occurrence Python of a
series) more than the rest, so its shares lean that way. Here named functions of the
request's path are timed around each call (a few per request: the wrappers cost
microseconds) and the statements by their first words, in the driver and the
database. A series' `$book` spreads its cost over 156 occurrences in many places; this
is the table that shows which.
"""

from __future__ import annotations

import functools
import importlib
import statistics
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine

#: (module, function): what a series' `$book` does, outermost first. A function is
#: replaced in its module and in every module of the project that imported it by name.
BOOK_PHASES = (
    ("fhir_facade.http", "read_json_body"),
    ("mappings.limits", "check_body"),
    ("mappings.series", "book_from_fhir"),
    ("store.series", "book_series"),
    ("store.recurrence", "expand"),
    ("store.series", "_partition"),
    ("store.booking", "book_patients"),
    ("store.booking", "store_drafts"),
    ("store.booking", "_insert_new"),
    ("store.places", "take_places_read"),
    ("mappings.series", "bookings_to_fhir"),
    ("fhir_facade.registry", "rendered"),
    ("fhir_facade.references", "checked_in"),
    ("fhir_facade.audit", "audit_bookings"),
    ("fhir_facade.registry", "snapshot"),
    ("fhir_facade.http", "fhir_response"),
)
_OWN = ("fhir_facade", "store", "mappings")
#: How many of a statement's first words name it in the table.
_WORDS = 5


class Phases:
    """Times `phases` and each statement on `engine` while installed; `take()` gives one
    request's milliseconds by phase (statements as "SQL <first words>")."""

    def __init__(self, engine: Engine, phases: tuple[tuple[str, str], ...] = BOOK_PHASES) -> None:
        self.engine = engine
        self._spent: defaultdict[str, float] = defaultdict(float)
        self._local = threading.local()
        self._replaced: list[tuple[Any, str, Any]] = []
        for module_name, name in phases:
            module = importlib.import_module(module_name)
            original = getattr(module, name)
            timed = self._timed(name, original)
            for other in list(sys.modules.values()):
                owner = getattr(other, "__name__", "") or ""
                if owner.split(".")[0] in _OWN and getattr(other, name, None) is original:
                    self._replaced.append((other, name, original))
                    setattr(other, name, timed)
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "after_cursor_execute", self._after)

    def _timed(self, name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        spent = self._spent

        @functools.wraps(function)
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                spent[name] += time.perf_counter() - started

        return timed

    def _before(self, _conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        self._local.started = (statement, time.perf_counter())

    def _after(self, *_: Any) -> None:
        statement, started = self._local.started
        name = "SQL " + " ".join(statement.split()[:_WORDS])
        self._spent[name] += time.perf_counter() - started

    def start(self) -> None:
        self._spent.clear()

    def take(self) -> dict[str, float]:
        taken = {name: seconds * 1000 for name, seconds in self._spent.items()}
        self._spent.clear()
        return taken

    def close(self) -> None:
        for module, name, original in self._replaced:
            setattr(module, name, original)
        event.remove(self.engine, "before_cursor_execute", self._before)
        event.remove(self.engine, "after_cursor_execute", self._after)


def medians(samples: list[dict[str, float]]) -> dict[str, float]:
    """Each phase's median over the requests (0 where a request did not reach it), the
    largest first."""
    names = {name for sample in samples for name in sample}
    found = {
        name: round(statistics.median(sample.get(name, 0.0) for sample in samples), 2)
        for name in names
    }
    return dict(sorted(found.items(), key=lambda item: -item[1]))
