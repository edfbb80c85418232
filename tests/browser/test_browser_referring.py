"""Referring a visit, in Chromium against the whole platform (issue #12, items 4, 8, 10
and the keyboard-only main path).

- Choosing an operator does not reload the page (WCAG 3.2.2): with arrow keys on the
  operator list, focus stays on it, the procedure list is replaced in place and a
  polite live region says so; without JavaScript the "Choisir la démarche" button does
  the same through the server.
- Consent is asked once, where it means something: not on the new-visit form, and at
  the confirmation, unticked, before the transmission to this operator.
- What the procedure needs of the citizen (catalogue.yaml, `citizen_fields`) and the
  visit lacks is said in words when the procedure is chosen, asked at the confirmation
  and required before sending; the JSON API answers 422 naming the field, and the
  visit can be completed through `PATCH /api/v1/visits/{id}/citizen` (not by another
  site's adviser, nor by a read-only supervisor).
- The main path by keyboard alone (Tab, Shift+Tab, arrows, Space, Enter; no click) at
  1280 px, and the referral form at 375 px.
- Every step of the referral form passes axe-core at 1280 px and 375 px."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import httpx
from playwright.sync_api import Browser, Page, expect

from deploy.local.launcher import LocalPlatform
from tests.browser.axe import DESKTOP, PHONE, accessible_at_both_widths
from tests.browser.browsing import api_auth, api_visit, sign_in

NewPage = Callable[[], Page]

UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
SUMMARY = "La personne a besoin d'un extrait de casier judiciaire pour un emploi."


def bare_visit(platform: LocalPlatform, family_name: str, **citizen: Any) -> str:
    """A visit at the adviser's home site through the API, its citizen without a birth
    date nor an address unless given; returns its id."""
    return api_visit(platform, family_name=family_name, given_name="Louise",
                     citizen={"contact": {"channel": "none"}, **citizen})


def focused(page: Page) -> str:
    return str(page.evaluate("document.activeElement ? (document.activeElement.id || "
                             "document.activeElement.textContent.trim()) : ''"))


def tab_to(page: Page, selector: str, *, text: str | None = None, back: bool = False, most: int = 80) -> None:
    """Tab (or Shift+Tab) until the focused element matches `selector` (and has `text`),
    as a keyboard user moves through the page."""
    for _ in range(most):
        if page.evaluate("([s, t]) => { const e = document.activeElement; return !!e && e.matches(s)"
                         " && (t === null || e.textContent.trim() === t); }", [selector, text]):
            return
        page.keyboard.press("Shift+Tab" if back else "Tab")
    raise AssertionError(f"{selector} not reached with {'Shift+Tab' if back else 'Tab'} (focus on {focused(page)!r})")


def arrow_to(page: Page, value: str, *, most: int = 30) -> None:
    """ArrowDown on the focused <select> until it holds `value`; the page must stay the
    same document (no reload) and the focus on the list, at every step."""
    list_id = focused(page)
    page.evaluate("window.__sameDocument = 'oui'")
    for _ in range(most):
        if page.evaluate("document.activeElement.value") == value:
            return
        page.keyboard.press("ArrowDown")
        assert page.evaluate("window.__sameDocument") == "oui", "the page was reloaded by an arrow key"
        assert focused(page) == list_id, f"focus left the list for {focused(page)!r}"
    raise AssertionError(f"{value} not reached with ArrowDown in #{list_id}")


def signed_in(new_page: NewPage, platform: LocalPlatform, user: str = "demo-adviser") -> Page:
    page = new_page()
    sign_in(page, platform.referral_url, user)
    return page


# ---------------------------------------------------------------- item 4: no reload on input


def test_choosing_an_operator_by_arrow_keys_replaces_the_procedures_in_place(
        platform: LocalPlatform, new_page: NewPage) -> None:
    base = platform.referral_url
    visit_id = bare_visit(platform, "Arrowsmith", birth_date="1970-05-06")
    page = signed_in(new_page, platform)
    page.goto(f"{base}/visites/{visit_id}/orienter")
    page.wait_for_load_state()  # refer.js starts from DOMContentLoaded
    expect(page.locator("#ui-procedure-part")).to_be_hidden()
    accessible_at_both_widths(page, "orienter, opérateur")
    navigations: list[str] = []
    page.on("framenavigated", lambda frame: navigations.append(frame.url) if frame == page.main_frame else None)

    page.locator("#operator").focus()
    arrow_to(page, "caf")
    assert navigations == [], f"choosing an operator navigated: {navigations}"
    assert focused(page) == "operator"
    expect(page.locator("#ui-procedure-part")).to_be_visible()
    expect(page.locator("#procedure option[value='caf.prime-activite']")).to_have_count(1)
    expect(page.locator("#procedure option[value='justice.casier-judiciaire']")).to_have_count(0)
    expect(page.locator("#ui-procedures-status")).to_contain_text("Liste des démarches mise à jour")
    expect(page.get_by_role("button", name="Choisir la démarche")).to_have_count(0)  # the no-JS step

    page.keyboard.press("ArrowDown")  # another operator: the list follows, still no reload
    chosen = page.evaluate("document.activeElement.value")
    assert chosen != "caf" and navigations == []
    first = page.locator("#procedure option").nth(1).get_attribute("value") or ""
    assert first.startswith(f"{chosen}."), (chosen, first)
    accessible_at_both_widths(page, "orienter, démarches (JavaScript)")


def test_without_javascript_the_button_shows_the_procedures(browser: Browser, platform: LocalPlatform) -> None:
    base = platform.referral_url
    visit_id = bare_visit(platform, "Sansscript", birth_date="1970-05-06")
    context = browser.new_context(java_script_enabled=False, viewport=DESKTOP, locale="fr-FR")
    try:
        page = context.new_page()
        sign_in(page, base, "demo-adviser")
        page.goto(f"{base}/visites/{visit_id}/orienter")
        expect(page.locator("#ui-procedure-part")).to_be_hidden()
        page.locator("#operator").select_option("caf")
        page.get_by_role("button", name="Choisir la démarche").click()
        expect(page.locator("#ui-procedure-part")).to_be_visible()
        expect(page.locator("#procedure option[value='caf.prime-activite']")).to_have_count(1)
        expect(page.get_by_role("button", name="Changer d'opérateur")).to_be_visible()
    finally:
        context.close()


# ----------------------------------------------------------------- item 8: consent asked once


def test_consent_is_asked_once_at_the_transmission(platform: LocalPlatform, new_page: NewPage) -> None:
    base = platform.referral_url
    page = signed_in(new_page, platform)
    page.goto(f"{base}/visites/nouvelle")
    expect(page.locator("form[action='/visites/nouvelle'] input[type=checkbox]")).to_have_count(0)
    expect(page.locator("body")).not_to_contain_text("accepte que sa demande")
    accessible_at_both_widths(page, "nouvelle visite")

    visit_id = bare_visit(platform, "Consentement", birth_date="1970-05-06",
                          contact={"channel": "none", "postal_address": {
                              "street": "1 rue Neuve", "postcode": "47000", "city": "Agen"}})
    page.goto(f"{base}/visites/{visit_id}/orienter?operateur=caf")
    page.locator("#procedure").select_option("caf.prime-activite")
    page.locator("#summary").fill("Prime d'activité en baisse.")
    page.get_by_role("button", name="Vérifier et voir l'échéance").click()
    consent = page.locator("#consent")
    expect(consent).not_to_be_checked()
    expect(page.locator("label[for=consent]")).to_contain_text("transmises à Caisse")
    page.get_by_role("button", name="Envoyer la demande").click()  # not given: not sent
    expect(page.locator("#consent-error")).to_be_visible()
    expect(page).to_have_url(re.compile(r"/orienter$"))


# ------------------------------------------------- item 10: what the procedure needs, required


def test_a_criminal_record_extract_asks_the_birth_date_before_sending(
        platform: LocalPlatform, new_page: NewPage) -> None:
    base = platform.referral_url
    visit_id = bare_visit(platform, "Sansdate")
    page = signed_in(new_page, platform)
    page.goto(f"{base}/visites/{visit_id}/orienter")
    page.wait_for_load_state()
    page.locator("#operator").select_option("justice")
    page.locator("#procedure").select_option("justice.casier-judiciaire")
    expect(page.locator("#ui-needs")).to_contain_text("date de naissance")  # said when chosen
    page.locator("#summary").fill(SUMMARY)
    page.get_by_role("button", name="Vérifier et voir l'échéance").click()

    expect(page.locator("#besoins")).to_contain_text("a besoin de : date de naissance")
    expect(page.locator("#birth_date")).to_have_attribute("required", "")
    page.locator("label[for=consent]").click()
    accessible_at_both_widths(page, "orienter, vérification avec la date de naissance à ajouter")
    page.get_by_role("button", name="Envoyer la demande").click()  # without it: refused, said where
    expect(page.locator("#birth_date-error")).to_contain_text("date de naissance")
    expect(page.locator("#erreurs")).to_be_visible()
    expect(page).to_have_url(re.compile(r"/orienter$"))
    accessible_at_both_widths(page, "orienter, date de naissance manquante")

    page.locator("#birth_date").fill("1975-09-14")
    if not page.locator("#consent").is_checked():
        page.locator("label[for=consent]").click()
    page.get_by_role("button", name="Envoyer la demande").click()
    expect(page).to_have_url(re.compile(f"/demandes/{UUID}$"))

    # The visit now holds the birth date: the next referral needing it goes straight on.
    with httpx.Client(base_url=base, timeout=10.0) as client:
        again = client.post(f"/api/v1/visits/{visit_id}/referrals", headers=api_auth(client), json={
            "operator": "justice", "procedure": "justice.casier-judiciaire", "summary": "Un second extrait.",
            "consent": {"given": True}})
        assert again.status_code == 201, again.text


def test_the_api_refuses_a_referral_missing_a_needed_field_and_lets_the_visit_be_completed(
        platform: LocalPlatform) -> None:
    visit_id = bare_visit(platform, "Apisansdate")
    referral = {"operator": "justice", "procedure": "justice.casier-judiciaire", "summary": SUMMARY,
                "consent": {"given": True}}
    with httpx.Client(base_url=platform.referral_url, timeout=10.0) as client:
        adviser = api_auth(client)
        refused = client.post(f"/api/v1/visits/{visit_id}/referrals", headers=adviser, json=referral)
        assert refused.status_code == 422, refused.text
        assert refused.json()["errors"][0]["field"] == "citizen.birth_date"

        # Another site's adviser and a read-only supervisor may not complete it.
        for who in ("demo-adviser-martignas", "demo-supervisor"):
            forged = client.patch(f"/api/v1/visits/{visit_id}/citizen", headers=api_auth(client, who),
                                  json={"birth_date": "1960-01-01"})
            assert forged.status_code in (403, 404), (who, forged.status_code, forged.text)
        assert client.post(f"/api/v1/visits/{visit_id}/referrals", headers=adviser,
                           json=referral).status_code == 422
        assert client.patch(f"/api/v1/visits/{visit_id}/citizen", headers=adviser,
                            json={"birth_date": "2999-01-01", "unknown": 1}).status_code == 422

        completed = client.patch(f"/api/v1/visits/{visit_id}/citizen", headers=adviser,
                                 json={"birth_date": "1975-09-14"})
        assert completed.status_code == 204, completed.text
        sent = client.post(f"/api/v1/visits/{visit_id}/referrals", headers=adviser, json=referral)
        assert sent.status_code == 201, sent.text


# ------------------------------------------------------------ the main path by keyboard alone


def _sign_in_by_keyboard(page: Page, base: str) -> None:
    page.goto(f"{base}/connexion")
    tab_to(page, "#user_id")
    page.keyboard.type("demo-adviser")
    page.keyboard.press("Tab")
    page.keyboard.type("demo")
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"/(aujourdhui|lieu)(\?.*)?$"))
    if "/lieu" in page.url:  # a permanence today: the home site is chosen, by keyboard too
        tab_to(page, "button[type=submit]", text="Choisir ce lieu")
        page.keyboard.press("Enter")
        expect(page).to_have_url(re.compile(r"/aujourdhui(\?.*)?$"))


def _refer_by_keyboard(page: Page, *, width: str) -> None:
    """From the visit's page: the referral form, then the confirmation with the birth
    date to add, then sent — Tab, arrows, Space and Enter only."""
    tab_to(page, "a[href$='/orienter']")
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"/orienter$"))
    page.wait_for_load_state()
    tab_to(page, "#operator")
    arrow_to(page, "justice")
    expect(page.locator("#ui-procedure-part")).to_be_visible()
    page.keyboard.press("Tab")
    assert focused(page) == "procedure"
    arrow_to(page, "justice.casier-judiciaire")
    expect(page.locator("#ui-needs")).to_contain_text("date de naissance")
    assert page.evaluate("document.documentElement.scrollWidth") <= page.evaluate("window.innerWidth"), \
        "the form is wider than the screen"
    accessible_at_both_widths(page, f"orienter au clavier ({width})")
    tab_to(page, "#summary")
    page.keyboard.type(SUMMARY)
    page.keyboard.press("Shift+Tab")  # back up to check the choice, then on again
    assert focused(page) == "procedure"
    tab_to(page, "button[value=confirm]")
    page.keyboard.press("Enter")
    expect(page.locator("#echeance")).to_be_visible()

    tab_to(page, "#birth_date")
    page.keyboard.type("14091975")  # jj/mm/aaaa in a French browser's date field
    tab_to(page, "#consent")
    page.keyboard.press("Space")
    expect(page.locator("#consent")).to_be_checked()
    accessible_at_both_widths(page, f"vérifier au clavier ({width})")
    tab_to(page, "button[value=send]")
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(f"/demandes/{UUID}$"))


def test_the_main_path_by_keyboard_alone(platform: LocalPlatform, new_page: NewPage) -> None:
    base = platform.referral_url
    page = new_page()
    _sign_in_by_keyboard(page, base)

    # Open a visit: the menu's "Nouvelle visite", the form filled by keyboard.
    tab_to(page, "a[href='/visites/nouvelle']")
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"/visites/nouvelle$"))
    tab_to(page, "#given_name")
    page.keyboard.type("Gaston")
    page.keyboard.press("Tab")
    page.keyboard.type("Clavier")
    tab_to(page, "input[name=contact_channel]")
    for _ in range(4):  # radios: arrows move the choice; to "Aucun"/none whatever the order
        if page.evaluate("document.activeElement.value") == "none":
            break
        page.keyboard.press("ArrowRight")
    page.keyboard.press("Space")
    assert page.evaluate("document.activeElement.value") == "none"
    tab_to(page, "form[action='/visites/nouvelle'] button[type=submit]")
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(f"/visites/{UUID}$"))

    _refer_by_keyboard(page, width="1280 px")


def test_the_referral_form_by_keyboard_at_375_px(platform: LocalPlatform, new_page: NewPage) -> None:
    base = platform.referral_url
    visit_id = bare_visit(platform, "Telephone")
    page = new_page()
    page.set_viewport_size(PHONE)
    _sign_in_by_keyboard(page, base)
    page.goto(f"{base}/visites/{visit_id}")
    page.set_viewport_size(PHONE)
    _refer_by_keyboard(page, width="375 px")
