"""The referral service started in-process on the real broker and PostgreSQL, with a
known site and a signed-in demo adviser, for the integration tests of its modules;
browsers of its pages, and the app on a real socket (for its live feeds)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import uvicorn

from relais_kit.embedded import free_port
from relais_kit.runtime import until_ready
from relais_referral.app import create_app
from relais_referral.settings import ReferralSettings
from tests.support import eventually, produce

SITE = {
    "site_id": "agen-leon-blum-poste", "name": "France Services — Agen Léon Blum", "kind": "post_office",
    "address": {"street": "Avenue Léon Blum", "postcode": "47000", "city": "Agen"}, "department": "47",
    "operators": ["la-poste", "caf", "ants", "dgfip", "cnam", "france-travail"],
    "schedule": [], "updated_at": "2026-11-20T09:00:00+01:00",
}
VISIT = {"site_id": "agen-leon-blum-poste", "channel": "in_person",
         "citizen": {"given_name": "Michel", "family_name": "Cordier", "birth_date": "1963-04-02",
                     "contact": {"channel": "email", "email": "michel.cordier@example.org",
                                 # what the CAF needs too (catalogue.yaml: citizen_fields)
                                 "postal_address": {"street": "3 rue des Lilas", "postcode": "47000", "city": "Agen"}}}}
REFERRAL = {"operator": "caf", "procedure": "caf.prime-activite",
            "summary": "Le montant de la prime d'activité a baissé sans explication.",
            "consent": {"given": True}}


# A test module signs in many times from one address, faster than people do; the
# throttle's own tests set their limits (tests/integration/test_referral_security.py).
GENEROUS_SIGN_IN = {"RELAIS_SIGNIN_LIMIT_PER_ACCOUNT": "1000 per minute",
                    "RELAIS_SIGNIN_LIMIT_PER_ADDRESS": "1000 per minute"}


@asynccontextmanager
async def referral_api(database_url: str, bootstrap: str, **settings: Any) -> AsyncIterator[httpx.AsyncClient]:
    """One referral service, as in production: tests use referrals of their own."""
    app = create_app(ReferralSettings(DATABASE_URL=database_url, KAFKA_BOOTSTRAP_SERVERS=bootstrap,
                                      **{**GENEROUS_SIGN_IN, **settings}))
    async with app.router.lifespan_context(app):
        await until_ready(app)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://referral") as client:
            await produce(bootstrap, "sites", "site.upserted", SITE, subject=SITE["site_id"])
            client.headers["Authorization"] = f"Bearer {await sign_in(client, 'demo-adviser')}"
            await eventually(lambda: _site_known(client), what="the site to reach the referral service")
            client.app = app  # type: ignore[attr-defined]
            yield client


async def sign_in(client: httpx.AsyncClient, user: str) -> str:
    response = await client.post("/api/v1/auth/token", data={"username": user, "password": "demo"})
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


async def _site_known(client: httpx.AsyncClient) -> bool:
    response = await client.post("/api/v1/visits", json=VISIT)
    return response.status_code == 201


async def refer(client: httpx.AsyncClient, **overrides: Any) -> str:
    visit = await client.post("/api/v1/visits", json=VISIT)
    assert visit.status_code == 201, visit.text
    response = await client.post(f"/api/v1/visits/{visit.json()['visit_id']}/referrals",
                                 json={**REFERRAL, **overrides})
    assert response.status_code == 201, response.text
    assert response.json()["status"] == "requested"
    return str(response.json()["referral_id"])


async def status_is(client: httpx.AsyncClient, referral_id: str, wanted: str) -> dict[str, Any] | None:
    body: dict[str, Any] = (await client.get(f"/api/v1/referrals/{referral_id}")).json()
    return body if body["status"] == wanted else None


CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf(page: httpx.Response) -> str:
    found = CSRF.search(page.text)
    assert found, page.text[:300]
    return found.group(1)


def browser(app: Any, address: str = "127.0.0.1") -> httpx.AsyncClient:
    """A browser of its own (cookie jar) on the app's pages, from `address`."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=(address, 51000)),
                             base_url="http://referral")


