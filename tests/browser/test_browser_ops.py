"""The ops console in Chromium, on the whole platform with its Prometheus (as `make run`):
demo-ops signs in from the overview's address, lands back on it, and sees the consumer
groups measured by the ops service and the processes Prometheus scrapes, the charts
named for screen readers; follows one referral across the services; sees a dead letter
appear, opens it masked and replays it onto its source topic. An adviser's account is
refused with the reason. The pages are saved as ops-*.png (docs/screens/ with
`make screens`)."""

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


def test_ops_watch_follow_and_replay_in_the_console_and_an_adviser_is_refused(platform: LocalPlatform, page: Page,
                                                        new_page: Callable[[], Page],
                                                        screenshot: ScreenShot) -> None:
    console = platform.url("ops")
    referral_id = api_referral(platform, operator="caf", procedure="caf.prime-activite", family_name="Garnier")

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

    # One referral across the services: the simulated CAF answers it within seconds.
    page.get_by_role("link", name="Parcours d'une demande").click()
    page.get_by_label(re.compile("Référence de la demande")).fill(referral_id)
    page.get_by_role("button", name="Suivre").click()
    journey = page.get_by_role("table", name=re.compile("évènements?, dans l'ordre du temps"))
    deadline = time.monotonic() + 30.0
    answered = journey.get_by_text("operator.answered v1")
    while answered.count() == 0 and time.monotonic() < deadline:
        page.wait_for_timeout(1000)
        page.reload()
    for position in (r"^referrals:\d+:\d+$", r"^operator\.caf\.inbox:\d+:\d+$", r"^operator\.caf\.outbox:\d+:\d+$"):
        expect(journey.get_by_text(re.compile(position)).first).to_be_visible()
    expect(journey.get_by_text("relais-referral-operators").first).to_be_visible()  # who read CAF's answer
    screenshot(page, "ops-journey")

    # A dead letter appears (an event of a type nobody knows, on CAF's outbox), is shown
    # masked, and is replayed onto its own source topic.
    dead_letter_an_unknown_event(platform)
    page.get_by_role("link", name="Lettres mortes").click()
    letters = page.get_by_role("table", name=re.compile("lettres? mortes?"))
    deadline = time.monotonic() + 30.0
    while letters.get_by_text("unknown_event_type").count() == 0 and time.monotonic() < deadline:
        page.wait_for_timeout(1000)
        page.reload()
    screenshot(page, "ops-dead-letters")
    letters.get_by_role("link", name=re.compile(r"^operator\.caf\.outbox\.dlq:")).first.click()
    expect(page.get_by_role("heading", level=2, name=re.compile("données personnelles masquées"))).to_be_visible()
    expect(page.get_by_text("Nadia")).to_have_count(0)
    page.get_by_role("button", name="Rejouer…").click()
    expect(page.get_by_role("table", name="La sélection")).to_contain_text("operator.caf.outbox")
    page.get_by_label(re.compile("^Motif")).fill("Essai de la console : le type sera connu après la mise à jour.")
    page.get_by_role("button", name=re.compile(r"^Rejouer 1 lettre morte$")).click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Lettres mortes rejouées")

    # On a phone (375 px): nothing wider than the screen, the menu and signing out reachable.
    page.set_viewport_size({"width": 375, "height": 800})
    page.goto(f"{console}/console")
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    expect(page.get_by_role("link", name="Lettres mortes", exact=True)).to_be_visible()
    page.get_by_role("button", name=re.compile("^Se déconnecter")).click()
    expect(page).to_have_url(re.compile(r"/console/connexion$"))


def dead_letter_an_unknown_event(platform: LocalPlatform) -> None:
    """CAF's system sends an event of a type the contract does not know: the referral
    service dead-letters it (unknown_event_type). Its data names a person, as a real
    mistake would."""
    import json
    import uuid

    from deploy.local.launcher import run_coroutine
    from relais_kit import kafka

    async def send() -> None:
        producer = kafka.producer(platform.bootstrap, platform.kafka_security)
        await producer.start()
        try:
            headers = [("ce_specversion", b"1.0"), ("ce_id", str(uuid.uuid4()).encode()),
                       ("ce_source", b"/operators/caf"), ("ce_type", b"fr.franceservices.operator.unknown.v1"),
                       ("ce_time", b"2026-12-03T10:00:00Z"), ("content-type", b"application/json")]
            value = json.dumps({"referral_id": str(uuid.uuid4()), "citizen_name": "Nadia Dupont"}).encode()
            await producer.send_and_wait("operator.caf.outbox", value=value, key=b"unknown", headers=headers)
        finally:
            await producer.stop()

    run_coroutine(send())  # in a thread of its own: Playwright's loop runs in this one
