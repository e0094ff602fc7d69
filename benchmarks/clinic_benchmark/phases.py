"""Where a request's real time goes, by phase, without a profiler.

pyinstrument's hooks slow call-heavy code (SQLAlchemy, the per-occurrence Python of a
series) more than the rest, so its shares lean that way. Here named functions of the
request's path are timed around each call (a few per request: the wrappers cost
microseconds), beside the statements by their first words, in the driver and the
database (`StatementCounter.by_statement`). A series' `$book` spreads its cost over
156 occurrences in many places; this is the table that shows which.
"""

from __future__ import annotations

import functools
import importlib
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from benchmarks.clinic_benchmark.harness import StatementCounter

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


class Phases:
    """Times `phases` while installed; `take()` gives one request's milliseconds by
    phase, with its statements' from `counter` ("SQL <first words>"), both counted from
    `start()` (the counter from its last reset)."""

    def __init__(
        self, counter: StatementCounter, phases: tuple[tuple[str, str], ...] = BOOK_PHASES
    ) -> None:
        self.counter = counter
        self._spent: defaultdict[str, float] = defaultdict(float)
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

    def start(self) -> None:
        self._spent.clear()

    def take(self) -> dict[str, float]:
        spent = {**self._spent, **{f"SQL {s}": t for s, t in self.counter.by_statement.items()}}
        self._spent.clear()
        return {name: seconds * 1000 for name, seconds in spent.items()}

    def close(self) -> None:
        for module, name, original in self._replaced:
            setattr(module, name, original)


def medians(samples: list[dict[str, float]]) -> dict[str, float]:
    """Each phase's median over the requests (0 where a request did not reach it), the
    largest first."""
    names = {name for sample in samples for name in sample}
    found = {
        name: round(statistics.median(sample.get(name, 0.0) for sample in samples), 2)
        for name in names
    }
    return dict(sorted(found.items(), key=lambda item: -item[1]))
