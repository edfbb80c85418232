"""The citizen's status link (issue #13 item 3), against the referral service in-process
(real broker, real PostgreSQL): the adviser prints a receipt (the referral's code, the same
at each print, audited) and renews the code at the counter (« Nouveau code »: the old one
stops); the code opens a public page with the first name only, counted and not cached;
mistyped, unknown, replaced and expired codes get one and the same page; a client address
may try only so many codes; other sites, the read-only role and forged forms print and
renew nothing. The code made at routing and the events: test_referral_status_code_events."""

from __future__ import annotations

import io
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import httpx
import pytest
import pytest_asyncio
from pypdf import PdfReader

from relais_kit.envelope import now
from relais_referral.adapters import places
from relais_referral.entrypoints.ui.suivi import CodeThrottle
from relais_referral.service_layer import status_links
from tests.referral_app import browser, csrf, operator_says, refer, referral_api, sign_in_pages, status_is
from tests.support import eventually

pytestmark = pytest.mark.asyncio(loop_scope="module")
CODE = re.compile(r'id="code-suivi">([A-Z0-9-]+)<')


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def api(module_database_url: str, kafka_bootstrap: str) -> AsyncIterator[httpx.AsyncClient]:
    async with referral_api(module_database_url, kafka_bootstrap) as client:
        yield client


def pool(api: httpx.AsyncClient) -> Any:
    return api.app.state.runtime.pool  # type: ignore[attr-defined]


async def routed(api: httpx.AsyncClient) -> str:
    referral_id = await refer(api)
    await eventually(lambda: status_is(api, referral_id, "routed"), what="routed")
    return referral_id


@asynccontextmanager
async def adviser(api: httpx.AsyncClient, user: str = "demo-adviser") -> AsyncIterator[httpx.AsyncClient]:
    async with browser(api.app) as client:  # type: ignore[attr-defined]
        assert (await sign_in_pages(client, user)).status_code == 303
        yield client


async def print_receipt(client: httpx.AsyncClient, referral_id: str, fmt: str = "html") -> httpx.Response:
    asked = await client.get(f"/demandes/{referral_id}/recu")
    assert asked.status_code == 200, asked.text[:300]
    assert "Le code de suivi est le même à chaque impression" in asked.text
    assert f'href="/demandes/{referral_id}/nouveau-code">Nouveau code' in asked.text
    return await client.post(f"/demandes/{referral_id}/recu", data={"csrf_token": csrf(asked), "format": fmt})


async def renew(client: httpx.AsyncClient, referral_id: str) -> httpx.Response:
    """« Nouveau code »: its confirmation page, then confirmed."""
    asked = await client.get(f"/demandes/{referral_id}/nouveau-code")
    assert asked.status_code == 200 and "Donner un nouveau code de suivi ?" in asked.text, asked.text[:300]
    return await client.post(f"/demandes/{referral_id}/nouveau-code",
                             data={"csrf_token": csrf(asked), "confirmation": "oui"})


async def code_of(client: httpx.AsyncClient, referral_id: str) -> str:
    printed = await print_receipt(client, referral_id)
    assert printed.status_code == 200, printed.text[:300]
    found = CODE.search(printed.text)
    assert found, printed.text
    return found.group(1)


def citizen(api: httpx.AsyncClient, address: str = "192.0.2.10") -> httpx.AsyncClient:
    return browser(api.app, address)  # type: ignore[attr-defined]


