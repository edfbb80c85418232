"""The adviser's UI in Chromium, against the whole platform and the operator simulator.

- An adviser signs in, picks a permanence as today's place, opens a visit, refers it to
  the CAF (operator, procedure, summary, the deadline shown before sending), sees the
  simulated answer arrive in the timeline without the page being reloaded, and closes
  the loop with an outcome — by mouse at 1280 px and at 375 px (the menu through DSFR's
  « Menu » button), each page checked with axe-core.
- An adviser of another site cannot open that referral (404 page).
- A form with a missing field shows the error next to the field, tied to it.
- The sign-in form can be filled and sent with the keyboard alone, focus visible.
- An agent signs in with ProConnect (a fake OpenID Connect provider on a loopback port);
  an agent without an account is told so.

The main screens are saved as PNG (1280x800); `make screens` puts them in docs/screens/ for the README."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import asyncpg
import pytest
from playwright.sync_api import Page, expect

from deploy.local.launcher import LocalPlatform, run_coroutine
from tests.browser.axe import assert_accessible
from tests.browser.browsing import api_referral, sign_in
from tests.integration.fake_oidc import CLIENT_ID, CLIENT_SECRET, FakeOidc

ScreenShot = Callable[..., Path]
NewPage = Callable[[], Page]

# The simulated operators wait before acknowledging and answering: the referral's page
# is on screen before the answer comes, so that it can only get there live.
# `mixed`: answers vary (resolved, appointment offered, documents needed) for the screens.
SIMULATOR_ARGS = ["--ack-delay", "2.5", "--answer-delay", "2.5", "--outcome", "mixed"]
# ProConnect, played by a fake provider (started by the test that uses it).
PROVIDER = FakeOidc()
PLATFORM_ENV = {"RELAIS_OIDC_ISSUER": PROVIDER.issuer, "RELAIS_OIDC_CLIENT_ID": CLIENT_ID,
                "RELAIS_OIDC_CLIENT_SECRET": CLIENT_SECRET,
                "RELAIS_OIDC_REDIRECT_URL": "{referral_url}/connexion/proconnect/retour"}
AGENT_EMAIL = "pierre.conseiller@laposte.example.fr"
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
LIVE_TIMEOUT_MS = 30_000


def label_for(page: Page, field_id: str) -> None:
    """Ticks a DSFR radio button or checkbox by its label, as a person clicks it."""
    page.locator(f'label[for="{field_id}"]').click()
    expect(page.locator(f"#{field_id}")).to_be_checked()


def from_the_menu(page: Page, phone: bool, link: str) -> None:
    """Follows a link of the header (the place of the day: "#lieu-du-jour") or of the menu
    (by its name), through DSFR's « Menu » button on a phone."""
    if phone:
        page.get_by_role("button", name="Menu").click()
        menu = page.locator("#menu-modal")
        expect(menu).to_be_visible()
        target = menu.locator(f"{link}-mobile") if link.startswith("#") else menu.get_by_role("link", name=link)
    else:
        target = page.locator(link) if link.startswith("#") else page.locator("#menu").get_by_role("link", name=link)
    target.click()


