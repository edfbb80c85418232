"""What an operator asks reaches the adviser whole, and the simulator shows the whole
lifecycle (issue #12, items 1 and 12), in Chromium against the whole platform.

- The desk's expert (playing `justice`) asks for information with the documents wanted;
  the adviser's referral page shows the question and « Pièces souhaitées » as a list, in
  the timeline and above the answer form.
- The simulator's demo rule: a summary saying « justificatif » gets a question with the
  procedure's documents; the adviser answers it and sees the operator's answer arrive; a
  summary saying « refus » is rejected, with the operator's explanation shown.
Each page state is checked with axe-core at 1280 px and 375 px."""

from __future__ import annotations

import time
from typing import Any

from playwright.sync_api import Page, expect

from deploy.local.launcher import LocalPlatform
from tests.browser.axe import accessible_at_both_widths
from tests.browser.browsing import api_referral, sign_in

LIVE_TIMEOUT_MS = 30_000
DESK_DOCUMENTS = ["Copie de la pièce d'identité", "Justificatif de domicile de moins de 3 mois"]


def wait_for_status(page: Page, status: str) -> None:
    """The page follows the referral live; a reload now and then in case it was slower."""
    badge = page.locator("#statut")
    deadline = time.monotonic() + LIVE_TIMEOUT_MS / 1000
    while badge.get_attribute("data-status") != status and time.monotonic() < deadline:
        page.wait_for_timeout(500)
        if badge.get_attribute("data-status") != status:
            page.reload()
    expect(badge).to_have_attribute("data-status", status)


def test_the_documents_the_desk_asks_for_reach_the_adviser(platform: LocalPlatform, new_page: Any) -> None:
    referral_id = api_referral(platform, family_name="Garnier", operator="justice",
                               procedure="justice.casier-judiciaire",
                               summary="Extrait de casier judiciaire pour un emploi.")
    desk, base = platform.url("desk"), platform.referral_url

    expert = new_page()
    sign_in(expert, desk, "demo-expert", landing="/dossiers")
    expert.goto(f"{desk}/dossiers/{referral_id}")
    deadline = time.monotonic() + 30.0
    while expert.get_by_label("Votre question").count() == 0 and time.monotonic() < deadline:
        expert.wait_for_timeout(500)  # the referral travels referral -> operator.justice.inbox -> desk
        expert.reload()
    expert.get_by_label("Votre question").fill("Pouvez-vous nous transmettre ces pièces ?")
    expert.get_by_label("Pièces souhaitées").fill("\n".join(DESK_DOCUMENTS))
    expert.get_by_role("button", name="Envoyer la question").click()

    adviser = new_page()
    sign_in(adviser, base, "demo-adviser")
    adviser.goto(f"{base}/demandes/{referral_id}")
    wait_for_status(adviser, "info_requested")
    asked = adviser.locator('#chronologie li[data-event="info_requested"]')
    expect(asked).to_contain_text("Pouvez-vous nous transmettre ces pièces ?")
    expect(asked).to_contain_text("Pièces souhaitées :")
    expect(asked.get_by_role("listitem")).to_have_text(DESK_DOCUMENTS)
    # Where the adviser answers: the question and the documents, above the answer.
    form = adviser.locator('form[action$="/complement"]')
    expect(form.locator("#question-operateur")).to_contain_text("Pouvez-vous nous transmettre ces pièces ?")
    expect(form.locator("#pieces-souhaitees").get_by_role("listitem")).to_have_text(DESK_DOCUMENTS)
    accessible_at_both_widths(adviser, "demande, pièces souhaitées")


def test_the_simulator_asks_for_documents_then_answers_the_adviser(platform: LocalPlatform, page: Page) -> None:
    referral_id = api_referral(platform, family_name="Garnier", operator="ants",
                               procedure="ants.permis-conduire",
                               summary="Renouvellement du permis ; elle n'a pas encore de justificatif de domicile.")
    base = platform.referral_url
    sign_in(page, base, "demo-adviser")
    page.goto(f"{base}/demandes/{referral_id}")
    wait_for_status(page, "info_requested")
    form = page.locator('form[action$="/complement"]')
    expect(form.locator("#question-operateur")).to_contain_text("pièces ci-dessous")
    expect(form.locator("#pieces-souhaitees").get_by_role("listitem").first).to_be_visible()
    accessible_at_both_widths(page, "demande, question du simulateur")

    page.get_by_label("Votre réponse").fill("La personne apporte son justificatif de domicile demain.")
    page.get_by_role("button", name="Envoyer la réponse").click()
    expect(page.get_by_text("Votre réponse a été transmise à l'opérateur.")).to_be_visible()
    wait_for_status(page, "answered")
    expect(page.locator('#chronologie li[data-event="info_provided"]')).to_have_count(1)
    expect(page.locator('#chronologie li[data-event="answered"]')).to_have_count(1)
    accessible_at_both_widths(page, "demande, réponse après le complément")


def test_the_simulator_rejects_a_referral_that_says_refus(platform: LocalPlatform, page: Page) -> None:
    referral_id = api_referral(platform, family_name="Garnier", operator="ants",
                               procedure="ants.carte-identite",
                               summary="Démonstration : simuler un refus de l'opérateur.")
    base = platform.referral_url
    sign_in(page, base, "demo-adviser")
    page.goto(f"{base}/demandes/{referral_id}")
    wait_for_status(page, "rejected")
    rejected = page.locator('#chronologie li[data-event="rejected"]')
    expect(rejected).to_contain_text("Motif : Hors du champ de la démarche")
    expect(rejected).to_contain_text("Explication de l'opérateur : La demande sort du champ")
    accessible_at_both_widths(page, "demande refusée par le simulateur")