async def test_the_receipt_code_opens_the_status_page_with_the_first_name_only(api: httpx.AsyncClient) -> None:
    referral_id = await routed(api)
    async with adviser(api) as desk:
        page = await desk.get(f"/demandes/{referral_id}")
        assert f'href="/demandes/{referral_id}/recu">Imprimer le récépissé' in page.text
        printed = await print_receipt(desk, referral_id)
        code = CODE.search(printed.text).group(1)  # type: ignore[union-attr]
        assert re.fullmatch(r"[2-9A-HJ-NP-Z]{4}-[2-9A-HJ-NP-Z]{4}-[2-9A-HJ-NP-Z]{2}", code)
        assert f"http://referral/suivi/{code}" in printed.text  # the QR's link, and the page's address
        assert "<svg" in printed.text and "Caisse d&#39;allocations familiales" in printed.text
    async with pool(api).acquire() as conn:
        stored = await conn.fetchrow("SELECT * FROM status_links WHERE referral_id = $1", referral_id)
        audit = await conn.fetch(
            "SELECT action, user_id FROM audit WHERE referral_id = $1 AND action = 'print_receipt'", referral_id)
    assert stored["views"] == 0 and code.replace("-", "") not in str(dict(stored)) and code not in str(dict(stored))
    assert [(r["action"], r["user_id"]) for r in audit] == [("print_receipt", "demo-adviser")]

    async with citizen(api) as phone:
        shown = await phone.get(f"/suivi/{code}")
        assert shown.status_code == 200
        text = shown.text
        assert "Bonjour Michel" in text and "envoyée à la CAF" in text and "Prime d&#39;activité" in text
        for personal in ("Cordier", "1963", "02/04/1963", "michel.cordier", "Lilas", "prime d&#39;activité a baissé"):
            assert personal not in text, personal
        assert "<script" not in text
        assert shown.headers["cache-control"] == "no-store"
        assert "noindex" in shown.headers["x-robots-tag"] and 'name="robots" content="noindex' in text
        assert "set-cookie" not in shown.headers and not phone.cookies
        # Typed by hand: lower case, spaces instead of dashes.
        typed = await phone.get("/suivi", params={"code": f" {code.lower().replace('-', ' ')} "})
        assert typed.status_code == 303 and typed.headers["location"] == f"/suivi/{code}"
        assert (await phone.get(f"/suivi/{code.replace('-', '').lower()}")).status_code == 200
    async with pool(api).acquire() as conn:
        assert await conn.fetchval("SELECT views FROM status_links WHERE referral_id = $1", referral_id) == 2


async def test_a_new_code_replaces_the_old_one_and_unknown_codes_read_the_same(api: httpx.AsyncClient) -> None:
    referral_id = await routed(api)
    async with adviser(api) as desk:
        old = await code_of(desk, referral_id)
        assert await code_of(desk, referral_id) == old  # printed again: the same code
        unconfirmed = await desk.post(f"/demandes/{referral_id}/nouveau-code",
                                      data={"csrf_token": csrf(await desk.get(f"/demandes/{referral_id}/recu"))})
        assert unconfirmed.status_code == 200 and 'id="confirmation"' in unconfirmed.text
        assert await code_of(desk, referral_id) == old  # asked, not confirmed: nothing changed
        renewed = await renew(desk, referral_id)
        assert renewed.status_code == 200 and 'id="code-renouvele"' in renewed.text
        new = CODE.search(renewed.text).group(1)  # type: ignore[union-attr]
        assert await code_of(desk, referral_id) == new
    assert old != new
    async with pool(api).acquire() as conn:
        actions = await conn.fetch("SELECT action FROM audit WHERE referral_id = $1"
                                   " AND action IN ('print_receipt', 'renew_status_code') ORDER BY id", referral_id)
    assert [r["action"] for r in actions] == ["print_receipt"] * 3 + ["renew_status_code", "print_receipt"]
    async with citizen(api, "192.0.2.11") as phone:
        assert (await phone.get(f"/suivi/{new}")).status_code == 200
        replaced = await phone.get(f"/suivi/{old}")
        unknown = await phone.get("/suivi/ZZZZ-ZZZZ-ZZ")
        mistyped = await phone.get("/suivi/OOOO-1111-II")
        assert replaced.status_code == unknown.status_code == mistyped.status_code == 404
        assert replaced.text == unknown.text == mistyped.text
        assert "Revenez au France Services pour un nouveau lien" in replaced.text


async def test_the_link_expires_30_days_after_the_request_ends(api: httpx.AsyncClient) -> None:
    referral_id = await routed(api)
    async with adviser(api) as desk:
        code = await code_of(desk, referral_id)
    assert (await api.post(f"/api/v1/referrals/{referral_id}/cancel", json={"reason": "renonce"})).status_code < 300
    async with citizen(api, "192.0.2.12") as phone:
        shown = await phone.get(f"/suivi/{code}")
        assert shown.status_code == 200 and "Votre demande a été annulée." in shown.text
    ctx = api.app.state.context  # type: ignore[attr-defined]
    async with pool(api).acquire() as conn:
        assert await status_links.read(conn, ctx, code, now() + timedelta(days=29)) is not None
        assert await status_links.read(conn, ctx, code, now() + timedelta(days=30, minutes=1)) is None


