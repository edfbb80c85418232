"""Browser tests: Playwright for Python driving Debian's Chromium, headless, against the
whole platform started as processes (deploy/local/launcher.py), as a person would use it.

Chromium is `/usr/bin/chromium` (or `RELAIS_CHROMIUM`), from Debian's `chromium`
package: Playwright's own browser download is never used. When it is missing,
`tests/browser/install-chromium.sh` is tried once (root or password-less sudo with
apt-get); the tests are skipped, saying why, only when that cannot install it.

One platform per test module (its services start once for all its tests), on free
ports, with the operator simulator on and the operator desk playing `justice`, on a
fresh database of the test session's PostgreSQL server and the module's broker.

Playwright's sync API marks its own event loop as running in the main thread between
calls, so an `asyncio.run` there would fail while a browser is open: the fixtures here
are synchronous, the browser is module-scoped and starts after the platform (and so
after the module's broker), and the database is made on a thread of its own."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import asyncpg
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from deploy.local.launcher import LocalPlatform, run_coroutine
from deploy.local.run import simulated_operators

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
CHROMIUM = Path(os.environ.get("RELAIS_CHROMIUM", "/usr/bin/chromium"))
# Without the background-networking flags Chromium keeps calling home (updates, sync,
# safe browsing, QUIC probes): there is no network here but the loopback.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--disable-features=Translate,OptimizationHints,MediaRouter",
                 "--lang=fr"]
# A French browser, as the advisers': date fields read jj/mm/aaaa (with chromium-l10n).
CHROMIUM_ENV = {"LANG": "fr_FR.UTF-8", "LANGUAGE": "fr"}
VIEWPORT = {"width": 1280, "height": 800}
# Screenshots of the main screens, at each run: into tests/artifacts/screens/, or
# RELAIS_SCREENS_DIR (`make screens` refreshes the README's pictures in docs/screens/).
SCREENS = Path(os.environ.get("RELAIS_SCREENS_DIR") or ROOT / "tests" / "artifacts" / "screens")
FAILURES = ROOT / ".data" / "test-logs" / "browser"  # a screenshot of the page when a test fails
DESK_OPERATOR = "justice"
DEMO_SITES = ["agen-leon-blum-poste", "pont-du-casse-mairie", "martignas-sur-jalle-poste"]
TIMEOUT_MS = 10_000

ScreenShot = Callable[..., Path]
NewPage = Callable[[], Page]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "browser: tests driving Chromium through the web pages")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.browser)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    report = yield
    if report.when == "call":
        item.stash[_FAILED] = report.failed
    return report


_FAILED = pytest.StashKey[bool]()


# -------------------------------------------------------------------------------- Chromium


@pytest.fixture(scope="session")
def chromium_executable() -> Path:
    """Debian's Chromium; installed with apt-get when missing and possible, else a skip."""
    if not CHROMIUM.exists():
        script = HERE / "install-chromium.sh"
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            subprocess.run(["bash", str(script)], timeout=600, check=False)
    if not CHROMIUM.exists():
        why = (f"no Chromium at {CHROMIUM}, and tests/browser/install-chromium.sh could not install it "
               f"(needs root or sudo and Debian's apt-get: `apt-get install chromium`)")
        if os.environ.get("RELAIS_REQUIRE_BROWSER") == "1":  # CI: a skipped browser test is a failure
            pytest.fail(why)
        pytest.skip(why)
    return CHROMIUM


# -------------------------------------------------------------------------------- platform


async def _create_database(server_url: str, name: str) -> None:
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()


async def _drop_database(server_url: str, name: str) -> None:
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture(scope="module")
def browser_database_url(postgres_server_url: str) -> Iterator[str]:
    """A fresh database for the module's platform (made synchronously: see the module doc)."""
    from urllib.parse import urlsplit, urlunsplit

    name = f"b_{uuid.uuid4().hex[:12]}"
    run_coroutine(_create_database(postgres_server_url, name))
    yield urlunsplit(urlsplit(postgres_server_url)._replace(path=f"/{name}"))
    run_coroutine(_drop_database(postgres_server_url, name))


async def _known_sites(database_url: str, wanted: list[str]) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM referral.known_sites WHERE site_id = ANY($1)",
                                       wanted))
    finally:
        await conn.close()