@pytest.mark.parametrize("width", [1280, 375])
def test_an_adviser_refers_and_sees_the_answer_arrive_live(platform: LocalPlatform, page: Page,
                                                           screenshot: ScreenShot, width: int) -> None:
    """The main path by mouse, on a laptop and on a phone; axe-core on each page (the
    README's pictures at 1280 px)."""
    base = platform.referral_url
    phone = width < 600
    page.set_viewport_size({"width": width, "height": 740 if phone else 800})

    def picture(name: str) -> None:
        if not phone:
            screenshot(page, name)

    # Sign in.
    page.goto(f"{base}/connexion")
    expect(page.get_by_role("heading", level=1)).to_have_text("Connexion")
    sign_in(page, base, "demo-adviser")
    expect(page.get_by_role("heading", level=1)).to_contain_text("Aujourd'hui")
    assert_accessible(page, f"aujourd'hui, {width} px")

    # Today's place: the Pont-du-Casse permanence.
    from_the_menu(page, phone, "#lieu-du-jour")
    expect(page).to_have_url(f"{base}/lieu")
    label_for(page, "place-pont-du-casse-mairie")
    assert_accessible(page, f"lieu du jour, {width} px")
    page.get_by_role("button", name="Choisir ce lieu").click()
    expect(page).to_have_url(f"{base}/aujourdhui")
    expect(page.locator("#lieu-du-jour-mobile" if phone else "#lieu-du-jour")).to_contain_text("Pont-du-Casse")

    # Open a visit.
    from_the_menu(page, phone, "Nouvelle visite")
    expect(page).to_have_url(f"{base}/visites/nouvelle")
    assert_accessible(page, f"nouvelle visite, {width} px")
    given = "Martine" if phone else "Michel"  # two people on Today's picture, not the same twice
    page.locator("#given_name").fill(given)
    page.locator("#family_name").fill("Cordier")
    page.locator("#birth_date").fill("1963-04-02")
    label_for(page, "contact_channel-email")
    page.locator("#email").fill(f"{given.lower()}.cordier@example.org")
    page.get_by_role("button", name="Ouvrir la visite").click()
    expect(page).to_have_url(re.compile(f"{re.escape(base)}/visites/{UUID}$"))
    expect(page.get_by_role("heading", level=1)).to_contain_text("Cordier")
    expect(page.locator("main").get_by_text("Pont-du-Casse").first).to_be_visible()  # the visit's place
    assert_accessible(page, f"visite, {width} px")

    # Refer: operator, then procedure and summary, then the deadline before sending.
    page.get_by_role("link", name="Orienter vers un opérateur").click()
    expect(page).to_have_url(re.compile(r"/visites/[0-9a-f-]+/orienter$"))
    page.wait_for_load_state()  # refer.js listens from DOMContentLoaded: a change before it is lost
    page.locator("#operator").select_option("caf")  # refer.js sends the step at once (else "Choisir la démarche")
    expect(page.locator("#procedure")).to_be_visible()
    page.locator("#procedure").select_option("caf.prime-activite")
    page.locator("#summary").fill("Le montant de la prime d'activité a baissé sans explication depuis septembre.")
    assert_accessible(page, f"orienter : démarche, {width} px")
    page.get_by_role("button", name="Vérifier et voir l'échéance").click()
    deadline = page.locator("#echeance")
    expect(deadline).to_contain_text(re.compile(r"Échéance de réponse : \S+ \d+ \S+ \d{4} à \d+ h \d\d"))
    # The CAF needs a postal address, which a visit reached by e-mail lacks: asked here.
    page.locator("#street").fill("3 rue des Lilas")
    page.locator("#postcode").fill("47120")
    page.locator("#city").fill("Pont-du-Casse")
    label_for(page, "consent")
    assert_accessible(page, f"orienter : vérifier et envoyer, {width} px")
    picture("orienter-echeance")
    page.get_by_role("button", name="Envoyer la demande").click()
    expect(page).to_have_url(re.compile(f"{re.escape(base)}/demandes/{UUID}$"))
    referral_id = page.url.rsplit("/", 1)[1]

    # The answer arrives while the page stays on screen: no navigation, no reload.
    status = page.locator("#statut")
    expect(status).to_be_visible()
    assert status.get_attribute("data-status") not in ("answered", "closed"), \
        "the answer came before the page was shown: the live update cannot be seen"
    page.evaluate("window.__relaisSameDocument = 'oui'")
    navigations: list[str] = []
    page.on("framenavigated", lambda frame: navigations.append(frame.url) if frame == page.main_frame else None)
    expect(status).to_have_attribute("data-status", "answered", timeout=LIVE_TIMEOUT_MS)
    expect(page.locator('#chronologie > li[data-event="answered"]')).to_have_count(1)
    expect(page.locator('#chronologie > li[data-event="acknowledged"]')).to_have_count(1)
    assert page.evaluate("window.__relaisSameDocument") == "oui", "the page was reloaded"
    assert navigations == [], f"the page navigated: {navigations}"
    expect(page.locator("#annonce")).to_contain_text("Statut de la demande")  # told to screen readers
    page.evaluate("window.scrollTo(0, document.getElementById('etat').getBoundingClientRect().top"
                  " + window.scrollY - 24)")  # the status and the whole timeline on the screen
    assert_accessible(page, f"demande répondue, {width} px")
    picture("demande-repondue")

    # Close the loop with an outcome (the close form came with the answer).
    page.locator("#cloturer-outcome").select_option("resolved")
    page.get_by_role("button", name="Clôturer").click()
    expect(page).to_have_url(re.compile(f"/demandes/{referral_id}"))
    expect(page.locator("#statut")).to_have_attribute("data-status", "closed")
    expect(page.locator('#chronologie > li[data-event="closed"]')).to_have_count(1)
    assert_accessible(page, f"demande clôturée, {width} px")
    if phone:  # nothing wider than the screen
        assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")


