"""Tokens only their issuer can mint, across real services: the referral service signs
and publishes its JWKS on a real socket; the sites and notifications services fetch it
over HTTP; the operator desk signs with keys of its own. What a token opens is what its
audience names; a key rotation keeps both keys valid, then the retired key opens
nothing. (Each attack on the signature: tests/unit/test_tokens.py.)"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import pytest_asyncio
from fastapi import FastAPI

from relais_desk.app import create_app as desk_app
from relais_desk.settings import DeskSettings
from relais_kit import tokenkeys
from relais_kit.embedded import free_port
from relais_kit.jwks import RemoteKeys
from relais_kit.runtime import until_ready
from relais_notifications.app import create_app as notifications_app
from relais_notifications.settings import NotificationsSettings
from relais_referral.app import create_app as referral_app
from relais_referral.settings import ReferralSettings
from relais_sites.app import create_app as sites_app
from relais_sites.settings import SitesSettings
from tests.integration.test_desk_service import sign_in as desk_sign_in
from tests.referral_app import GENEROUS_SIGN_IN, served

pytestmark = pytest.mark.asyncio(loop_scope="module")
SERVICES = ("referral", "sites", "notifications")


@dataclass
class Platform:
    apps: dict[str, FastAPI]
    clients: dict[str, httpx.AsyncClient]
    referral_keys: Path
    desk_keys: Path
    referral_url: str

    async def token(self, user: str = "demo-ops", **form: str) -> str:
        response = await self.clients["referral"].post("/api/v1/auth/token",
                                                       data={"username": user, "password": "demo", **form})
        assert response.status_code == 200, response.text
        return str(response.json()["access_token"])

    async def status(self, service: str, token: str) -> int:
        """What a GET on the service's API answers with this bearer token."""
        path = {"referral": f"/api/v1/referrals/{uuid.uuid4()}", "sites": "/api/v1/sites",
                "notifications": f"/api/v1/notifications?referral_id={uuid.uuid4()}"}[service]
        response = await self.clients[service].get(path, headers={"Authorization": f"Bearer {token}"})
        return response.status_code

    async def statuses(self, token: str) -> dict[str, int]:
        return {service: await self.status(service, token) for service in SERVICES}

    def remote_keys(self, service: str) -> RemoteKeys:
        keys = self.apps[service].state.token_verifier.keys
        assert isinstance(keys, RemoteKeys)
        return keys


OPENED = {"referral": 404, "sites": 200, "notifications": 200}  # a valid token, a referral that does not exist


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def platform(module_database_url: str, kafka_bootstrap: str,
                   tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Platform]:
    folder = tmp_path_factory.mktemp("token-keys")
    referral_keys, desk_keys = folder / "referral.json", folder / "desk-justice.json"
    tokenkeys.cmd_new(referral_keys)
    common: dict[str, Any] = {"DATABASE_URL": module_database_url, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
                              "RELAIS_ENV": "test", "RELAIS_LOG_LEVEL": "warning"}
    async with AsyncExitStack() as stack:
        referral = referral_app(ReferralSettings(**common, **GENEROUS_SIGN_IN,
                                                 RELAIS_TOKEN_KEYS_FILE=str(referral_keys)))
        referral.state.token_signer.keys.recheck_s = 0  # a rotation is seen at the next token
        await stack.enter_async_context(referral.router.lifespan_context(referral))
        await until_ready(referral)
        referral_url = await stack.enter_async_context(served(referral))
        jwks_url = f"{referral_url}/.well-known/jwks.json"
        apps: dict[str, FastAPI] = {
            "referral": referral,
            "sites": sites_app(SitesSettings(**common, RELAIS_TOKEN_JWKS_URL=jwks_url)),
            "notifications": notifications_app(NotificationsSettings(
                **common, RELAIS_TOKEN_JWKS_URL=jwks_url, RELAIS_SMTP_PORT=free_port(),
                RELAIS_SMS_SPOOL=str(folder / "sms"))),
            "desk": desk_app(DeskSettings(**common, RELAIS_DESK_OPERATOR="justice", RELAIS_DEMO_DATA=True,
                                          RELAIS_TOKEN_KEYS_FILE=str(desk_keys))),
        }
        clients = {}
        for name, app in apps.items():
            if name != "referral":
                await stack.enter_async_context(app.router.lifespan_context(app))
                await until_ready(app)
            clients[name] = await stack.enter_async_context(
                httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=f"http://{name}"))
        yield Platform(apps, clients, referral_keys, desk_keys, referral_url)


