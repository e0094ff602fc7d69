"""The staff app in a real browser: Debian's headless Chromium, driven by Playwright,
against a real `fhir-facade serve` process holding the demo clinic.

One server and one browser per module and database (SQLite, then PostgreSQL in a
database of its own); each test gets a fresh browser context (so a fresh sign-in).
Every `screen(page, name)` call saves a screenshot under test-artifacts/browser/ (kept
whether the test passes or fails) and runs axe-core on the page: no serious or critical
violation may be found. Without Chromium or Playwright the tests skip, unless
FHIR_FACADE_REQUIRE_BROWSER=1 (CI) makes that a failure.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import signal
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import requests

from fhir_facade.auth import TokenService
from fhir_facade.config import Settings
from store.db import Database, DatabaseSettings
from store.demo import load_demo
from store.migrate import upgrade
from tests.conftest import TEST_SECRET, own_postgres_database
from tests.e2e.conftest import REPO_ROOT, Server, _launch, _signal_group, _wait_ready

CHROMIUM = os.environ.get("FHIR_FACADE_CHROMIUM", "/usr/bin/chromium")
REQUIRE_BROWSER = os.environ.get("FHIR_FACADE_REQUIRE_BROWSER") == "1"
BROWSER_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
AXE = Path(__file__).with_name("vendor") / "axe-4.14.1.min.js"
ARTIFACTS = REPO_ROOT / "test-artifacts" / "browser"
DOCS_SCREENSHOTS = REPO_ROOT / "docs" / "screenshots"
FULL_SCOPE = "user/*.cruds __schedule.manage __patient.blocked"
ZONES = {"Location/dept-brooklyn": "America/New_York", "Location/dept-denver": "America/Denver"}
SCHEDULE_ZONE = {
    "sched-rivera-bk": "America/New_York",
    "sched-chen-bk": "America/New_York",
    "sched-okafor-bk": "America/New_York",
    "sched-lindqvist-dn": "America/Denver",
    "sched-haddad-dn": "America/Denver",
}
JSON = dict[str, Any]


def _unavailable(reason: str) -> None:
    if REQUIRE_BROWSER:
        pytest.fail(f"FHIR_FACADE_REQUIRE_BROWSER=1 but {reason}")
    pytest.skip(reason)


@dataclass
class Clinic:
    """The running server with the demo clinic, and an API session that may see everything."""

    backend: str
    server: Server
    api: requests.Session = field(default_factory=requests.Session)

    @property
    def app_url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}/app/"

    @property
    def base(self) -> str:
        return self.server.base

    def get(self, path: str, **params: Any) -> JSON:
        response = self.api.get(f"{self.base}/{path}", params=params, timeout=30)
        assert response.status_code == 200, response.text
        body: JSON = response.json()
        return body

    def send(self, method: str, path: str, body: JSON, **headers: str) -> requests.Response:
        return self.api.request(
            method,
            f"{self.base}/{path}",
            json=body,
            headers={"Content-Type": "application/fhir+json", **headers},
            timeout=30,
        )

    def search(self, path: str, **params: Any) -> list[JSON]:
        return [e["resource"] for e in self.get(path, **params).get("entry", [])]

    def future_sessions(self, schedule_id: str, *, free: int = 1) -> list[JSON]:
        """Sessions of a schedule starting from tomorrow with at least `free` places, by start."""
        tomorrow = (dt.date.today() + dt.timedelta(days=1)).isoformat()
        slots = self.search(
            "Slot", schedule=f"Schedule/{schedule_id}", start=f"ge{tomorrow}", _count="500"
        )
        open_ = [s for s in slots if s["status"] == "free" and places(s)[1] + free <= places(s)[0]]
        return sorted(open_, key=lambda s: str(s["start"]))


def places(slot: JSON) -> tuple[int, int]:
    """(capacity, booked) of a Slot, as the server holds them."""
    (ext,) = [e for e in slot["extension"] if e["url"].endswith("group-capacity")]
    parts = {p["url"]: p["valueUnsignedInt"] for p in ext["extension"]}
    return parts["capacity"], parts["booked"]


def local_date(instant: str, zone: str) -> str:
    moment = dt.datetime.fromisoformat(instant.replace("Z", "+00:00"))
    return moment.astimezone(ZoneInfo(zone)).date().isoformat()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def clinic(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Clinic]:
    """A `fhir-facade serve` process on the demo clinic, one per module and database."""
    folder = tmp_path_factory.mktemp(f"browser-{request.param}")
    with contextlib.ExitStack() as stack:
        if request.param == "sqlite":
            url = f"sqlite:///{folder / 'clinic.sqlite3'}"
        else:
            url = stack.enter_context(own_postgres_database("fhir_facade_browser"))
        database = Database(DatabaseSettings(url))
        upgrade(database.engine)
        database.write(lambda db: load_demo(db))
        database.dispose()
        server = _launch(url, folder / "server")
        stack.callback(_quick_stop, server)
        problem = _wait_ready(server)
        if problem is not None:
            pytest.fail(f"fhir-facade did not start ({problem}):\n{server.stderr_tail()}")
        clinic = Clinic(request.param, server)
        token = TokenService(Settings(jwt_secret=TEST_SECRET)).mint(
            "browser-test-checker", FULL_SCOPE, dt.timedelta(hours=1)
        )
        # Connection: close, because a stopping gunicorn lingers on kept-alive connections.
        clinic.api.headers.update(
            {
                "Authorization": f"Bearer {token}",
                "Accept": "application/fhir+json",
                "Connection": "close",
            }
        )
        stack.callback(clinic.api.close)
        yield clinic


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium, headless, one per module."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("Playwright is not installed (pip install -e '.[dev]')")
    if not Path(CHROMIUM).exists():
        _unavailable(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        yield chromium
        chromium.close()


@dataclass
class Screens:
    """Screenshots (always kept in test-artifacts/browser/) and the axe-core check."""

    folder: Path
    taken: int = 0
    violations: list[str] = field(default_factory=list)

    def __call__(self, page: Any, name: str, *, docs: str | None = None) -> None:
        page.wait_for_function("!document.querySelector('[role=status].status')")
        self.taken += 1
        self.folder.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(self.folder / f"{self.taken:02d}-{name}.png"), full_page=True)
        if docs and os.environ.get("FHIR_FACADE_WRITE_SCREENSHOTS") == "1":
            DOCS_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(DOCS_SCREENSHOTS / docs))
        if not page.evaluate("typeof window.axe !== 'undefined'"):
            page.add_script_tag(path=str(AXE))
        found = page.evaluate(
            """async () => (await axe.run(document, {resultTypes: ['violations']})).violations
                 .filter(v => v.impact === 'serious' || v.impact === 'critical')
                 .map(v => `${v.id} (${v.impact}): ${v.help} at ${
                     v.nodes.slice(0, 3).map(n => n.target.join(' ')).join('; ')}`)"""
        )
        assert not found, f"axe-core on the {name!r} screen:\n" + "\n".join(found)


@dataclass
class Tab:
    page: Any
    errors: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def tab(clinic: Clinic, browser: Any) -> Iterator[Tab]:
    """One tab at 1280x800 for the module's tests: the app loads (and axe-core is injected)
    once; each test signs out and in again through the app's own screens."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(10_000)
    opened = Tab(context.new_page())
    opened.page.on("pageerror", lambda error: opened.errors.append(str(error)))
    yield opened
    context.close()


