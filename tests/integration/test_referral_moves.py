"""Every transition of the lifecycle through the referral service, the refused ones
included: the adviser's moves over the API (409 naming the current status), the
operator's from its outbox (dead letter naming it), and the deadlines."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import pytest_asyncio

from relais_kit.contract import load_contract
from relais_kit.settings import REPO_ROOT
from relais_referral.service_layer.overdue import flag_overdue
from tests.referral_app import refer, referral_api, sign_in, status_is
from tests.support import TopicReader, eventually, headers, of_type, open_as, produce

pytestmark = pytest.mark.asyncio(loop_scope="module")
CONTRACT = load_contract(REPO_ROOT / "schemas")
AT = "2026-11-20T10:00:00+01:00"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def api(module_database_url: str, kafka_bootstrap: str) -> AsyncIterator[httpx.AsyncClient]:
    async with referral_api(module_database_url, kafka_bootstrap, RELAIS_OVERDUE_CHECK_S=0.2) as client:
        yield client


async def operator_says(bootstrap: str, name: str, referral_id: str, operator: str = "caf", **data) -> None:
    stamp = {"operator.acknowledged": "acknowledged_at", "operator.info_requested": "requested_at",
             "operator.rejected": "rejected_at", "operator.answered": "answered_at"}[name]
    await produce(bootstrap, f"operator.{operator}.outbox", name, {"referral_id": referral_id, stamp: AT, **data},
                  subject=referral_id, source=f"/operators/{operator}")


async def routed(api: httpx.AsyncClient, **overrides) -> str:
    referral_id = await refer(api, **overrides)
    await eventually(lambda: status_is(api, referral_id, "routed"), what="routed")
    return referral_id


async def inbox_events(bootstrap: str, topic: str, referral_id: str, name: str, count: int = 1) -> list[dict]:
    async with TopicReader(bootstrap, topic) as reader:
        records = await reader.until(
            lambda rs: len([r for r in of_type(rs, name) if r.key == referral_id.encode()]) >= count,
            what=f"{name} on {topic}")
    found = [r for r in of_type(records, name) if r.key == referral_id.encode()]
    for record in found:
        CONTRACT.check(headers(record)["ce_type"], json.loads(record.value))
    return [json.loads(r.value) for r in found]


async def test_info_requested_then_provided_then_answered_then_closed(api, kafka_bootstrap):
    referral_id = await routed(api)
    await operator_says(kafka_bootstrap, "operator.acknowledged", referral_id)
    await operator_says(kafka_bootstrap, "operator.info_requested", referral_id,
                        question="Pouvez-vous joindre le dernier avis d'imposition ?")
    await eventually(lambda: status_is(api, referral_id, "info_requested"), what="info_requested")
    response = await api.post(f"/api/v1/referrals/{referral_id}/info", json={"message": "Avis joint au dossier."})
    assert response.status_code == 200 and response.json()["status"] == "acknowledged"
    [provided] = await inbox_events(kafka_bootstrap, "operator.caf.inbox", referral_id, "referral.info_provided")
    assert open_as("caf", provided)["message"] == "Avis joint au dossier." and provided["operator"] == "caf"
    await operator_says(kafka_bootstrap, "operator.answered", referral_id, outcome="appointment_offered",
                        appointment={"at": "2026-12-02T10:00:00+01:00", "place": "CAF d'Agen", "room": "B"},
                        message_to_citizen="Rendez-vous le 2 décembre.", message_to_adviser="RDV fixé.")
    await eventually(lambda: status_is(api, referral_id, "answered"), what="answered")
    closing = await api.post(f"/api/v1/referrals/{referral_id}/close", json={"outcome": "resolved"})
    assert closing.status_code == 200 and closing.json()["status"] == "closed"
    body = (await api.get(f"/api/v1/referrals/{referral_id}")).json()
    assert [e["event"] for e in body["timeline"]] == [
        "requested", "routed", "acknowledged", "info_requested", "info_provided", "answered", "closed"]
    again = await api.post(f"/api/v1/referrals/{referral_id}/close", json={"outcome": "resolved"})
    assert again.status_code == 409
    assert "current status is closed" in again.json()["detail"]
    assert again.headers["X-Referral-Status"] == "closed"


async def test_refused_adviser_moves_name_the_current_status(api):
    referral_id = await routed(api)
    cases = [("info", {"message": "x"}), ("close", {"outcome": "resolved"}),
             ("reroute", {"operator": "cnam", "procedure": "cnam.carte-vitale", "consent": {"given": True}})]
    for action, body in cases:
        response = await api.post(f"/api/v1/referrals/{referral_id}/{action}", json=body)
        assert response.status_code == 409, (action, response.text)
        assert "current status is routed" in response.json()["detail"]
    bad = await api.post(f"/api/v1/referrals/{referral_id}/close", json={"outcome": "whatever"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "outcome"


async def test_rejected_then_rerouted_to_the_suggested_operator(api, kafka_bootstrap):
    referral_id = await routed(api)
    await operator_says(kafka_bootstrap, "operator.rejected", referral_id, reason_code="not_competent",
                        suggested_operator="cnam", reason="Relève de l'Assurance Maladie")
    await eventually(lambda: status_is(api, referral_id, "rejected"), what="rejected")
    response = await api.post(f"/api/v1/referrals/{referral_id}/reroute", json={
        "operator": "cnam", "procedure": "cnam.complementaire-sante-solidaire", "consent": {"given": True}})
    assert response.status_code == 201, response.text
    new_id = response.json()["referral_id"]
    new = await eventually(lambda: status_is(api, new_id, "routed"), what="the new referral routed")
    assert new["supersedes_referral_id"] == referral_id and new["operator"] == "cnam"
    [inbox] = await inbox_events(kafka_bootstrap, "operator.cnam.inbox", new_id, "referral.routed")
    assert open_as("cnam", inbox)["summary"].startswith("Le montant")  # the rejected referral's summary, by default
    old = (await api.get(f"/api/v1/referrals/{referral_id}")).json()
    assert old["status"] == "closed" and old["timeline"][-1]["detail"] == {"outcome": "rerouted"}
    [requested] = await inbox_events(kafka_bootstrap, "referrals", new_id, "referral.requested")
    assert requested["supersedes_referral_id"] == referral_id


async def test_cancelled_referral_tells_the_operator_and_refuses_its_answer(api, kafka_bootstrap):
    referral_id = await routed(api)
    response = await api.post(f"/api/v1/referrals/{referral_id}/cancel",
                              json={"reason": "La personne a trouvé une solution."})
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    [cancelled] = await inbox_events(kafka_bootstrap, "operator.caf.inbox", referral_id, "referral.cancelled")
    assert cancelled["reason"] == "La personne a trouvé une solution."
    await operator_says(kafka_bootstrap, "operator.answered", referral_id, outcome="resolved",
                        message_to_citizen="Fait.", message_to_adviser="Fait.")
    async with TopicReader(kafka_bootstrap, "operator.caf.outbox.dlq") as reader:
        records = await reader.until(lambda rs: any(r.key == referral_id.encode() for r in rs),
                                     what="the answer to a cancelled referral dead-lettered")
    refused = next(r for r in records if r.key == referral_id.encode())
    assert headers(refused)["dlq_error"] == "forbidden_transition"
    assert "current status is cancelled" in headers(refused)["dlq_reason"]
    again = await api.post(f"/api/v1/referrals/{referral_id}/cancel", json={})
    assert again.status_code == 409


async def test_operator_moves_out_of_order_are_dead_lettered(api, kafka_bootstrap):
    referral_id = await routed(api)
    await operator_says(kafka_bootstrap, "operator.answered", referral_id, outcome="resolved",
                        message_to_citizen="Fait.", message_to_adviser="Fait.")
    await eventually(lambda: status_is(api, referral_id, "answered"), what="answered")
    for name, data in (("operator.acknowledged", {}), ("operator.info_requested", {"question": "?"}),
                       ("operator.rejected", {"reason_code": "other"})):
        await operator_says(kafka_bootstrap, name, referral_id, **data)
    async with TopicReader(kafka_bootstrap, "operator.caf.outbox.dlq") as reader:
        records = await reader.until(
            lambda rs: len([r for r in rs if r.key == referral_id.encode()]) >= 3, what="three refusals")
    mine = [r for r in records if r.key == referral_id.encode()]
    assert {headers(r)["dlq_error"] for r in mine} == {"forbidden_transition"}
    assert all("current status is answered" in headers(r)["dlq_reason"] for r in mine)


async def test_another_sites_adviser_cannot_move_the_referral(api):
    referral_id = await routed(api)
    token = await sign_in(api, "demo-adviser-martignas")
    response = await api.post(f"/api/v1/referrals/{referral_id}/cancel", json={},
                              headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 404


async def test_overdue_is_announced_once_to_the_log_and_the_operator(api, kafka_bootstrap):
    referral_id = await routed(api)
    pool = api.app.state.runtime.pool
    async with pool.acquire() as conn:
        await conn.execute("UPDATE referrals SET due_at = $2 WHERE referral_id = $1",
                           referral_id, datetime.now(UTC) - timedelta(minutes=1))
    flagged = await eventually(lambda: _overdue(api, referral_id), what="the referral flagged overdue")
    assert flagged["status"] == "routed" and flagged["timeline"][-1]["event"] == "overdue"
    [reminder] = await inbox_events(kafka_bootstrap, "operator.caf.inbox", referral_id, "referral.reminder")
    assert reminder["operator"] == "caf"
    [overdue] = await inbox_events(kafka_bootstrap, "referrals", referral_id, "referral.overdue")
    assert overdue["status"] == "routed"
    # A later pass (or another instance, or a restart) does not flag it again.
    async with pool.acquire() as conn, conn.transaction():
        assert await flag_overdue(conn, api.app.state.context) == 0
    body = (await api.get(f"/api/v1/referrals/{referral_id}")).json()
    assert [e["event"] for e in body["timeline"]].count("overdue") == 1
    # An answer still arrives, late: accepted.
    await operator_says(kafka_bootstrap, "operator.answered", referral_id, outcome="resolved",
                        message_to_citizen="Fait.", message_to_adviser="Fait.")
    await eventually(lambda: status_is(api, referral_id, "answered"), what="late answer")


async def _overdue(api: httpx.AsyncClient, referral_id: str) -> dict | None:
    body = (await api.get(f"/api/v1/referrals/{referral_id}")).json()
    return body if body["overdue"] else None
