"""Signing in to the ops console and its overview, for real: the ops service in-process
on the real broker and PostgreSQL (its lag monitor sampling the broker, its schema
`ops` migrated), signing people in through the referral service's real token API
(in-process too). demo-ops gets in and sees the consumer groups the lag monitor
measured, and, Prometheus not answering (nothing listens at its address), a page that
says so; an adviser is refused with the reason; signing in and out is audited, and a
copy of the cookie opens nothing after signing out. The access token never reaches
the browser. The overview's figures from Prometheus: tests/unit/test_ops_console_overview.py."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from html import unescape
from typing import Any

import asyncpg
import httpx

from relais_kit.embedded import free_port
from relais_ops.adapters.referral_auth import ReferralAuth
from relais_ops.app import create_app
from relais_ops.settings import OpsSettings
from tests.referral_app import referral_api
from tests.support import eventually
from tests.tokens_support import JWKS_URL, KEYS_FILE

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


class ToReferral(httpx.AsyncBaseTransport):
    """The referral service in-process at http://referral."""

    def __init__(self, referral: Any) -> None:
        self.referral = httpx.ASGITransport(app=referral)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        assert request.url.host == "referral", request.url
        return await self.referral.handle_async_request(request)


@asynccontextmanager
async def ops_console(database_url: str, bootstrap: str, referral: Any) -> AsyncIterator[tuple[Any, httpx.AsyncClient]]:
    nobody = f"http://127.0.0.1:{free_port()}"  # Prometheus' address, where nothing listens
    settings = OpsSettings(RELAIS_ENV="test", DATABASE_URL=database_url, KAFKA_BOOTSTRAP_SERVERS=bootstrap,  # type: ignore[call-arg]
                           RELAIS_TOKEN_JWKS_URL=JWKS_URL, RELAIS_REFERRAL_URL="http://referral",
                           RELAIS_PROMETHEUS_URL=nobody, RELAIS_LAG_INTERVAL_S=1)
    app = create_app(settings)
    app.state.token_issuer = ReferralAuth(settings.referral_url, transport=ToReferral(referral))
    async with app.router.lifespan_context(app):
        await eventually(lambda: _ready(app), what="the ops database")
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ops.test") as client:
            yield app, client


async def _ready(app: Any) -> bool:
    return app.state.pool is not None


def csrf_of(page: httpx.Response) -> str:
    found = CSRF.search(page.text)
    assert found, "no CSRF token in the page"
    return found.group(1)


async def audit_rows(database_url: str) -> list[tuple[str, str, str]]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("SELECT user_id, action, details::text AS details FROM ops.ops_audit ORDER BY id")
    finally:
        await conn.close()
    return [(r["user_id"], r["action"], r["details"]) for r in rows]


def cookie_claims(client: httpx.AsyncClient) -> dict[str, Any]:
    [value] = [c.value for c in client.cookies.jar if c.name.endswith("_session")]
    payload = value.split(".")[1]
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return claims


async def test_ops_sign_in_see_the_overview_and_sign_out_an_adviser_is_refused(database_url: str,
                                                                               kafka_bootstrap: str) -> None:
    async with referral_api(database_url, kafka_bootstrap, RELAIS_TOKEN_KEYS_FILE=str(KEYS_FILE)) as referral, \
            ops_console(database_url, kafka_bootstrap, referral.app) as (app, client):  # type: ignore[attr-defined]
        # The referral service's consumer groups, measured by the lag monitor.
        await eventually(lambda: _groups(app), what="the lag monitor to see the referral service's groups")

        sent_away = await client.get("/console")
        assert sent_away.status_code == 303
        assert sent_away.headers["location"] == "/console/connexion?suite=%2Fconsole"
        form = await client.get(sent_away.headers["location"])
        assert form.status_code == 200 and "Connexion à la console d'exploitation" in unescape(form.text)
        csrf = csrf_of(form)

        # An adviser: right password, wrong role.
        adviser = await client.post("/console/connexion", data={"username": "demo-adviser", "password": "demo",
                                                                "suite": "/console", "csrf_token": csrf})
        assert adviser.status_code == 403 and "Ce compte n'a pas le rôle exploitation." in unescape(adviser.text)
        assert (await client.get("/console")).status_code == 303
        wrong = await client.post("/console/connexion", data={"username": "demo-ops", "password": "nope",
                                                              "suite": "/console", "csrf_token": csrf})
        assert wrong.status_code == 401 and "Identifiant ou mot de passe incorrect." in wrong.text
        forged = await client.post("/console/connexion", data={"username": "demo-ops", "password": "demo",
                                                               "suite": "/console", "csrf_token": "forged"})
        assert forged.status_code == 403 and "Action refusée" in forged.text

        signed = await client.post("/console/connexion", data={"username": "demo-ops", "password": "demo",
                                                               "suite": "https://evil.example/", "csrf_token": csrf})
        assert signed.status_code == 303 and signed.headers["location"] == "/console", "no open redirect"
        claims = cookie_claims(client)
        assert claims["sub"] == "demo-ops" and "eyJ" not in json.dumps(claims), "the access token stays on the server"

        page = await client.get("/console")
        assert page.status_code == 200, page.text
        assert "<h1>Vue d'ensemble</h1>" in unescape(page.text) and "Équipe d'exploitation" in unescape(page.text)
        for group in app.state.lag_monitor.groups:
            assert f"<code>{group.name}</code>" in page.text, group.name
        assert "Prometheus ne répond pas" in page.text
        assert "eyJ" not in page.text
        assert page.headers["cache-control"] == "no-store" and "frame-ancestors 'none'" in \
            page.headers["content-security-policy"]
        assert (await client.get("/static/ops/console.css")).status_code == 200

        kept = dict(client.cookies)
        out = await client.post("/console/deconnexion", data={"csrf_token": csrf_of(page)})
        assert out.status_code == 303 and out.headers["location"] == "/console/connexion"
        assert (await client.get("/console")).status_code == 303
        client.cookies.clear()
        client.cookies.update(kept)
        assert (await client.get("/console")).status_code == 303, "a copy of the cookie opens nothing any more"

    rows = await audit_rows(database_url)
    assert [(user, action) for user, action, _ in rows] == \
        [("demo-adviser", "sign_in_refused"), ("demo-ops", "sign_in"), ("demo-ops", "sign_out")]
    assert json.loads(rows[0][2]) == {"role": "adviser"}


async def _groups(app: Any) -> bool:
    names = {group.name for group in app.state.lag_monitor.groups}
    return any(name.startswith("relais-referral") for name in names)
