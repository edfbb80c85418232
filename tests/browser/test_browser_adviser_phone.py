"""The adviser's pages and the operator desk on a phone (375 px) and on a laptop (1280 px).

- Every adviser page (sign-in, today, place of the day, new visit, visit, each step of
  referring, a referral, search, statistics, journal, a 404) passes axe-core at both
  widths, and nothing is wider than the phone's screen.
- On a phone the "Menu" button opens DSFR's menu, where the place of the day, the name
  and "Se déconnecter" are; without JavaScript the menu shows under the header.
- "Aller au menu" leads to something visible at every width.
- The menu marks the current page, and only it.
- After a form refused by the server, focus is on the error summary.
- An unknown address gives a browser the UI's "Page introuvable"; the API keeps JSON.
- The desk, the same at 375 px: its menu, its tables, its 404.

Phone screenshots: telephone-aujourdhui, telephone-menu, telephone-demande (docs/screens/ with `make screens`)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import httpx
from playwright.sync_api import Browser, Page, expect

from deploy.local.launcher import LocalPlatform
from tests.browser.axe import DESKTOP, PHONE, assert_accessible
from tests.browser.browsing import api_referral, desk_case_link, sign_in

ScreenShot = Callable[..., Path]

UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
# A summary with a long word (a pasted address): it must wrap, not widen the page.
LONG_WORD = "https://www.caf.fr/allocataires/mes-services-en-ligne/faire-une-demande-de-prestation/" + "x" * 40


def settle(page: Page) -> None:
    """Two animation frames: DSFR's script reacts to a resize in the next frame."""
    page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")


# The elements sticking out on the right, innermost first (for the message).
_WIDE = """() => [...document.body.querySelectorAll('*')]
  .filter(e => e.getBoundingClientRect().right > window.innerWidth + 1)
  .filter(e => !e.closest('.fr-table__container, .fr-modal:not(.fr-modal--opened)'))
  .filter(e => ![...e.children].some(c => c.getBoundingClientRect().right > window.innerWidth + 1))
  .slice(0, 8).map(e => e.outerHTML.slice(0, 160))"""


def fits(page: Page, context: str) -> None:
    width, inner = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
    assert width <= inner, f"{context}: the page is {width} px wide on a {inner} px screen: {page.evaluate(_WIDE)}"


def both_widths(page: Page, context: str) -> None:
    """axe-core at 1280 px and at 375 px, and nothing wider than the phone; ends at 375 px."""
    page.set_viewport_size(DESKTOP)
    settle(page)
    assert_accessible(page, f"{context}, 1280 px")
    page.set_viewport_size(PHONE)
    settle(page)
    assert_accessible(page, f"{context}, 375 px")
    fits(page, f"{context}, 375 px")


def current_menu_entries(page: Page) -> list[tuple[str, str]]:
    return [(str(text).strip(), str(value)) for text, value in page.eval_on_selector_all(
        "#menu [aria-current]", "links => links.map(a => [a.textContent, a.getAttribute('aria-current')])")]


