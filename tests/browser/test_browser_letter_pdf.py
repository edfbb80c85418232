"""The letter as a PDF, in the browser (issue #13 item 2): from the letter's page, a
"Télécharger le PDF" link serves the letter laid out for a window envelope (A4, the
address in La Poste's order, the town in capitals), with no personal data in the
file's name and nothing kept by a cache; not to another site's adviser, nor through a
delivery id of another referral. axe-core at 1280 and 375 px on the letter's page."""

from __future__ import annotations

import io
import re

import pypdf
from playwright.sync_api import expect

from deploy.local.launcher import LocalPlatform
from tests.browser.axe import accessible_at_both_widths
from tests.browser.browsing import sign_in
from tests.browser.conftest import NewPage
from tests.browser.test_browser_finding import SIMULATOR_ARGS as _FINDING_ARGS
from tests.browser.test_browser_finding import make_referral, wait_for_timeline

SIMULATOR_ARGS = list(_FINDING_ARGS)  # the caf answers within seconds: the letter is written


def test_the_letter_downloads_as_a_pdf_for_a_window_envelope(platform: LocalPlatform, new_page: NewPage) -> None:
    base = platform.referral_url
    rid = make_referral(platform, family_name="Carpentier", given_name="Odile", letter=True)["referral_id"]
    sent = wait_for_timeline(platform, rid, lambda e: e["event"] == "notification.sent"
                             and e["detail"].get("channel") == "letter", timeout=60.0)
    delivery = sent["detail"]["notification_id"]

    page = new_page()
    sign_in(page, base, "demo-adviser")
    page.goto(f"{base}/demandes/{rid}/courrier/{delivery}")
    link = page.get_by_role("link", name=re.compile("^Télécharger le PDF"))
    expect(link).to_be_visible()
    href = link.get_attribute("href")
    assert href == f"/demandes/{rid}/courrier/{delivery}.pdf"
    accessible_at_both_widths(page, "courrier avec son PDF")

    got = page.request.get(f"{base}{href}")  # the browser's own session
    assert got.status == 200, got.text()[:300]
    assert got.headers["content-type"] == "application/pdf"
    assert got.headers["cache-control"] == "no-store"
    assert got.headers["content-disposition"] == f'inline; filename="courrier-{delivery[:8]}.pdf"'
    pdf = pypdf.PdfReader(io.BytesIO(got.body()))
    assert len(pdf.pages) == 1
    first = pdf.pages[0]
    assert (round(float(first.mediabox.width)), round(float(first.mediabox.height))) == (595, 842)
    text = first.extract_text()
    assert "Odile Carpentier" in text and "RÉPUBLIQUE" in text
    assert re.search(r"^\d{5} [A-Z ]+$", text, re.MULTILINE), text  # the last line, La Poste's way

    # Another referral's page with this letter's id, another site's adviser: not found.
    other = make_referral(platform, family_name="Delorme")["referral_id"]
    forged = page.request.get(f"{base}/demandes/{other}/courrier/{delivery}.pdf")
    assert forged.status == 404 and not forged.headers["content-type"].startswith("application/pdf")
    elsewhere = new_page()
    sign_in(elsewhere, base, "demo-adviser-martignas")
    refused = elsewhere.request.get(f"{base}{href}")
    assert refused.status == 404 and "Odile" not in refused.text()


def test_todays_letters_of_the_place_download_in_one_pdf(platform: LocalPlatform, new_page: NewPage) -> None:
    base = platform.referral_url
    rid = make_referral(platform, family_name="Vasseur", given_name="Armelle", letter=True)["referral_id"]
    wait_for_timeline(platform, rid, lambda e: e["event"] == "notification.sent"
                      and e["detail"].get("channel") == "letter", timeout=60.0)

    page = new_page()
    sign_in(page, base, "demo-adviser")  # the home site, where the visits above were opened
    link = page.get_by_role("link", name=re.compile("^Courriers du jour \\(PDF\\)"))
    expect(link).to_be_visible()
    accessible_at_both_widths(page, "aujourdhui avec les courriers du jour")
    got = page.request.get(f"{base}{link.get_attribute('href')}")
    assert got.status == 200, got.text()[:300]
    assert got.headers["content-type"] == "application/pdf"
    assert got.headers["cache-control"] == "no-store"
    assert re.fullmatch(r'inline; filename="courriers-\d{4}-\d{2}-\d{2}\.pdf"', got.headers["content-disposition"])
    pages = [p.extract_text() for p in pypdf.PdfReader(io.BytesIO(got.body())).pages]
    assert sum("Armelle Vasseur" in text for text in pages) == 1  # one page per letter, this one among them

    # Another site's adviser: their own place's letters only — none written there today.
    elsewhere = new_page()
    sign_in(elsewhere, base, "demo-adviser-martignas")
    theirs = elsewhere.request.get(f"{base}/aujourdhui/courriers.pdf")
    assert theirs.status == 200 and theirs.headers["content-type"].startswith("text/html")
    assert "Vasseur" not in theirs.text()
    elsewhere.goto(f"{base}/aujourdhui/courriers.pdf")
    expect(elsewhere.get_by_role("heading", level=1)).to_have_text("Courriers du jour")
    expect(elsewhere.locator("#courriers-indisponibles")).to_contain_text("Aucun courrier n'a été écrit aujourd'hui")
    accessible_at_both_widths(elsewhere, "aucun courrier du jour")
