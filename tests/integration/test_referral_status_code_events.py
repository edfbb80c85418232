"""The citizen's status code made when the referral is routed (issue #13 items 3 and 4),
against the referral service in-process (real broker, real PostgreSQL): it is kept as a
keyed hash and sealed, opens the status page, is the one the receipt prints (the same at
each print), and « Nouveau code » replaces it; the events on `referrals` that tell the
citizen of a step (routed, info requested, rejected, answered) carry the recipient and
the link — the current code — and the operator's inbox never does. A referral whose only
code is on a receipt printed before codes were sealed keeps it. The pages' own rules
(scope, roles, forms): test_referral_status_link; erased data: test_referral_retention."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio

from relais_referral.adapters.sealed import STATUS_CODE
from relais_referral.domain import status_link
from tests.referral_app import (
    browser,
    citizen_visit,
    csrf,
    open_visit,
    operator_says,
    refer_visit,
    referral_api,
    sign_in_pages,
    status_is,
)
from tests.support import TopicReader, eventually, of_type

pytestmark = pytest.mark.asyncio(loop_scope="module")
PUBLIC = "https://relais.example.fr"
CODE = re.compile(r'id="code-suivi">([A-Z0-9-]+)<')
BORN = "1970-05-06"
ADDRESS = {"street": "1 place de la Mairie", "postcode": "47000", "city": "Agen"}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def api(module_database_url: str, kafka_bootstrap: str) -> AsyncIterator[httpx.AsyncClient]:
    async with referral_api(module_database_url, kafka_bootstrap, RELAIS_PUBLIC_URL=PUBLIC + "/") as client:
        yield client


def app_of(api: httpx.AsyncClient) -> Any:
    return api.app  # type: ignore[attr-defined]


async def sealed_code(api: httpx.AsyncClient, referral_id: str) -> str:
    """The referral's live code, as stored: checked sealed, bound to the referral, and
    found by its keyed hash."""
    vault = app_of(api).state.context.vault
    async with app_of(api).state.runtime.pool.acquire() as conn:
        row = await conn.fetchrow("SELECT code, code_index FROM status_links WHERE referral_id = $1", referral_id)
    assert row is not None and row["code"].startswith("rv1:")
    code = vault.open(row["code"], STATUS_CODE.context(referral_id))
    assert status_link.typed_code(code) == code and row["code_index"] == vault.blind_index(status_link.INDEX_KIND,
                                                                                           code)
    return str(status_link.grouped(code))


async def printed_code(desk: httpx.AsyncClient, referral_id: str) -> str:
    asked = await desk.get(f"/demandes/{referral_id}/recu")
    printed = await desk.post(f"/demandes/{referral_id}/recu", data={"csrf_token": csrf(asked), "format": "html"})
    assert printed.status_code == 200, printed.text[:300]
    code = CODE.search(printed.text).group(1)  # type: ignore[union-attr]
    assert f"{PUBLIC}/suivi/{code}" in printed.text  # RELAIS_PUBLIC_URL, as in the events
    return code


async def renewed_code(desk: httpx.AsyncClient, referral_id: str) -> str:
    asked = await desk.get(f"/demandes/{referral_id}/nouveau-code")
    renewed = await desk.post(f"/demandes/{referral_id}/nouveau-code",
                              data={"csrf_token": csrf(asked), "confirmation": "oui"})
    assert renewed.status_code == 200, renewed.text[:300]
    return CODE.search(renewed.text).group(1)  # type: ignore[union-attr]


async def opens(api: httpx.AsyncClient, code: str) -> int:
    async with browser(app_of(api), "192.0.2.40") as phone:
        return (await phone.get(f"/suivi/{code}")).status_code


async def events_of(bootstrap: str, topic: str, referral_id: str, name: str) -> list[dict[str, Any]]:
    async with TopicReader(bootstrap, topic) as reader:
        records = await reader.until(lambda rs: any(r.key == referral_id.encode() for r in of_type(rs, name)),
                                     what=f"{name} on {topic}")
    return [json.loads(r.value) for r in of_type(records, name) if r.key == referral_id.encode()]


async def referred(api: httpx.AsyncClient, given_name: str, family_name: str, email: str) -> str:
    """A referral of a citizen reached by e-mail, routed."""
    return await refer_visit(api, await open_visit(api, citizen_visit(given_name, family_name, birth_date=BORN,
                                                                      email=email)))


def link(code: str) -> dict[str, str]:
    return {"url": f"{PUBLIC}/suivi/{code}", "code": code}


async def test_routing_makes_the_code_the_receipt_prints_and_the_citizen_is_sent(api: httpx.AsyncClient,
                                                                                kafka_bootstrap: str) -> None:
    visit_id = await open_visit(api, citizen_visit("Aline", "Brunetière", birth_date=BORN,
                                                   phone="06 12 34 56 78", channel="sms"))
    referral_id = await refer_visit(api, visit_id)
    code = await sealed_code(api, referral_id)
    assert await opens(api, code) == 200

    [routed] = await events_of(kafka_bootstrap, "referrals", referral_id, "referral.routed")
    # An SMS recipient with an address: the letter a failed SMS falls back to.
    assert routed["recipient"] == {"display_name": "Aline Brunetière", "channel": "sms",
                                   "phone": "06 12 34 56 78", "postal_address": ADDRESS}
    assert routed["status_link"] == link(code)
    [inbox] = await events_of(kafka_bootstrap, "operator.caf.inbox", referral_id, "referral.routed")
    assert "recipient" not in inbox and "status_link" not in inbox
    assert code not in json.dumps(inbox) and code.replace("-", "") not in json.dumps(inbox)

    async with browser(app_of(api)) as desk:
        assert (await sign_in_pages(desk, "demo-adviser")).status_code == 303
        assert await printed_code(desk, referral_id) == code
        assert await printed_code(desk, referral_id) == code  # the same at each print
        new = await renewed_code(desk, referral_id)
        assert new != code and await printed_code(desk, referral_id) == new
    assert await sealed_code(api, referral_id) == new
    assert await opens(api, code) == 404 and await opens(api, new) == 200

    # The steps that follow carry the current code.
    await operator_says(kafka_bootstrap, "operator.info_requested", referral_id,
                        question="Pouvez-vous apporter l'avis d'imposition ?",
                        documents=["Dernier avis d'imposition"])
    [asked] = await events_of(kafka_bootstrap, "referrals", referral_id, "referral.info_requested")
    assert asked["question"] == "Pouvez-vous apporter l'avis d'imposition ?"
    assert asked["documents"] == ["Dernier avis d'imposition"]
    assert asked["recipient"]["channel"] == "sms" and asked["status_link"] == link(new)
    await operator_says(kafka_bootstrap, "operator.rejected", referral_id, reason_code="not_competent",
                        suggested_operator="cnam")
    [rejected] = await events_of(kafka_bootstrap, "referrals", referral_id, "referral.rejected")
    assert rejected["recipient"] == routed["recipient"] and rejected["status_link"] == link(new)

    # Re-routed: the new referral has a code of its own, sent with its `referral.routed`.
    await eventually(lambda: status_is(api, referral_id, "rejected"), what="rejected")
    response = await api.post(f"/api/v1/referrals/{referral_id}/reroute", json={
        "operator": "cnam", "procedure": "cnam.complementaire-sante-solidaire", "consent": {"given": True}})
    assert response.status_code == 201, response.text
    second = response.json()["referral_id"]
    await eventually(lambda: status_is(api, second, "routed"), what="the new referral routed")
    [rerouted] = await events_of(kafka_bootstrap, "referrals", second, "referral.routed")
    assert rerouted["status_link"] == link(await sealed_code(api, second)) != link(new)


async def test_the_answer_carries_the_link_and_old_printed_codes_keep_working(api: httpx.AsyncClient,
                                                                             kafka_bootstrap: str) -> None:
    fresh = await referred(api, "Paul", "Ardouin", "p.a@example.org")
    code = await sealed_code(api, fresh)
    await operator_says(kafka_bootstrap, "operator.answered", fresh, outcome="resolved",
                        message_to_citizen="Votre prime est recalculée.", message_to_adviser="Fait.")
    [answered] = await events_of(kafka_bootstrap, "referrals", fresh, "referral.answered")
    assert answered["status_link"] == link(code)
    assert answered["recipient"] == {"display_name": "Paul Ardouin", "channel": "email", "email": "p.a@example.org"}

    # Routed before codes were sealed: one with a receipt printed then (its keyed hash
    # only), one never printed (no code at all).
    printed_before = await referred(api, "Léa", "Garnier", "l@g.fr")
    never_printed = await referred(api, "Jean", "Roux", "j@r.fr")
    old_code = status_link.new_code()
    vault = app_of(api).state.context.vault
    async with app_of(api).state.runtime.pool.acquire() as conn:
        await conn.execute("UPDATE status_links SET code = NULL, code_index = $2 WHERE referral_id = $1",
                           printed_before, vault.blind_index(status_link.INDEX_KIND, old_code))
        await conn.execute("DELETE FROM status_links WHERE referral_id = $1", never_printed)
    for referral_id in (printed_before, never_printed):
        await operator_says(kafka_bootstrap, "operator.info_requested", referral_id, question="Un justificatif ?")
    [kept] = await events_of(kafka_bootstrap, "referrals", printed_before, "referral.info_requested")
    assert "status_link" not in kept  # a new code would silently void the one the citizen holds
    assert await opens(api, status_link.grouped(old_code)) == 200
    [made] = await events_of(kafka_bootstrap, "referrals", never_printed, "referral.info_requested")
    assert made["status_link"] == link(await sealed_code(api, never_printed))

    # Its first print makes the code to keep (the old one stops), the same at the next.
    async with browser(app_of(api)) as desk:
        assert (await sign_in_pages(desk, "demo-adviser")).status_code == 303
        first = await printed_code(desk, printed_before)
        assert first == await sealed_code(api, printed_before) == await printed_code(desk, printed_before)
    assert await opens(api, status_link.grouped(old_code)) == 404
