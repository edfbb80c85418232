"""The place of the day and the confirmation of irreversible actions, in Chromium
against the whole platform (issue #12, items 3 and 9).

- A permanence scheduled today (whatever today is: its schedule is set for today's
  weekday through the sites service's API): signing in asks "Où travaillez-vous
  aujourd'hui ?" first; the choice is kept for the day (signing out and in again does
  not ask, and the visits opened then are at that place); the next day asks again.
- "Annuler la demande" and "Résolu sur place" ask first, on a page of their own (no
  JavaScript needed); "Non, revenir" changes nothing; a POST without the confirmation
  (a misclick, a forged form) changes nothing.
- Every page met passes axe-core at 1280 px and 375 px.

Screens: the sign-in form as `make run` shows it (no ProConnect: this platform has no
OpenID Connect), and the place page with a permanence scheduled today."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import httpx
from playwright.sync_api import Page, expect

from deploy.local.launcher import LocalPlatform, run_coroutine
from tests.browser.axe import accessible_at_both_widths
from tests.browser.browsing import api_auth, api_referral, api_visit, sign_in

ScreenShot = Callable[..., Path]
NewPage = Callable[[], Page]

PERMANENCE = "foulayronnes-mairie"
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


async def _scheduled(database_url: str, site_id: str, weekday: int) -> bool:
    conn = await asyncpg.connect(database_url)
    try:
        return bool(await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM referral.known_sites, jsonb_array_elements(schedule) AS slot"
            " WHERE site_id = $1 AND (slot->>'weekday')::int = $2)", site_id, weekday))
    finally:
        await conn.close()


def schedule_today(platform: LocalPlatform, site_id: str) -> None:
    """The permanence gets a slot on today's weekday (Paris), through the sites service as a
    supervisor of its department would; returns once the referral service knows it."""
    weekday = datetime.now(ZoneInfo("Europe/Paris")).isoweekday()
    with httpx.Client(base_url=platform.referral_url, timeout=10.0) as client:
        auth = api_auth(client, "demo-supervisor")
        site = client.get(f"{platform.sites_url}/api/v1/sites/{site_id}", headers=auth)
        site.raise_for_status()
        body: dict[str, Any] = {k: v for k, v in site.json().items()
                                if k not in ("created_at", "updated_at", "retired_at")}
        body["schedule"] = [s for s in body["schedule"] if s["weekday"] != weekday] + [
            {"weekday": weekday, "opens": "09:00", "closes": "12:00", "place": "Mairie de Foulayronnes"}]
        saved = client.post(f"{platform.sites_url}/api/v1/sites", json=body, headers=auth)
        assert saved.status_code in (200, 201), saved.text
    deadline = time.monotonic() + 30.0
    while not run_coroutine(_scheduled(platform.database_url, site_id, weekday)):
        assert time.monotonic() < deadline, "the schedule did not reach the referral service"
        time.sleep(0.2)


async def _sql(database_url: str, query: str, *args: Any) -> Any:
    conn = await asyncpg.connect(database_url)
    try:
        return await conn.fetchval(query, *args)
    finally:
        await conn.close()


def sign_out(page: Page) -> None:
    page.get_by_role("button", name="Se déconnecter").first.click()
    expect(page).to_have_url(re.compile(r"/connexion$"))


def test_the_place_of_the_day_is_asked_when_a_permanence_is_scheduled_and_kept_for_the_day(
        platform: LocalPlatform, page: Page, new_page: NewPage, screenshot: ScreenShot) -> None:
    base = platform.referral_url
    schedule_today(platform, PERMANENCE)
    run_coroutine(_sql(platform.database_url, "DELETE FROM referral.places_of_the_day WHERE user_id = $1",
                       "demo-adviser"))

    # The sign-in form as `make run` shows it: no ProConnect button.
    page.goto(f"{base}/connexion")
    expect(page.get_by_role("heading", level=1)).to_have_text("Connexion")
    expect(page.get_by_text("ProConnect")).to_have_count(0)
    accessible_at_both_widths(page, "connexion")
    screenshot(page, "connexion")

    # Signing in: asked where first, the permanence scheduled today offered.
    sign_in(page, base, "demo-adviser", landing="/lieu")
    expect(page.get_by_role("heading", level=1)).to_have_text("Où travaillez-vous aujourd'hui ?")
    expect(page.locator('label[for="place-foulayronnes-mairie"]')).to_contain_text(
        "aujourd'hui 09:00–12:00 (Mairie de Foulayronnes)")
    accessible_at_both_widths(page, "lieu du jour")
    page.locator('label[for="place-foulayronnes-mairie"]').click()
    expect(page.locator("#place-foulayronnes-mairie")).to_be_checked()
    screenshot(page, "lieu-du-jour")
    page.get_by_role("button", name="Choisir ce lieu").click()
    expect(page).to_have_url(f"{base}/aujourdhui")
    expect(page.locator("#lieu-du-jour")).to_contain_text("Foulayronnes")

    # Signing out and in again the same day: not asked again, the place kept; a visit
    # opened now is at the permanence, not at the home site.
    sign_out(page)
    expect(signing_in(page, base, "demo-adviser")).to_have_url(f"{base}/aujourdhui")
    expect(page.locator("#lieu-du-jour")).to_contain_text("Foulayronnes")
    page.get_by_role("link", name="Nouvelle visite").first.click()
    page.locator("#given_name").fill("Anne")
    page.locator("#family_name").fill("Roux")
    page.locator('label[for="contact_channel-none"]').click()
    if page.locator("#consent").count():
        page.locator('label[for="consent"]').click()
    page.get_by_role("button", name="Ouvrir la visite").click()
    expect(page).to_have_url(re.compile(f"{re.escape(base)}/visites/{UUID}$"))
    visit_id = page.url.rsplit("/", 1)[1]
    assert run_coroutine(_sql(platform.database_url, "SELECT site_id FROM referral.visits WHERE visit_id = $1",
                              visit_id)) == PERMANENCE

    # The next day: asked again.
    sign_out(page)
    run_coroutine(_sql(platform.database_url, "UPDATE referral.places_of_the_day SET day = day - 1"
                       " WHERE user_id = $1", "demo-adviser"))
    expect(signing_in(page, base, "demo-adviser")).to_have_url(f"{base}/lieu")
    expect(page.locator("#place-agen-leon-blum-poste")).to_be_checked()  # the home site until chosen
    expect(page.locator("#lieu-du-jour")).not_to_contain_text("Foulayronnes")

    # An adviser whose site has no permanence today is not asked.
    other = new_page()
    expect(signing_in(other, base, "demo-adviser-martignas")).to_have_url(f"{base}/aujourdhui")


def signing_in(page: Page, base: str, user_id: str) -> Page:
    """Fills and sends the sign-in form, and waits for the page it leads to."""
    page.goto(f"{base}/connexion")
    page.get_by_label("Identifiant").fill(user_id)
    page.get_by_label("Mot de passe").fill("demo")
    page.get_by_role("button", name="Se connecter").click()
    expect(page).not_to_have_url(re.compile(r"/connexion"))
    return page


def csrf_of(page: Page) -> str:
    return str(page.locator('input[name="csrf_token"]').first.get_attribute("value"))


def test_cancelling_a_referral_asks_first(platform: LocalPlatform, page: Page, new_page: NewPage) -> None:
    base = platform.referral_url
    # The desk plays `justice` and answers only when its expert does: the referral waits.
    referral_id = api_referral(platform, operator="justice", procedure="justice.casier-judiciaire",
                               family_name="Martin")
    sign_in(page, base, "demo-adviser")
    page.goto(f"{base}/demandes/{referral_id}")
    expect(page.locator("#statut")).to_have_attribute("data-status", re.compile("routed|acknowledged|requested"))
    # No form posts the cancellation from the referral's page; the link is the last action, tertiary.
    expect(page.locator('form[action$="/annuler"]')).to_have_count(0)
    cancel = page.locator("#actions").get_by_role("link", name="Annuler la demande")
    expect(cancel).to_have_class(re.compile("fr-btn--tertiary"))
    accessible_at_both_widths(page, "demande en attente")

    cancel.click()
    expect(page).to_have_url(f"{base}/demandes/{referral_id}/annuler")
    expect(page.get_by_role("heading", level=1)).to_have_text("Annuler la demande de Lucie Martin ?")
    expect(page.locator("main")).to_contain_text("L'opérateur en sera informé.")
    accessible_at_both_widths(page, "confirmer l'annulation")
    page.get_by_role("link", name="Non, revenir à la demande").click()
    expect(page).to_have_url(f"{base}/demandes/{referral_id}")
    expect(page.locator("#statut")).not_to_have_attribute("data-status", "cancelled")

    # A POST without the confirmation (a misclick, a forged form): asked, nothing done.
    forged = page.request.post(f"{base}/demandes/{referral_id}/annuler",
                               form={"csrf_token": csrf_of(page), "reason": "forgé"}, max_redirects=0)
    assert forged.status == 200 and 'name="confirmation"' in forged.text()
    page.reload()
    expect(page.locator("#statut")).not_to_have_attribute("data-status", "cancelled")

    page.locator("#actions").get_by_role("link", name="Annuler la demande").click()
    page.get_by_label("Motif").fill("La personne a renoncé.")
    page.get_by_role("button", name="Oui, annuler la demande").click()
    expect(page).to_have_url(re.compile(f"/demandes/{referral_id}\\?fait=annuler$"))
    expect(page.locator("#statut")).to_have_attribute("data-status", "cancelled")
    expect(page.locator("#actions").get_by_role("link", name="Annuler la demande")).to_have_count(0)

    # Another site's adviser: the confirmation page is not found; a supervisor may not act.
    stranger = new_page()
    sign_in(stranger, base, "demo-adviser-martignas")
    stranger.goto(f"{base}/demandes/{referral_id}/annuler")
    expect(stranger.get_by_role("heading", level=1)).to_have_text("Demande introuvable")
    supervisor = new_page()
    sign_in(supervisor, base, "demo-supervisor")
    assert supervisor.goto(f"{base}/demandes/{referral_id}/annuler").status == 403  # type: ignore[union-attr]
    expect(page.locator('#chronologie > li[data-event="cancelled"]')).to_contain_text("La personne a renoncé.")


def test_solved_on_the_spot_asks_first(platform: LocalPlatform, page: Page) -> None:
    base = platform.referral_url
    visit_id = api_visit(platform, family_name="Lefèvre", given_name="Paul", citizen={"contact": {"channel": "none"}})
    sign_in(page, base, "demo-adviser")
    page.goto(f"{base}/visites/{visit_id}")
    expect(page.locator('form[action$="/resolu"]')).to_have_count(0)
    page.get_by_role("link", name="Résolu sur place").click()
    expect(page).to_have_url(f"{base}/visites/{visit_id}/resolu")
    expect(page.get_by_role("heading", level=1)).to_have_text("La demande de Paul Lefèvre est-elle résolue sur place ?")
    accessible_at_both_widths(page, "confirmer « résolu sur place »")
    page.get_by_role("link", name="Non, revenir à la visite").click()
    expect(page).to_have_url(f"{base}/visites/{visit_id}")
    expect(page.locator("main")).to_contain_text("En cours")

    forged = page.request.post(f"{base}/visites/{visit_id}/resolu", form={"csrf_token": csrf_of(page)},
                               max_redirects=0)
    assert forged.status == 200 and 'name="confirmation"' in forged.text()
    page.reload()
    expect(page.locator("main")).to_contain_text("En cours")

    page.get_by_role("link", name="Résolu sur place").click()
    page.get_by_role("button", name="Oui, c'est résolu").click()
    expect(page).to_have_url(f"{base}/visites/{visit_id}?resolu=1")
    expect(page.locator("main")).to_contain_text("Visite close : résolu sur place.")
    accessible_at_both_widths(page, "visite close")
