"""Helpers of the browser tests (tests/browser): signing in through the pages, and
making a referral through the adviser API when a test only needs one to exist."""

from __future__ import annotations

import re
import time
from typing import Any

import httpx
from playwright.sync_api import Page, expect

from deploy.local.launcher import LocalPlatform

HOME_SITE = "agen-leon-blum-poste"


def sign_in(page: Page, base: str, user_id: str, password: str = "demo", *, landing: str = "/aujourdhui") -> None:
    """Through the sign-in form, as a person would (labels, button)."""
    page.goto(f"{base}/connexion")
    page.get_by_label("Identifiant").fill(user_id)
    page.get_by_label("Mot de passe").fill(password)
    page.get_by_role("button", name="Se connecter").click()
    expect(page).to_have_url(re.compile(re.escape(landing) + r"(\?.*)?$"))


def api_referral(platform: LocalPlatform, *, operator: str, procedure: str, family_name: str,
                 site_id: str = HOME_SITE, user: str = "demo-adviser") -> str:
    """A referral made through the adviser API (the demo sites are known: see the
    `platform` fixture); returns its id."""
    with httpx.Client(base_url=platform.referral_url, timeout=10.0) as client:
        token = client.post("/api/v1/auth/token", data={"username": user, "password": "demo"})
        token.raise_for_status()
        auth = {"Authorization": f"Bearer {token.json()['access_token']}"}
        body: dict[str, Any] = {"site_id": site_id, "channel": "in_person",
                                "citizen": {"given_name": "Lucie", "family_name": family_name,
                                            "birth_date": "1984-06-02", "contact": {"channel": "none"}}}
        deadline = time.monotonic() + 30.0
        while True:  # the sites may still be on their way (a 422 naming site_id)
            visit = client.post("/api/v1/visits", json=body, headers=auth)
            if visit.status_code != 422 or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        assert visit.status_code == 201, visit.text
        referral = client.post(f"/api/v1/visits/{visit.json()['visit_id']}/referrals", headers=auth, json={
            "operator": operator, "procedure": procedure,
            "summary": "Demande préparée pour le test du navigateur.", "consent": {"given": True}})
        assert referral.status_code == 201, referral.text
        return str(referral.json()["referral_id"])