def test_every_adviser_page_is_accessible_and_fits_a_phone(platform: LocalPlatform, page: Page,
                                                           screenshot: ScreenShot) -> None:
    base = platform.referral_url
    page.goto(f"{base}/connexion")
    both_widths(page, "connexion")
    page.set_viewport_size(DESKTOP)
    sign_in(page, base, "demo-adviser")
    both_widths(page, "aujourd'hui")

    page.goto(f"{base}/lieu")
    both_widths(page, "lieu du jour")
    assert current_menu_entries(page) == []  # the place is a tool, not a menu entry
    page.set_viewport_size(DESKTOP)
    expect(page.locator("#lieu-du-jour")).to_have_attribute("aria-current", "page")

    page.goto(f"{base}/visites/nouvelle")
    both_widths(page, "nouvelle visite")
    assert current_menu_entries(page) == [("Nouvelle visite", "page")]
    page.locator("#given_name").fill("Nadia")
    page.locator("#family_name").fill("Benali-Lefèvre-Dupont-de-Saint-Exupéry")
    page.locator("#birth_date").fill("1979-11-23")
    page.locator('label[for="contact_channel-post"], label[for="contact_channel-none"]').first.click()
    page.locator("#street").fill("12 avenue du Général-de-Gaulle")
    page.locator("#postcode").fill("47000")
    page.locator("#city").fill("Agen")
    page.get_by_role("button", name="Ouvrir la visite").click()
    expect(page).to_have_url(re.compile(f"/visites/{UUID}$"))
    both_widths(page, "visite")
    assert all(value != "page" for _, value in current_menu_entries(page))

    # Referring, at each step.
    page.get_by_role("link", name="Orienter vers un opérateur").click()
    expect(page).to_have_url(re.compile(r"/orienter$"))
    page.wait_for_load_state()
    both_widths(page, "orienter : opérateur")
    page.set_viewport_size(DESKTOP)
    page.locator("#operator").select_option("caf")
    choose = page.get_by_role("button", name="Choisir la démarche")
    if not page.locator("#procedure").is_visible() and choose.is_visible():
        choose.click()
    expect(page.locator("#procedure")).to_be_visible()
    both_widths(page, "orienter : démarche")
    page.set_viewport_size(DESKTOP)
    page.locator("#procedure").select_option("caf.prime-activite")
    page.locator("#summary").fill(f"La prime d'activité a baissé ; la page vue par la personne : {LONG_WORD}")
    page.get_by_role("button", name="Vérifier et voir l'échéance").click()
    expect(page.locator("#echeance")).to_be_visible()
    both_widths(page, "orienter : vérification")
    page.set_viewport_size(DESKTOP)
    for field, value in (("#street", "12 avenue du Général-de-Gaulle"), ("#postcode", "47000"), ("#city", "Agen")):
        if page.locator(field).count() and not page.locator(field).input_value():
            page.locator(field).fill(value)
    consent = page.locator("#consent")
    if consent.count() and not consent.is_checked():
        page.locator('label[for="consent"]').click()
    page.get_by_role("button", name="Envoyer la demande").click()
    expect(page).to_have_url(re.compile(f"/demandes/{UUID}"))
    both_widths(page, "demande")
    assert current_menu_entries(page) == [("Demandes", "true")]  # the section, not the page
    page.evaluate("window.scrollTo(0, 0)")
    screenshot(page, "telephone-demande")

    page.goto(f"{base}/demandes")
    both_widths(page, "demandes")
    assert current_menu_entries(page) == [("Demandes", "page")]
    page.goto(f"{base}/statistiques")
    both_widths(page, "statistiques")
    assert current_menu_entries(page) == [("Statistiques", "page")]
    # The tables scroll sideways on a phone: reachable by the keyboard, named.
    for region in page.locator(".fr-table__container").all():
        expect(region).to_have_attribute("tabindex", "0")
        expect(region).to_have_attribute("aria-label", re.compile(r"\S"))

    page.goto(f"{base}/aujourdhui")
    both_widths(page, "aujourd'hui (avec une demande)")
    assert current_menu_entries(page) == [("Aujourd'hui", "page")]
    screenshot(page, "telephone-aujourdhui")

    answer = page.goto(f"{base}/cette-page-n-existe-pas")
    assert answer is not None and answer.status == 404
    both_widths(page, "page introuvable")