async def test_the_issuer_publishes_public_keys_only(platform: Platform) -> None:
    async with httpx.AsyncClient() as web:  # as the other services fetch it: a real socket
        response = await web.get(f"{platform.referral_url}/.well-known/jwks.json")
    assert response.status_code == 200 and response.headers["cache-control"] == "public, max-age=60"
    keys = response.json()["keys"]
    assert keys and all(set(k) == {"kty", "crv", "x", "y", "kid", "alg", "use"} for k in keys)
    token = await platform.token()
    assert jwt.get_unverified_header(token)["alg"] == "ES256"
    assert jwt.get_unverified_header(token)["kid"] in {k["kid"] for k in keys}
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["iss"] == "relais-referral"
    assert claims["aud"] == ["relais-api:referral", "relais-api:sites", "relais-api:notifications",
                            "relais-api:ops"]


async def test_a_token_opens_the_apis_its_audience_names_and_no_other(platform: Platform) -> None:
    assert await platform.statuses(await platform.token()) == OPENED  # the README's walkthrough
    for_sites = await platform.token(audience="sites")
    assert await platform.statuses(for_sites) == {"referral": 401, "sites": 200, "notifications": 401}
    both = await platform.token(audience="notifications referral")
    assert await platform.statuses(both) == {"referral": 404, "sites": 401, "notifications": 200}
    unknown = await platform.clients["referral"].post("/api/v1/auth/token", data={
        "username": "demo-ops", "password": "demo", "audience": "sites desk"})
    assert unknown.status_code == 422 and unknown.json()["errors"][0]["field"] == "audience"
    head, body, signature = for_sites.split(".")
    altered = f"{head}.{body}.{signature[:10]}{'B' if signature[10] == 'A' else 'A'}{signature[11:]}"
    refused = await platform.clients["sites"].get("/api/v1/sites", headers={"Authorization": f"Bearer {altered}"})
    assert refused.status_code == 401 and refused.json()["detail"] == "invalid token: bad signature"


async def test_the_desk_and_the_apis_accept_nothing_of_each_other(platform: Platform) -> None:
    desk = platform.clients["desk"]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=platform.apps["desk"]),
                                 base_url="http://desk") as expert:
        await desk_sign_in(expert)
        desk_cookie = next(iter(expert.cookies.values()))
    assert await platform.statuses(desk_cookie) == {service: 401 for service in SERVICES}
    desk_jwks = (await desk.get("/.well-known/jwks.json")).json()["keys"]
    referral_jwks = (await platform.clients["referral"].get("/.well-known/jwks.json")).json()["keys"]
    assert {k["kid"] for k in desk_jwks}.isdisjoint({k["kid"] for k in referral_jwks})
    assert jwt.decode(desk_cookie, options={"verify_signature": False})["iss"] == "relais-desk:justice"
    # A referral token (as a bearer, or as the desk's cookie) opens nothing at the desk.
    token = await platform.token()
    as_bearer = await desk.get("/dossiers", headers={"Authorization": f"Bearer {token}"})
    as_cookie = await desk.get("/dossiers", cookies={"relais_desk_session": token})
    for answer in (as_bearer, as_cookie):
        assert answer.status_code == 303 and answer.headers["location"].startswith("/connexion")


async def test_a_rotation_keeps_both_keys_then_the_retired_one_opens_nothing(platform: Platform) -> None:
    old = await platform.token()
    old_kid = jwt.get_unverified_header(old)["kid"]
    assert await platform.statuses(old) == OPENED
    for service in ("sites", "notifications"):  # the refresh interval has its own test (unit)
        platform.remote_keys(service).min_refresh_s = 0

    tokenkeys.cmd_rotate(platform.referral_keys)  # no restart of anything
    new = await platform.token()
    new_kid = jwt.get_unverified_header(new)["kid"]
    assert new_kid != old_kid
    assert await platform.statuses(new) == OPENED, "an unknown kid fetches the JWKS again"
    assert await platform.statuses(old) == OPENED, "both keys verify during the change"

    tokenkeys.cmd_retire(platform.referral_keys, old_kid)
    for service in ("sites", "notifications"):
        platform.remote_keys(service).max_age_s = 0  # their cache has aged (300 s by default)
    assert await platform.statuses(old) == {service: 401 for service in SERVICES}
    assert await platform.statuses(new) == OPENED
    detail = (await platform.clients["sites"].get("/api/v1/sites", headers={"Authorization": f"Bearer {old}"}))
    assert detail.json()["detail"] == "invalid token: signed by a key the issuer does not publish"


async def test_an_ops_token_opens_the_ops_api_of_every_service_but_the_desks(platform: Platform) -> None:
    ops, adviser = await platform.token(), await platform.token("demo-adviser")
    for service in (*SERVICES, "desk"):
        answers = []
        for token in (ops, adviser):
            response = await platform.clients[service].get("/api/v1/ops/parked",
                                                           headers={"Authorization": f"Bearer {token}"})
            answers.append(response.status_code)
            if response.status_code == 200:
                assert response.json() == {"schema": service, "rows": []}
        # The desks take no referral token (their own issuer): no ops API there.
        assert answers == ([404, 404] if service == "desk" else [200, 403]), service