def test_an_adviser_of_another_site_cannot_open_the_referral(platform: LocalPlatform,
                                                             new_page: NewPage) -> None:
    base = platform.referral_url
    referral_id = api_referral(platform, operator="caf", procedure="caf.prime-activite", family_name="Lefèvre")

    own = new_page()
    sign_in(own, base, "demo-adviser")
    opened = own.goto(f"{base}/demandes/{referral_id}")
    assert opened is not None and opened.status == 200
    expect(own.get_by_text("Lefèvre").first).to_be_visible()

    other = new_page()
    sign_in(other, base, "demo-adviser-martignas")
    refused = other.goto(f"{base}/demandes/{referral_id}")
    assert refused is not None and refused.status == 404
    expect(other.get_by_role("heading", level=1)).to_have_text("Demande introuvable")
    expect(other.locator("body")).not_to_contain_text("Lefèvre")
    feed = other.request.get(f"{base}/demandes/{referral_id}/flux")
    assert feed.status == 404


def test_a_missing_field_shows_its_error_next_to_it(platform: LocalPlatform, page: Page,
                                                    screenshot: ScreenShot) -> None:
    base = platform.referral_url
    sign_in(page, base, "demo-adviser")
    page.goto(f"{base}/visites/nouvelle")
    page.locator("#given_name").fill("Camille")
    label_for(page, "contact_channel-none")
    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        page.get_by_role("button", name="Ouvrir la visite").click()
    assert answer.value.status == 422

    field = page.locator("#family_name")
    group = page.locator(".fr-input-group", has=field)
    expect(group).to_have_class(re.compile(r"\bfr-input-group--error\b"))
    error = group.locator(".fr-error-text")
    expect(error).to_have_count(1)
    expect(error).to_be_visible()
    expect(error).not_to_be_empty()
    error_id = error.get_attribute("id")
    assert error_id
    expect(field).to_have_attribute("aria-invalid", "true")
    expect(field).to_have_attribute("aria-describedby", re.compile(rf"(^|\s){re.escape(error_id)}(\s|$)"))
    # Only the missing field is in error; what was typed is kept; the summary links to it.
    expect(page.locator(".fr-input-group--error")).to_have_count(1)
    expect(page.locator("#given_name")).to_have_value("Camille")
    expect(page.locator('#erreurs a[href="#family_name"]')).to_be_visible()
    screenshot(page, "nouvelle-visite-erreur")