def test_the_phone_menu_opens_and_holds_the_place_and_signing_out(platform: LocalPlatform, page: Page,
                                                                  screenshot: ScreenShot) -> None:
    base = platform.referral_url
    sign_in(page, base, "demo-adviser")
    page.set_viewport_size(PHONE)
    page.goto(f"{base}/demandes")
    settle(page)
    expect(page.locator("#lieu-du-jour")).to_be_hidden()  # the header's tools: not on a phone
    menu = page.locator("#menu-modal")
    expect(menu).to_be_hidden()
    page.get_by_role("button", name="Menu").click()
    expect(menu).to_be_visible()
    expect(menu.get_by_role("link", name=re.compile("^Lieu"))).to_be_visible()
    expect(menu.get_by_role("button", name="Se déconnecter")).to_be_visible()
    expect(menu.get_by_role("link", name="Demandes")).to_have_attribute("aria-current", "page")
    expect(menu).to_contain_text("Sophie")
    expect(menu).not_to_contain_text("(Conseiller)")
    assert_accessible(page, "menu ouvert, 375 px")
    screenshot(page, "telephone-menu")
    menu.get_by_role("button", name="Fermer").click()
    expect(menu).to_be_hidden()

    # By the keyboard: Enter opens it, focus goes into it, Escape closes it and gives focus back.
    page.locator("#bouton-menu").focus()
    page.keyboard.press("Enter")
    expect(menu).to_be_visible()
    assert page.evaluate("() => !!document.activeElement.closest('#menu-modal')"), "focus stayed out of the menu"
    page.keyboard.press("Escape")
    expect(menu).to_be_hidden()
    expect(page.locator("#bouton-menu")).to_be_focused()

    page.get_by_role("button", name="Menu").click()
    menu.get_by_role("link", name=re.compile("^Lieu")).click()
    expect(page).to_have_url(re.compile(r"/lieu$"))
    page.get_by_role("button", name="Menu").click()
    menu.get_by_role("button", name="Se déconnecter").click()
    expect(page).to_have_url(re.compile(r"/connexion"))


def test_aller_au_menu_leads_to_something_visible_at_every_width(platform: LocalPlatform, page: Page) -> None:
    base = platform.referral_url
    sign_in(page, base, "demo-adviser")
    for size in (DESKTOP, PHONE):
        page.set_viewport_size(size)
        page.goto(f"{base}/aujourdhui")
        settle(page)
        page.keyboard.press("Tab")
        page.keyboard.press("Tab")
        focused = page.evaluate("() => [document.activeElement.textContent,"
                                " document.activeElement.getAttribute('href')]")
        assert focused[0] == "Aller au menu", f"{size['width']} px: focus on {focused}"
        target = page.locator(str(focused[1]))
        expect(target).to_be_visible()
        page.keyboard.press("Enter")
        at_menu = "() => !!document.activeElement.closest('#menu, .fr-header__navbar')"
        if not page.evaluate(at_menu):  # the menu button is focused itself; in the nav, the next stop
            page.keyboard.press("Tab")
        inside = page.evaluate(at_menu)
        assert inside, f"{size['width']} px: after the skip link, focus is not at the menu"


def test_without_javascript_the_menu_shows_on_a_phone(platform: LocalPlatform, browser: Browser) -> None:
    base = platform.referral_url
    context = browser.new_context(viewport=PHONE, locale="fr-FR", java_script_enabled=False)
    try:
        page = context.new_page()
        sign_in(page, base, "demo-adviser")
        page.goto(f"{base}/statistiques")
        expect(page.get_by_role("button", name="Menu")).to_be_hidden()  # it needs the script
        expect(page.get_by_role("link", name="Statistiques")).to_be_visible()
        expect(page.locator("#lieu-du-jour-mobile")).to_be_visible()
        skip = page.locator(".fr-skiplinks a", has_text="Aller au menu")
        expect(skip).to_have_count(2)
        visible = [a for a in skip.all() if a.evaluate("a => getComputedStyle(a.closest('li')).display !== 'none'")]
        assert len(visible) == 1 and visible[0].get_attribute("href") == "#menu"
        fits(page, "statistiques sans script, 375 px")
        page.locator(".fr-header__menu").get_by_role("button", name="Se déconnecter").click()
        expect(page).to_have_url(re.compile(r"/connexion"))
    finally:
        context.close()


