"""The ops console in Chromium, on the whole platform with its Prometheus (as `make run`):
demo-ops signs in from the overview's address, lands back on it, and sees the consumer
groups measured by the ops service and the processes Prometheus scrapes, the charts
named for screen readers; the page is saved as ops-overview.png (docs/screens/ with
`make screens`). An adviser's account is refused with the reason."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import Page, expect

from deploy.local.launcher import LocalPlatform
from tests.browser.browsing import api_referral

ScreenShot = Callable[..., Path]
PROMETHEUS = True  # the platform fixture starts Prometheus for this module


def sign_in_to_the_console(page: Page, console: str, user: str) -> None:
    page.goto(f"{console}/console")
    expect(page).to_have_url(re.compile(r"/console/connexion\?suite=%2Fconsole$"))
    expect(page.locator("html")).to_have_attribute("lang", "fr")
    page.get_by_label("Identifiant").fill(user)
    page.get_by_label("Mot de passe").fill("demo")
    page.get_by_role("button", name="Se connecter").click()


def test_ops_see_the_overview_and_an_adviser_is_refused(platform: LocalPlatform, page: Page,
                                                        new_page: Callable[[], Page],
                                                        screenshot: ScreenShot) -> None:
    console = platform.url("ops")
    api_referral(platform, operator="caf", procedure="caf.prime-activite", family_name="Garnier")

    adviser = new_page()
    sign_in_to_the_console(adviser, console, "demo-adviser")
    expect(adviser.get_by_role("alert")).to_contain_text("Ce compte n'a pas le rôle exploitation.")

    sign_in_to_the_console(page, console, "demo-ops")
    expect(page).to_have_url(re.compile(r"/console$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Vue d'ensemble")
    expect(page.get_by_role("link", name="Vue d'ensemble")).to_have_attribute("aria-current", "page")
    # Prometheus scrapes every 5 s and the lag monitor samples every 10 s: reload until
    # both have something to show.
    groups = page.get_by_role("table", name=re.compile("Groupes de consommateurs"))
    processes = page.get_by_role("table", name=re.compile("Processus de la plateforme"))
    router = groups.get_by_text("relais-referral-router", exact=True)
    deadline = time.monotonic() + 60.0
    while (router.count() == 0 or processes.count() == 0
           or processes.get_by_text("En marche").count() < 5) and time.monotonic() < deadline:
        page.wait_for_timeout(1000)
        page.reload()
    expect(router).to_be_visible()
    expect(processes.get_by_text("referral").first).to_be_visible()
    expect(page.get_by_text("Prometheus ne répond pas")).to_have_count(0)
    expect(page.get_by_role("img", name=re.compile("Messages traités par minute"))).to_be_visible()
    screenshot(page, "ops-overview")

    page.get_by_role("button", name="Se déconnecter").click()
    expect(page).to_have_url(re.compile(r"/console/connexion$"))
