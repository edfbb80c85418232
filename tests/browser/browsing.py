"""Helpers of the browser tests (tests/browser): signing in through the pages, and
opening a visit or making a referral through the adviser API when a test only needs
one to exist."""

from __future__ import annotations

import re
import time
from typing import Any

import httpx
from playwright.sync_api import Locator, Page, expect

from deploy.local.launcher import LocalPlatform

HOME_SITE = "agen-leon-blum-poste"


def sign_in(page: Page, base: str, user_id: str, password: str = "demo", *, landing: str = "/aujourdhui") -> None:
    """Through the sign-in form, as a person would (labels, button)."""
    page.goto(f"{base}/connexion")
    page.get_by_label("Identifiant").fill(user_id)
    page.get_by_label("Mot de passe").fill(password)
    page.get_by_role("button", name="Se connecter").click()
    wanted = re.escape(landing) + r"(\?.*)?$"
    if landing != "/lieu":  # a permanence today: the place page first, the home site chosen (kept for the day)
        expect(page).to_have_url(re.compile(f"{wanted}|/lieu(\\?.*)?$"))
        if re.search(r"/lieu(\?.*)?$", page.url):
            page.get_by_role("button", name="Choisir ce lieu").click()
    expect(page).to_have_url(re.compile(wanted))


SUMMARY = "Demande préparée pour le test du navigateur."
# What most procedures need besides the names (catalogue.yaml `citizen_fields`).
CITIZEN: dict[str, Any] = {"birth_date": "1984-06-02",
           "contact": {"channel": "none",
                       "postal_address": {"street": "2 rue des Tests", "postcode": "47000", "city": "Agen"}}}


def api_auth(client: httpx.Client, user: str = "demo-adviser") -> dict[str, str]:
    """The Authorization header of a token of `user` (password `demo`)."""
    token = client.post("/api/v1/auth/token", data={"username": user, "password": "demo"})
    token.raise_for_status()
    return {"Authorization": f"Bearer {token.json()['access_token']}"}


def api_visit(platform: LocalPlatform, *, family_name: str, given_name: str = "Lucie",
              citizen: dict[str, Any] | None = None, site_id: str = HOME_SITE, user: str = "demo-adviser") -> str:
    """A visit opened through the adviser API; `citizen`: the citizen's fields besides the
    names (default CITIZEN: a birth date and an address). Returns its id."""
    body = {"site_id": site_id, "channel": "in_person",
            "citizen": {"given_name": given_name, "family_name": family_name,
                        **(CITIZEN if citizen is None else citizen)}}
    with httpx.Client(base_url=platform.referral_url, timeout=10.0) as client:
        auth = api_auth(client, user)
        deadline = time.monotonic() + 30.0
        while True:  # the sites may still be on their way (a 422 naming site_id)
            visit = client.post("/api/v1/visits", json=body, headers=auth)
            if visit.status_code != 422 or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        assert visit.status_code == 201, visit.text
        return str(visit.json()["visit_id"])


def api_refer(platform: LocalPlatform, visit_id: str, *, operator: str, procedure: str, summary: str = SUMMARY,
              user: str = "demo-adviser") -> str:
    """The visit referred through the adviser API (the citizen's consent given); the referral's id."""
    with httpx.Client(base_url=platform.referral_url, timeout=10.0) as client:
        referral = client.post(f"/api/v1/visits/{visit_id}/referrals", headers=api_auth(client, user), json={
            "operator": operator, "procedure": procedure, "summary": summary, "consent": {"given": True}})
        assert referral.status_code == 201, referral.text
        return str(referral.json()["referral_id"])


def api_referral(platform: LocalPlatform, *, operator: str, procedure: str, family_name: str,
                 summary: str = SUMMARY, site_id: str = HOME_SITE, user: str = "demo-adviser",
                 **visit: Any) -> str:
    """A visit and its referral made through the adviser API (the demo sites are known:
    see the `platform` fixture); `visit`: more of api_visit's arguments. Returns the
    referral's id."""
    visit_id = api_visit(platform, family_name=family_name, site_id=site_id, user=user, **visit)
    return api_refer(platform, visit_id, operator=operator, procedure=procedure, summary=summary, user=user)


def desk_case_link(page: Page, desk: str, referral_id: str, user: str = "demo-expert") -> Locator:
    """Signs in to the operator desk at `desk` and waits for the referral in its list of
    cases (it travels referral → operator.<code>.inbox → desk); the link to its case."""
    page.goto(f"{desk}/connexion")
    page.get_by_label("Identifiant").fill(user)
    page.get_by_label("Mot de passe").fill("demo")
    page.get_by_role("button", name="Se connecter").click()
    expect(page).to_have_url(re.compile(r"/dossiers$"))
    link = page.locator(f'a[href="/dossiers/{referral_id}"]')
    deadline = time.monotonic() + 30.0
    while link.count() == 0 and time.monotonic() < deadline:
        page.wait_for_timeout(500)
        page.reload()
    return link