async def sign_in_pages(client: httpx.AsyncClient, user: str, password: str = "demo") -> httpx.Response:
    page = await client.get("/connexion")
    return await client.post("/connexion", data={"csrf_token": csrf(page), "user_id": user, "password": password})


@asynccontextmanager
async def served(app: Any) -> AsyncIterator[str]:
    """The app on a real socket (the ASGI test transport buffers whole responses, and a
    feed of events never ends)."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off",
                                           log_level="warning", timeout_graceful_shutdown=2))
    task = asyncio.create_task(server.serve())
    await eventually(lambda: truth(server.started), timeout=10, what="uvicorn started")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


async def truth(value: bool) -> bool:
    return value


# --- the personal-data lifecycle (tests/integration/test_referral_data_at_rest.py, …privacy.py) ---

OPERATOR_STAMPS = {"operator.acknowledged": "acknowledged_at", "operator.info_requested": "requested_at",
                   "operator.rejected": "rejected_at", "operator.answered": "answered_at"}


def citizen_visit(given_name: str, family_name: str, *, birth_date: str | None = None, email: str | None = None,
                  phone: str | None = None, street: str | None = "1 place de la Mairie",
                  channel: str = "email") -> dict[str, Any]:
    """A visit of a citizen of the test's own (unique names: found by them alone); an
    address by default (what most procedures need: catalogue.yaml, `citizen_fields`)."""
    contact: dict[str, Any] = {"channel": channel}
    contact.update({k: v for k, v in (("email", email), ("phone", phone)) if v})
    if street:
        contact["postal_address"] = {"street": street, "postcode": "47000", "city": "Agen"}
    citizen: dict[str, Any] = {"given_name": given_name, "family_name": family_name, "contact": contact}
    if birth_date:
        citizen["birth_date"] = birth_date
    return {"site_id": SITE["site_id"], "channel": "in_person", "citizen": citizen}


async def open_visit(client: httpx.AsyncClient, visit: dict[str, Any]) -> str:
    response = await client.post("/api/v1/visits", json=visit)
    assert response.status_code == 201, response.text
    return str(response.json()["visit_id"])


async def refer_visit(client: httpx.AsyncClient, visit_id: str, **overrides: Any) -> str:
    response = await client.post(f"/api/v1/visits/{visit_id}/referrals", json={**REFERRAL, **overrides})
    assert response.status_code == 201, response.text
    referral_id = str(response.json()["referral_id"])
    await eventually(lambda: status_is(client, referral_id, "routed"), what="routed")
    return referral_id


async def operator_says(bootstrap: str, name: str, referral_id: str, operator: str = "caf", **data: Any) -> None:
    """An operator's reply on its outbox, as its own consumer would produce it."""
    await produce(bootstrap, f"operator.{operator}.outbox", name,
                  {"referral_id": referral_id, OPERATOR_STAMPS[name]: "2026-11-20T10:00:00+01:00", **data},
                  subject=referral_id, source=f"/operators/{operator}")


async def privacy_command(client: httpx.AsyncClient, *argv: str) -> tuple[int, str]:
    """`python -m relais_referral.privacy …` with the service's settings: its exit status
    and what it printed."""
    import io

    from relais_referral import privacy

    printed = io.StringIO()
    code = await privacy.run(list(argv), settings=client.app.state.settings, out=printed)  # type: ignore[attr-defined]
    return code, printed.getvalue()


@asynccontextmanager
async def signed_in(client: httpx.AsyncClient, user: str = "demo-adviser") -> AsyncIterator[httpx.AsyncClient]:
    """A browser of the pages of the service `client` calls, signed in as `user`."""
    async with browser(client.app) as web:  # type: ignore[attr-defined]
        signed = await sign_in_pages(web, user)
        assert signed.status_code == 303, signed.text
        yield web