def test_the_sign_in_form_works_with_the_keyboard_alone(platform: LocalPlatform, page: Page) -> None:
    base = platform.referral_url
    page.goto(f"{base}/connexion")

    def focused() -> str:
        return str(page.evaluate("document.activeElement ? (document.activeElement.id || "
                                 "document.activeElement.textContent.trim()) : ''"))

    page.keyboard.press("Tab")
    assert focused() == "Aller au contenu", "the first stop is the skip link"
    for _ in range(30):
        if focused() == "user_id":
            break
        page.keyboard.press("Tab")
    assert focused() == "user_id", "the Identifiant field is reachable with Tab"
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline not in ("", "none"), "the focus is visible"
    page.keyboard.type("demo-adviser")
    page.keyboard.press("Tab")
    assert focused() == "password"
    page.keyboard.type("demo")
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(f"{re.escape(base)}/(aujourdhui|lieu)$"))  # /lieu: a permanence today
    expect(page.get_by_role("heading", level=1)).to_contain_text(re.compile("Aujourd'hui|aujourd'hui"))


def test_screens_of_today_search_statistics_and_journal(platform: LocalPlatform, new_page: NewPage,
                                                        screenshot: ScreenShot) -> None:
    base = platform.referral_url
    for operator, procedure, name in (("dgfip", "dgfip.declaration-revenus", "Garcia"),
                                      ("ants", "ants.carte-grise.changement-adresse", "Bernard"),
                                      ("caf", "caf.prime-activite", "Petit")):
        api_referral(platform, operator=operator, procedure=procedure, family_name=name)
    adviser = new_page()
    sign_in(adviser, base, "demo-adviser")
    expect(adviser.get_by_role("heading", name="Visites du jour")).to_be_visible()
    screenshot(adviser, "aujourdhui")

    adviser.get_by_role("link", name="Demandes", exact=True).click()
    expect(adviser).to_have_url(f"{base}/demandes")
    expect(adviser.get_by_role("heading", level=1)).to_have_text("Demandes")
    expect(adviser.locator('a[href^="/demandes/"]').first).to_be_visible()
    screenshot(adviser, "recherche")

    adviser.get_by_role("link", name="Statistiques", exact=True).click()
    expect(adviser.get_by_role("heading", level=1)).to_have_text("Statistiques")
    screenshot(adviser, "statistiques")

    supervisor = new_page()
    sign_in(supervisor, base, "demo-supervisor")
    supervisor.get_by_role("link", name="Journal", exact=True).click()
    expect(supervisor.get_by_role("heading", level=1)).to_have_text("Journal des consultations et actions")
    expect(supervisor.locator("table tbody tr").first).to_be_visible()
    screenshot(supervisor, "journal")


async def _set_email(database_url: str, user_id: str, email: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("UPDATE referral.accounts SET email = $2 WHERE user_id = $1", user_id, email)
    finally:
        await conn.close()


@pytest.fixture
def provider(platform: LocalPlatform) -> Iterator[FakeOidc]:
    with PROVIDER:
        run_coroutine(_set_email(platform.database_url, "demo-adviser-martignas", AGENT_EMAIL))
        yield PROVIDER


def test_an_agent_signs_in_with_proconnect(platform: LocalPlatform, new_page: NewPage, provider: FakeOidc) -> None:
    base = platform.referral_url
    proconnect = 'a[href^="/connexion/proconnect"], form[action="/connexion/proconnect"] button[type=submit]'

    known = new_page()
    provider.email = AGENT_EMAIL
    known.goto(f"{base}/connexion")
    known.locator(proconnect).first.click()  # to the provider, which approves, and back
    expect(known).to_have_url(f"{base}/aujourdhui")
    expect(known.locator("header")).to_contain_text("Pierre Conseiller")

    unknown = new_page()
    provider.email = "agent.inconnu@example.gouv.fr"
    unknown.goto(f"{base}/connexion")
    unknown.locator(proconnect).first.click()
    expect(unknown.get_by_role("heading", level=1)).to_have_text("Votre compte n'est pas encore ouvert dans Relais")
    expect(unknown.locator("main")).to_contain_text("agent.inconnu@example.gouv.fr")
    unknown.goto(f"{base}/aujourdhui")
    expect(unknown).to_have_url(re.compile(r"/connexion"))