def wait_for_demo_sites(database_url: str, timeout: float = 30.0) -> None:
    """Until the referral service knows the demo sites (they come by the `sites` topic)."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            if run_coroutine(_known_sites(database_url, DEMO_SITES)) == len(DEMO_SITES):
                return
        except (OSError, asyncpg.PostgresError) as exc:  # not migrated yet
            last = exc
        time.sleep(0.2)
    raise AssertionError(f"the demo sites did not reach the referral service in {timeout:.0f}s ({last!r})")


class BrowserPlatform(LocalPlatform):
    """`{referral_url}` in a value of `extra_env` becomes the referral service's address
    once the free ports are chosen (e.g. an OpenID Connect redirect URL)."""

    def _assign_ports(self) -> None:
        super()._assign_ports()
        self.extra_env = {name: value.replace("{referral_url}", self.referral_url)
                          for name, value in self.extra_env.items()}


@pytest.fixture(scope="module")
def platform(kafka_bootstrap: str, browser_database_url: str, request: pytest.FixtureRequest,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPlatform]:
    """Every service, the operator simulator (every operator but the desk's) and the
    operator desk playing `justice`, on free ports, with the demo data and accounts;
    returns once the referral service knows the demo sites. A test module may set
    `SIMULATOR_ARGS` (e.g. answer delays), `PLATFORM_ENV` (more environment, where
    `{referral_url}` stands for the referral service's address) and `PROMETHEUS = True`
    (a Prometheus scraping every process, as `make run` starts)."""
    data = Path(tmp_path_factory.mktemp("browser-platform"))
    started = time.monotonic()
    with BrowserPlatform(data, bootstrap=kafka_bootstrap, database_url=browser_database_url, ports="free",
                       simulated_operators=simulated_operators({"RELAIS_DESK_OPERATOR": DESK_OPERATOR}),
                       demo_data=True, desk_operator=DESK_OPERATOR,
                       simulator_args=list(getattr(request.module, "SIMULATOR_ARGS", [])),
                       extra_env=dict(getattr(request.module, "PLATFORM_ENV", {})),
                       prometheus=bool(getattr(request.module, "PROMETHEUS", False))) as p:
        wait_for_demo_sites(browser_database_url)
        print(f"platform ready in {time.monotonic() - started:.1f}s (logs in {p.log_dir})")
        yield p


# -------------------------------------------------------------------------------- browser


@pytest.fixture(scope="module")
def browser(platform: LocalPlatform, chromium_executable: Path) -> Iterator[Browser]:
    """One headless Chromium for the module, started after the platform (see the module
    doc) and closed before the next module's fixtures start."""
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(chromium_executable), args=CHROMIUM_ARGS,
                                              headless=True, env={**os.environ, **CHROMIUM_ENV})
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def new_page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[NewPage]:
    """Opens pages each in a fresh context (own cookies: a person of their own), 1280x800,
    in French and Paris time. A failed test leaves a screenshot of each page in
    .data/test-logs/browser/."""
    contexts: list[BrowserContext] = []
    pages: list[Page] = []

    def open_page() -> Page:
        context = browser.new_context(viewport=VIEWPORT, locale="fr-FR", timezone_id="Europe/Paris",
                                      device_scale_factor=1)
        context.set_default_timeout(TIMEOUT_MS)
        contexts.append(context)
        page = context.new_page()
        pages.append(page)
        return page

    yield open_page
    if request.node.stash.get(_FAILED, False):
        FAILURES.mkdir(parents=True, exist_ok=True)
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
        for i, page in enumerate(pages):
            with contextlib.suppress(Exception):
                target = FAILURES / f"{slug}-{i}.png"
                page.screenshot(path=str(target), full_page=True)
                print(f"screenshot of the failed page ({page.url}): {target}")
    for context in contexts:
        with contextlib.suppress(Exception):
            context.close()


@pytest.fixture
def page(new_page: NewPage) -> Page:
    """A page of its own for the test (fresh cookies)."""
    return new_page()


@pytest.fixture(scope="session")
def screenshot() -> ScreenShot:
    """`screenshot(page, "name")` saves SCREENS/name.png (1280x800, the viewport),
    overwriting the last run's."""

    def take(page: Page, name: str, *, full_page: bool = False) -> Path:
        SCREENS.mkdir(parents=True, exist_ok=True)
        target = SCREENS / f"{name}.png"
        page.screenshot(path=str(target), full_page=full_page, animations="disabled", caret="hide")
        return target

    return take
