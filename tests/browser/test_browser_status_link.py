"""The citizen's status link and the receipt, in Chromium against the whole platform
(issue #13 item 3).

- The adviser prints the receipt from the referral's page: a page says first that the
  code is the same at each print, then the receipt shows the code (made when the referral
  was routed), its link and its QR. Printed again, the same code; « Nouveau code », asked
  first, replaces it and the old link stops working.
- The citizen opens the link in a fresh browser WITHOUT JavaScript on a 375 px screen:
  their first name and where the request stands, in plain words, nothing else of them;
  the code typed by hand in /suivi (lower case, spaces) leads to the same page.
- 30 days after the request was closed, the link says to come back for a new one.
- Every page met passes axe-core at 1280 px and 375 px.

Screen: docs/screens/suivi-telephone.png (the status page on a phone, no JavaScript)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

import asyncpg
import httpx
from playwright.sync_api import Browser, Page, expect

from deploy.local.launcher import LocalPlatform, run_coroutine
from tests.browser.axe import accessible_at_both_widths
from tests.browser.browsing import api_auth, api_referral, sign_in

ScreenShot = Callable[..., Path]
NewPage = Callable[[], Page]
CODE = r"[2-9A-HJ-NP-Z]{4}-[2-9A-HJ-NP-Z]{4}-[2-9A-HJ-NP-Z]{2}"


async def _ended_long_ago(database_url: str, referral_id: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("UPDATE referral.referral_timeline SET at = at - interval '31 days'"
                           " WHERE referral_id = $1 AND event IN ('closed', 'cancelled')", referral_id)
    finally:
        await conn.close()


def phone_without_javascript(browser: Browser) -> Page:
    context = browser.new_context(viewport={"width": 375, "height": 740}, locale="fr-FR",
                                  timezone_id="Europe/Paris", java_script_enabled=False)
    context.set_default_timeout(10_000)
    return context.new_page()


def test_the_adviser_prints_the_receipt_and_the_citizen_follows_the_request_without_javascript(
        platform: LocalPlatform, page: Page, new_page: NewPage, browser: Browser, screenshot: ScreenShot) -> None:
    referral_id = api_referral(platform, operator="caf", procedure="caf.prime-activite",
                               family_name="Suivi-Navigateur", given_name="Lucie")
    base = platform.referral_url
    sign_in(page, base, "demo-adviser")
    page.goto(f"{base}/demandes/{referral_id}")
    page.get_by_role("link", name="Imprimer le récépissé").click()
    expect(page).to_have_url(re.compile(f"/demandes/{referral_id}/recu$"))
    expect(page.locator("#meme-code")).to_contain_text("Le code de suivi est le même à chaque impression")
    accessible_at_both_widths(page, "récépissé, avant l'impression")
    page.get_by_role("button", name="Imprimer le récépissé").click()
    expect(page.get_by_role("heading", name="Récépissé à imprimer")).to_be_visible()
    code = page.locator("#code-suivi").inner_text().strip()
    assert re.fullmatch(CODE, code), code
    link = page.locator("#lien-suivi").inner_text().strip()
    assert link == f"{base}/suivi/{code}"
    expect(page.locator("#recepisse svg")).to_have_count(1)  # the QR
    expect(page.locator("#recepisse")).to_contain_text("Caisse d'allocations familiales")
    accessible_at_both_widths(page, "récépissé")
    # Printed again: the same code. « Nouveau code », asked first: the old one stops working.
    page.goto(f"{base}/demandes/{referral_id}/recu")
    page.get_by_role("button", name="Imprimer le récépissé").click()
    expect(page.locator("#code-suivi")).to_have_text(code)
    page.goto(f"{base}/demandes/{referral_id}/recu")
    page.get_by_role("link", name="Nouveau code").click()
    expect(page.get_by_role("heading", name="Donner un nouveau code de suivi ?")).to_be_visible()
    accessible_at_both_widths(page, "nouveau code, avant de confirmer")
    page.get_by_role("button", name="Oui, donner un nouveau code").click()
    expect(page.locator("#code-renouvele")).to_be_visible()
    old_link, code = link, page.locator("#code-suivi").inner_text().strip()
    link = page.locator("#lien-suivi").inner_text().strip()
    assert re.fullmatch(CODE, code) and link == f"{base}/suivi/{code}" != old_link

    phone = phone_without_javascript(browser)
    try:
        phone.goto(old_link)
        expect(phone.locator("#introuvable")).to_have_text("Ce lien de suivi ne fonctionne pas")
        phone.goto(link)
        expect(phone.locator("h1")).to_contain_text("Bonjour Lucie")
        # The demo's CAF answers within seconds: sent, taken in charge or answered by now.
        expect(phone.locator("#ou-en-est")).to_contain_text(re.compile(
            r"^(Votre demande a été envoyée à la CAF le |La CAF a bien reçu|La CAF a répondu le )"))
        expect(phone.locator("#ensuite")).to_be_visible()
        expect(phone.locator("#horaires")).to_be_visible()
        assert "Suivi-Navigateur" not in phone.content() and "1984" not in phone.content()
        screenshot(phone, "suivi-telephone", full_page=True)
        # Typed by hand from the paper: lower case, spaces.
        phone.goto(f"{base}/suivi")
        phone.get_by_label("Code de suivi").fill(code.lower().replace("-", " "))
        phone.get_by_role("button", name="Voir ma demande").click()
        expect(phone).to_have_url(f"{base}/suivi/{code}")
        expect(phone.locator("h1")).to_contain_text("Bonjour Lucie")
    finally:
        phone.context.close()
    citizen = new_page()  # axe-core needs scripts: the same page in a browser that runs them
    citizen.goto(link)
    accessible_at_both_widths(citizen, "suivi de la demande")
    citizen.goto(f"{base}/suivi")
    accessible_at_both_widths(citizen, "saisie du code de suivi")

    # Closed 31 days ago (once the demo's CAF answered): the link no longer opens anything.
    with httpx.Client(base_url=base, timeout=10.0) as client:
        auth = api_auth(client)
        deadline = time.monotonic() + 30
        while client.get(f"/api/v1/referrals/{referral_id}", headers=auth).json()["status"] != "answered":
            assert time.monotonic() < deadline, "the demo CAF did not answer"
            time.sleep(0.3)
        closed = client.post(f"/api/v1/referrals/{referral_id}/close", headers=auth, json={"outcome": "resolved"})
        assert closed.status_code < 300, closed.text
    run_coroutine(_ended_long_ago(platform.database_url, referral_id))
    phone = phone_without_javascript(browser)
    try:
        phone.goto(link)
        expect(phone.locator("#introuvable")).to_have_text("Ce lien de suivi ne fonctionne pas")
        expect(phone.locator("main")).to_contain_text("Revenez au France Services pour un nouveau lien.")
        assert "Lucie" not in phone.content()
    finally:
        phone.context.close()
    citizen.goto(link)
    accessible_at_both_widths(citizen, "lien de suivi expiré")
