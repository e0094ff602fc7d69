"""The HTTP layer reaches data only through the caller's Store (store.scope).

Every `from store... import` in fhir_facade is read: it may name the Store façade, the
`Database` that opens one, and pure types, constants and errors; never a function
that takes a database session (those are the use cases and queries the Store binds to
the caller's visibility), nor a whole store module holding one. The command line's
setup commands (migrate, demo data, client registration) run before any caller
exists and are the one exception. import-linter keeps SQLAlchemy itself out
(pyproject.toml).
"""

from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path

import fhir_facade

PACKAGE = Path(fhir_facade.__file__).parent
#: Setup run from the command line, before any caller exists.
SETUP = {"cli.py"}


def takes_a_session(value: object) -> bool:
    """A function with a database session parameter, or a module holding one."""
    if inspect.ismodule(value):
        return any(takes_a_session(v) for v in vars(value).values())
    if not inspect.isfunction(value):
        return False
    parameters = inspect.signature(value).parameters.values()
    return any(p.name == "db" or "Session" in str(p.annotation) for p in parameters)


def store_imports() -> list[tuple[str, str, object]]:
    """(file, store module.name, the imported object) for each name fhir_facade imports
    from the store."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("store"):
                module = importlib.import_module(node.module or "")
                for alias in node.names:
                    name = f"{node.module}.{alias.name}"
                    found.append((path.name, name, getattr(module, alias.name)))
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("store"):
                        found.append((path.name, alias.name, importlib.import_module(alias.name)))
    return found


def test_the_http_layer_imports_no_store_function_that_takes_a_session():
    reaching = [
        (file, name)
        for file, name, value in store_imports()
        if file not in SETUP and takes_a_session(value)
    ]
    assert reaching == []


def test_the_check_finds_a_use_case_and_a_query():
    from store.booking import book_patient
    from store.search import get_one

    assert takes_a_session(book_patient) and takes_a_session(get_one)