@pytest.fixture
def page(tab: Tab) -> Iterator[Any]:
    tab.errors.clear()
    yield tab.page
    assert not tab.errors, f"JavaScript errors in the page: {tab.errors}"


@pytest.fixture
def screen(request: pytest.FixtureRequest, clinic: Clinic) -> Screens:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", request.node.name)
    return Screens(ARTIFACTS / clinic.backend / name)


def _quick_stop(server: Server) -> None:
    """SIGKILL: the tests are over and the database is thrown away, so there is nothing to
    drain (a graceful stop waits out gunicorn's 5 s graceful timeout on idle workers)."""
    _signal_group(server.process.pid, signal.SIGKILL)
    server.wait_stopped()


def at_sign_in(page: Any, clinic: Clinic) -> None:
    """The sign-in screen: sign out if someone is signed in, else open the app."""
    sign_out = page.get_by_role("button", name="Sign out")
    if page.url.startswith(clinic.app_url) and sign_out.count():
        sign_out.click()
    else:
        page.goto(clinic.app_url)
    page.locator("button.signin").first.wait_for()


def sign_in(page: Any, clinic: Clinic, who: str) -> None:
    """Sign in through the app's sign-in screen as one of the demo staff users."""
    at_sign_in(page, clinic)
    page.get_by_role("button", name=re.compile(who)).click()
    page.get_by_text(f"Signed in as {who}").wait_for()
    page.get_by_role("tab").first.wait_for()


def open_session(page: Any, slot: JSON, *, department: str | None = None) -> None:
    """Calendar: show the session's week, its provider's tab, and click its tile."""
    schedule_id = slot["schedule"]["reference"].removeprefix("Schedule/")
    if department:
        page.get_by_label("Department").select_option(label=department)
    page.get_by_label("Show the week of").fill(
        local_date(slot["start"], SCHEDULE_ZONE[schedule_id])
    )
    page.locator(f'[role=tab][data-schedule="{schedule_id}"]').click()
    page.locator(f'.tile[data-slot="{slot["id"]}"]').click()
    page.get_by_role("complementary").get_by_role("button", name="Book Appointment").wait_for()