async def test_the_page_says_what_to_bring_and_when_the_site_is_open(api: httpx.AsyncClient,
                                                                   kafka_bootstrap: str) -> None:
    referral_id = await routed(api)
    async with pool(api).acquire() as conn:
        await places.set_schedule(conn, "agen-leon-blum-poste", [
            {"weekday": d, "opens": "09:00", "closes": "12:00"} for d in range(1, 8)])
    await operator_says(kafka_bootstrap, "operator.info_requested", referral_id,
                        question="Pouvez-vous apporter l'avis d'imposition ?",
                        documents=["Dernier avis d'imposition"])
    await eventually(lambda: status_is(api, referral_id, "info_requested"), what="info requested")
    async with adviser(api) as desk:
        code = await code_of(desk, referral_id)
    async with citizen(api, "192.0.2.13") as phone:
        text = (await phone.get(f"/suivi/{code}")).text
    assert "La CAF demande une information : revenez au France Services." in text
    assert "Dernier avis d&#39;imposition" in text
    assert "apporter l&#39;avis" not in text  # the operator's free text is not shown
    assert len(re.findall(r"de 9 h à 12 h", text)) == 3 and "France Services — Agen Léon Blum (Agen)" in text


async def test_other_sites_the_read_only_role_and_forged_forms_print_nothing(api: httpx.AsyncClient) -> None:
    referral_id = await routed(api)
    async with pool(api).acquire() as conn:
        made = await conn.fetchrow("SELECT code_index, code FROM status_links WHERE referral_id = $1", referral_id)
    async with adviser(api, "demo-adviser-martignas") as other:
        assert (await other.get(f"/demandes/{referral_id}/recu")).status_code == 404
        assert (await other.get(f"/demandes/{referral_id}/nouveau-code")).status_code == 404
        page = await other.get("/demandes")
        forged = await other.post(f"/demandes/{referral_id}/recu", data={"csrf_token": csrf(page)})
        assert forged.status_code == 404
        forged = await other.post(f"/demandes/{referral_id}/nouveau-code",
                                  data={"csrf_token": csrf(page), "confirmation": "oui"})
        assert forged.status_code == 404
    async with adviser(api, "demo-ops") as ops:
        assert (await ops.get(f"/demandes/{referral_id}/recu")).status_code in (403, 404)
        assert (await ops.get(f"/demandes/{referral_id}/nouveau-code")).status_code in (403, 404)
    async with adviser(api) as desk:
        assert (await desk.post(f"/demandes/{referral_id}/recu", data={"format": "html"})).status_code == 403
        assert (await desk.post(f"/demandes/{referral_id}/nouveau-code",
                                data={"confirmation": "oui"})).status_code == 403
    async with pool(api).acquire() as conn:  # the code made at routing, untouched; nothing audited
        assert await conn.fetchrow("SELECT code_index, code FROM status_links WHERE referral_id = $1",
                                   referral_id) == made
        assert await conn.fetchval("SELECT count(*) FROM audit WHERE referral_id = $1"
                                   " AND action IN ('print_receipt', 'renew_status_code')", referral_id) == 0


async def test_codes_are_throttled_per_client_address(api: httpx.AsyncClient) -> None:
    app = api.app  # type: ignore[attr-defined]
    saved = getattr(app.state, "status_throttle", None)
    app.state.status_throttle = CodeThrottle("3 per minute")
    try:
        async with citizen(api, "192.0.2.99") as guesser, citizen(api, "192.0.2.98") as other:
            answers = [(await guesser.get(f"/suivi/ZZZZ-ZZZZ-Z{c}")).status_code for c in "ABCD"]
            assert answers == [404, 404, 404, 429]
            assert (await other.get("/suivi/ZZZZ-ZZZZ-ZE")).status_code == 404
    finally:
        app.state.status_throttle = saved


async def test_the_receipt_prints_as_a_pdf(api: httpx.AsyncClient) -> None:
    referral_id = await routed(api)
    async with adviser(api) as desk:
        printed = await print_receipt(desk, referral_id, "pdf")
    assert printed.status_code == 200 and printed.headers["content-type"] == "application/pdf"
    text = "".join(page.extract_text() for page in PdfReader(io.BytesIO(printed.content)).pages)
    code = re.search(r"[2-9A-HJ-NP-Z]{4}-[2-9A-HJ-NP-Z]{4}-[2-9A-HJ-NP-Z]{2}", text)
    assert code and "Récépissé de votre demande" in text and "Caisse d" in text
    async with citizen(api, "192.0.2.14") as phone:
        assert (await phone.get(f"/suivi/{code.group(0)}")).status_code == 200
