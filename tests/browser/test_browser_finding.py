"""Finding and reading, in the browser (issue #12 items 5, 6, 7 and the live parts of 11):
a citizen found by name, our reference or the operator's (and not by another site's
adviser, nor by name by ops); procedures in words on Today, the visit page and the desk,
with the citizen's name on Today; the letter printed from the referral's page (and not
through a delivery id of another referral); Today's list and the referral page kept
live, the stale success banner gone when the operator's answer arrives. axe-core at
1280 and 375 px on each page shown."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

import httpx
from playwright.sync_api import Page, expect

from deploy.local.launcher import LocalPlatform
from tests.browser.axe import DESKTOP, accessible_at_both_widths
from tests.browser.browsing import CITIZEN, api_auth, api_refer, api_visit, desk_case_link, sign_in
from tests.browser.conftest import NewPage

# Slow enough to open a page between the routing and the answer; the caf answers, the
# justice desk is a person (here: nobody, so its referrals stay routed).
SIMULATOR_ARGS = ["--ack-delay", "1", "--answer-delay", "6", "--outcome", "resolved"]


def make_referral(platform: LocalPlatform, *, family_name: str, given_name: str = "Lucie",
                  operator: str = "caf", procedure: str = "caf.prime-activite", letter: bool = False,
                  summary: str = "Demande préparée pour le test de recherche.") -> dict[str, str]:
    """A visit and its referral through the adviser API; their ids."""
    citizen = {**CITIZEN, "contact": {**CITIZEN["contact"], "channel": "letter" if letter else "none"}}
    visit_id = api_visit(platform, family_name=family_name, given_name=given_name, citizen=citizen)
    return {"referral_id": api_refer(platform, visit_id, operator=operator, procedure=procedure, summary=summary),
            "visit_id": visit_id}


def wait_for_timeline(platform: LocalPlatform, referral_id: str, found: Callable[[dict[str, Any]], bool],
                      timeout: float = 40.0) -> dict[str, Any]:
    """The first timeline entry `found` accepts, polling the API."""
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=platform.referral_url, timeout=10.0) as client:
        auth = api_auth(client)
        while time.monotonic() < deadline:
            got = client.get(f"/api/v1/referrals/{referral_id}", headers=auth)
            got.raise_for_status()
            for entry in got.json()["timeline"]:
                if found(entry):
                    return dict(entry)
            time.sleep(0.5)
    raise AssertionError(f"referral {referral_id}: the awaited timeline entry never came")


def listed(page: Page) -> set[str]:
    return {str(r.get_attribute("data-referral")) for r in page.locator("#resultats tr[data-referral]").all()}


def search(page: Page, base: str, text: str) -> None:
    page.goto(f"{base}/demandes")
    box = page.locator("#recherche")
    box.fill(text)
    box.press("Enter")  # the GET form, by keyboard
    expect(page).to_have_url(re.compile(r"/demandes\?"))


# ---------------------------------------------------------------------------- item 5


def test_a_citizen_is_found_by_name_and_by_both_references_within_the_advisers_sites(
        platform: LocalPlatform, new_page: NewPage) -> None:
    base = platform.referral_url
    mine = make_referral(platform, family_name="Lefèvre-Quéméner", given_name="Bérénice")["referral_id"]
    other = make_referral(platform, family_name="Lefort", given_name="Paul")["referral_id"]
    adviser = new_page()
    sign_in(adviser, base, "demo-adviser")

    for typed in ("lefev", "LEFÈVRE bérénice", "quemener", "Béré"):  # accents, case, start of a word
        search(adviser, base, typed)
        assert mine in listed(adviser) and other not in listed(adviser), typed
    expect(adviser.locator(f'tr[data-referral="{mine}"] td.ui-citizen')).to_have_text("Bérénice Lefèvre-Quéméner")
    expect(adviser.locator("#resultats th", has_text="Personne")).to_be_visible()
    accessible_at_both_widths(adviser, "demandes, recherche par nom")

    search(adviser, base, "lef")  # both start so
    assert {mine, other} <= listed(adviser)
    search(adviser, base, mine[:8].upper())  # our reference, its start
    assert listed(adviser) == {mine}

    # The operator's reference, given when it acknowledged (the simulator's: CAF-<year>-<8 hex>).
    case = wait_for_timeline(platform, mine, lambda e: e["event"] == "acknowledged")["detail"]["case_reference"]
    search(adviser, base, case.lower())
    assert listed(adviser) == {mine}, case

    # What is neither a name nor a reference is said, not dropped silently.
    search(adviser, base, "lefevre@example.fr")
    expect(adviser.locator("#recherche-error")).to_contain_text("ni un nom ni une référence")
    expect(adviser.locator("#recherche")).to_have_attribute("aria-invalid", "true")
    accessible_at_both_widths(adviser, "demandes, texte non compris")

    # Another site's adviser does not find her, by name nor by reference.
    elsewhere = new_page()
    sign_in(elsewhere, base, "demo-adviser-martignas")
    for typed in ("Lefèvre", mine, case):
        search(elsewhere, base, typed)
        assert mine not in listed(elsewhere), typed

    # Ops: references only; no name column, a name search is refused in words.
    ops = new_page()
    sign_in(ops, base, "demo-ops")
    search(ops, base, "Lefèvre")
    expect(ops.locator("#recherche-error")).to_contain_text("réservée aux conseillers")
    assert listed(ops) == set()
    search(ops, base, case)
    assert listed(ops) == {mine}
    expect(ops.locator("td.ui-citizen")).to_have_count(0)
    expect(ops.get_by_text("Bérénice")).to_have_count(0)
    accessible_at_both_widths(ops, "demandes, exploitation")


# ---------------------------------------------------------------------------- item 6 and item 11 (Today)


def test_today_names_procedures_and_citizens_in_words_and_updates_itself(
        platform: LocalPlatform, page: Page) -> None:
    base = platform.referral_url
    sign_in(page, base, "demo-adviser")
    made = make_referral(platform, family_name="Aubertin", given_name="Maëlle")
    row = page.locator(f'#demandes-a-traiter a[href="/demandes/{made["referral_id"]}"]')
    page.goto(f"{base}/aujourdhui")
    expect(row).to_have_count(0)  # routed, not yet answered (the simulator answers 7 s later)
    # Answered by the operator while the page is open: the list grows by itself, no reload.
    expect(row).to_have_count(1, timeout=30_000)
    line = page.locator("#demandes-a-traiter tr", has=page.locator(f'a[href="/demandes/{made["referral_id"]}"]'))
    expect(line).to_contain_text("Prime d'activité")
    expect(line).to_contain_text("Maëlle Aubertin")
    expect(page.locator("#demandes-a-traiter")).not_to_contain_text("caf.prime-activite")
    expect(page.locator("#annonce")).to_contain_text("Demandes à traiter mises à jour")
    accessible_at_both_widths(page, "aujourd'hui")

    page.goto(f"{base}/visites/{made['visit_id']}")
    expect(page.locator("main")).to_contain_text("Caisse d'allocations familiales — Prime d'activité")
    expect(page.locator("main")).not_to_contain_text("caf.prime-activite")
    accessible_at_both_widths(page, "visite")


def test_the_desk_names_the_procedure_in_words(platform: LocalPlatform, page: Page) -> None:
    referral_id = make_referral(platform, family_name="Vasseur", operator="justice",
                                procedure="justice.casier-judiciaire")["referral_id"]
    desk = platform.url("desk")
    link = desk_case_link(page, desk, referral_id)
    line = page.locator("tr", has=link)
    expect(line).to_contain_text("Extrait de casier judiciaire")
    expect(page.locator("main")).not_to_contain_text("justice.casier-judiciaire")
    link.click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Dossier Extrait de casier judiciaire")
    expect(page).to_have_title(re.compile("Extrait de casier judiciaire"))
    assert "justice.casier-judiciaire" not in page.title()


# ---------------------------------------------------------------------------- item 11 (stale banner)


def test_the_success_banner_goes_when_the_operators_answer_arrives(platform: LocalPlatform, page: Page) -> None:
    base = platform.referral_url
    sign_in(page, base, "demo-adviser")
    rid = make_referral(platform, family_name="Garnier")["referral_id"]
    page.goto(f"{base}/demandes/{rid}?fait=complement")  # as after the adviser's answer to a question
    banner = page.locator("#fait")
    expect(banner).to_contain_text("Votre réponse a été transmise")
    expect(page.locator("#statut")).to_have_attribute("data-status", "answered", timeout=30_000)
    expect(banner).to_have_count(0)
    assert "fait=" not in page.url  # a reload would not bring it back


# ---------------------------------------------------------------------------- item 7


def test_the_letter_is_printed_from_the_referrals_page(platform: LocalPlatform, new_page: NewPage) -> None:
    base = platform.referral_url
    made = make_referral(platform, family_name="Carpentier", given_name="Odile", letter=True)
    rid = made["referral_id"]
    sent = wait_for_timeline(platform, rid, lambda e: e["event"] == "notification.sent"
                             and e["detail"].get("channel") == "letter", timeout=60.0)
    delivery = sent["detail"]["notification_id"]

    page = new_page()
    sign_in(page, base, "demo-adviser")
    page.goto(f"{base}/demandes/{rid}")
    link = page.get_by_role("link", name="Imprimer le courrier")
    expect(link).to_be_visible()
    link.click()
    expect(page).to_have_url(re.compile(f"/demandes/{rid}/courrier/{delivery}$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Courrier à imprimer")
    letter = page.locator("#courrier")
    expect(letter).to_contain_text("Odile Carpentier")
    printing = page.get_by_role("button", name="Imprimer")
    expect(printing).to_be_visible()  # print.js shows it
    page.evaluate("() => { window.__printed = 0; window.print = () => { window.__printed += 1; }; }")
    printing.click()
    assert page.evaluate("() => window.__printed") == 1
    accessible_at_both_widths(page, "courrier")
    page.emulate_media(media="print")  # on paper: the letter alone
    expect(page.locator("header.fr-header")).to_be_hidden()
    expect(printing).to_be_hidden()
    expect(letter).to_be_visible()
    page.emulate_media(media="screen")

    # The letter's id with another referral of the same site: not found; another site: not found.
    other = make_referral(platform, family_name="Delorme")["referral_id"]
    forged = page.goto(f"{base}/demandes/{other}/courrier/{delivery}")
    assert forged is not None and forged.status == 404
    expect(page.locator("#courrier")).to_have_count(0)
    elsewhere = new_page()
    sign_in(elsewhere, base, "demo-adviser-martignas")
    refused = elsewhere.goto(f"{base}/demandes/{rid}/courrier/{delivery}")
    assert refused is not None and refused.status == 404
    expect(elsewhere.get_by_text("Odile")).to_have_count(0)


def test_the_letter_page_without_javascript_says_to_use_the_browsers_print(
        platform: LocalPlatform, browser: Any) -> None:
    made = make_referral(platform, family_name="Roussel", letter=True)
    sent = wait_for_timeline(platform, made["referral_id"], lambda e: e["event"] == "notification.sent"
                             and e["detail"].get("channel") == "letter", timeout=60.0)
    context = browser.new_context(java_script_enabled=False, locale="fr-FR", viewport=DESKTOP)
    try:
        page = context.new_page()
        sign_in(page, platform.referral_url, "demo-adviser")
        page.goto(f"{platform.referral_url}/demandes/{made['referral_id']}/courrier/{sent['detail']['notification_id']}")
        expect(page.locator("#courrier")).to_contain_text("Roussel")
        expect(page.get_by_role("button", name="Imprimer")).to_be_hidden()
        expect(page.get_by_text("Utilisez la commande « Imprimer » de votre navigateur.")).to_be_visible()
    finally:
        context.close()

