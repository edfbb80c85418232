"""Smoke test of the browser pipeline on the operator desk (services/desk): Chromium signs
in as the demo expert of `justice`, sees the inbox with a referral just sent through
the adviser API, opens it, and the page is saved as guichet-operateur.png (docs/screens/ with `make screens`)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import Page, expect

from deploy.local.launcher import LocalPlatform
from tests.browser.browsing import api_referral

ScreenShot = Callable[..., Path]


def test_the_expert_signs_in_and_sees_the_inbox(platform: LocalPlatform, page: Page,
                                                 screenshot: ScreenShot) -> None:
    referral_id = api_referral(platform, operator="justice", procedure="justice.casier-judiciaire",
                               family_name="Moreau")
    desk = platform.url("desk")

    page.goto(f"{desk}/connexion")
    expect(page).to_have_title(re.compile("Connexion"))
    expect(page.locator("html")).to_have_attribute("lang", "fr")
    page.get_by_label("Identifiant").fill("demo-expert")
    page.get_by_label("Mot de passe").fill("demo")
    page.get_by_role("button", name="Se connecter").click()

    expect(page).to_have_url(re.compile(r"/dossiers$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Dossiers reçus")
    # The referral travels referral -> operator.justice.inbox -> desk: reload until it is there.
    link = page.locator(f'a[href="/dossiers/{referral_id}"]')
    deadline = time.monotonic() + 30.0
    while link.count() == 0 and time.monotonic() < deadline:
        page.wait_for_timeout(500)
        page.reload()
    expect(link).to_be_visible()
    screenshot(page, "guichet-operateur")

    link.click()
    expect(page).to_have_url(re.compile(f"/dossiers/{referral_id}"))
    expect(page.get_by_text("Moreau").first).to_be_visible()  # decrypted for the page, with the desk's key