def test_the_menu_marks_only_the_current_page(platform: LocalPlatform, page: Page) -> None:
    base = platform.referral_url
    sign_in(page, base, "demo-supervisor")
    expected = {"/aujourdhui": [("Aujourd'hui", "page")], "/demandes": [("Demandes", "page")],
                "/demandes?reference=abc": [("Demandes", "page")],
                "/statistiques": [("Statistiques", "page")], "/journal": [("Journal", "page")],
                "/cette-page-n-existe-pas": []}
    for path, entries in expected.items():
        page.goto(f"{base}{path}")
        assert current_menu_entries(page) == entries, path
    # The supervisor's role is told, in words, after the name.
    expect(page.locator(".fr-header__tools .ui-who")).to_have_text(re.compile(r"^\S.* — superviseur$"))
    page.goto(f"{base}/journal")
    both_widths(page, "journal (superviseur)")


def test_a_form_refused_by_the_server_puts_focus_on_its_error_summary(platform: LocalPlatform, page: Page) -> None:
    base = platform.referral_url
    sign_in(page, base, "demo-adviser")
    page.goto(f"{base}/visites/nouvelle")
    page.locator("#given_name").fill("Camille")
    page.locator("form:has(#given_name)").evaluate("form => { form.noValidate = true; }")  # the server decides
    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        page.get_by_role("button", name="Ouvrir la visite").click()
    assert answer.value.status == 422
    summary = page.locator("#erreurs")
    expect(summary).to_be_visible()
    expect(summary).to_be_focused()
    both_widths(page, "nouvelle visite refusée")


def test_an_unknown_address_gives_a_browser_the_page_and_the_api_json(platform: LocalPlatform, page: Page) -> None:
    base = platform.referral_url
    answer = page.goto(f"{base}/demandes-perdues/123")
    assert answer is not None and answer.status == 404
    assert answer.headers["content-type"].startswith("text/html")
    expect(page.get_by_role("heading", level=1)).to_have_text("Page introuvable")
    expect(page.locator("header.fr-header")).to_be_visible()
    expect(page.get_by_role("link", name="Retour à l'accueil")).to_be_visible()
    both_widths(page, "page introuvable (sans session)")

    with httpx.Client(timeout=10.0) as client:
        for url, accept in ((f"{base}/api/v1/nimporte-quoi", "text/html,*/*"),
                            (f"{base}/nimporte-quoi", "application/json"),
                            (f"{platform.url('desk')}/nimporte-quoi", "application/json")):
            api = client.get(url, headers={"Accept": accept})
            assert api.status_code == 404 and api.headers["content-type"].startswith("application/json"), url
            assert api.json() == {"detail": "Not Found"}

    answer = page.goto(f"{platform.url('desk')}/dossiers-perdus")
    assert answer is not None and answer.status == 404
    expect(page.get_by_role("heading", level=1)).to_have_text("Page introuvable")
    both_widths(page, "guichet : page introuvable")


def test_the_desk_on_a_phone(platform: LocalPlatform, page: Page) -> None:
    referral_id = api_referral(platform, operator="justice", procedure="justice.casier-judiciaire",
                               family_name="Durand")
    desk = platform.url("desk")
    page.goto(f"{desk}/connexion")
    both_widths(page, "guichet : connexion")
    page.set_viewport_size(DESKTOP)
    desk_case_link(page, desk, referral_id)
    both_widths(page, "guichet : dossiers reçus")
    region = page.locator("#dossiers .fr-table__container")
    expect(region).to_have_attribute("tabindex", "0")

    page.goto(f"{desk}/dossiers/{referral_id}")
    both_widths(page, "guichet : dossier")
    expect(page.locator("main")).not_to_contain_text("que Expert")
    expect(page.locator("main")).to_contain_text("le dossier est pris en charge par")

    # The phone's menu: the name and signing out.
    page.set_viewport_size(PHONE)
    settle(page)
    menu = page.locator("#menu-modal")
    expect(menu).to_be_hidden()
    page.get_by_role("button", name="Menu").click()
    expect(menu).to_be_visible()
    assert_accessible(page, "guichet : menu ouvert, 375 px")
    menu.get_by_role("button", name="Se déconnecter").click()
    expect(page).to_have_url(re.compile(r"/connexion"))
