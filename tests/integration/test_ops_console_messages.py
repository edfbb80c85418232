"""A referral's messages on its journey page in the ops console, for real: the ops
service, the referral service (signing in) and the notifications service in-process
on the real broker and PostgreSQL. Two SMS answers reach the notifications service and
go out (its spool gateway); the gateway's delivery reports come back through its
Kannel callback — the first received by the telephone, the second not — and the page
lists both in words, with the failure's reason, and never the number nor a text.
The notifications API: the list gives the delivery report and the next attempt; its
ops view gives the facts only, to the ops role only."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from html import unescape
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from fastapi import FastAPI

from relais_kit.auth import User
from relais_kit.embedded import free_port
from relais_kit.runtime import until_ready
from relais_notifications.adapters.kannel import dlr_secret
from relais_notifications.app import create_app as notifications_app
from relais_notifications.settings import NotificationsSettings
from relais_ops.adapters.referral_auth import ReferralAuth
from relais_ops.adapters.services_api import HttpOpsApi
from relais_ops.app import create_app as ops_app
from relais_ops.entrypoints.console.services import service_urls
from relais_ops.settings import OpsSettings
from tests.integration.test_notifications_service import answered_data, answered_event, produce
from tests.referral_app import referral_api
from tests.support import eventually
from tests.tokens_support import JWKS_URL, KEYS_FILE, bearer_for

DLR_SECRET = "a-secret-for-the-delivery-reports"
PHONE = "+33612345678"
JOURNEY = "/console/parcours"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
ADVISER = User("adv-agen-0142", "adviser", "agen-leon-blum-poste", "Camille Martin")
OPS = User("ops-messages-tests", "ops", None, "Équipe d'exploitation")


class Routes(httpx.AsyncBaseTransport):
    """http://referral and http://notifications in-process; anything else over the
    network (the sites service's address: a closed port)."""

    def __init__(self, referral: FastAPI, notifications: FastAPI) -> None:
        self.apps = {"referral": httpx.ASGITransport(app=referral),
                     "notifications": httpx.ASGITransport(app=notifications)}
        self.network = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self.apps.get(request.url.host, self.network).handle_async_request(request)


@dataclass
class Stack:
    notifications: httpx.AsyncClient
    console: httpx.AsyncClient
    db: asyncpg.Connection

    async def citizen_sms(self, referral_id: str, cause_event_id: str) -> asyncpg.Record | None:
        return await self.db.fetchrow(
            "SELECT id, status FROM notifications.deliveries WHERE referral_id = $1 AND cause_event_id = $2"
            " AND recipient = 'citizen'", uuid.UUID(referral_id), cause_event_id)

    async def report(self, delivery_id: uuid.UUID, dlr_type: int) -> None:
        """What Kannel's smsbox calls when the operator's SMSC reports on the SMS."""
        response = await self.notifications.get("/kannel/dlr", params={
            "id": str(delivery_id), "secret": dlr_secret(DLR_SECRET, delivery_id), "type": str(dlr_type)})
        assert response.status_code == 200, response.text


@asynccontextmanager
async def stack(database_url: str, bootstrap: str, tmp_path: Path) -> AsyncIterator[Stack]:
    closed = f"http://127.0.0.1:{free_port()}"
    notifications = notifications_app(NotificationsSettings(
        DATABASE_URL=database_url, KAFKA_BOOTSTRAP_SERVERS=bootstrap, RELAIS_TOKEN_JWKS_URL=JWKS_URL,
        RELAIS_SMTP_PORT=free_port(), RELAIS_SMTP_TIMEOUT_S=5, RELAIS_SMS_SPOOL=tmp_path / "sms",
        RELAIS_NOTIFICATIONS_MAX_ATTEMPTS=1000, RELAIS_NOTIFICATIONS_RETRY_BASE_S=30,
        RELAIS_NOTIFICATIONS_POLL_S=0.5))  # type: ignore[call-arg]
    notifications.state.kannel_dlr_secret = DLR_SECRET  # the spool sends; the reports come as Kannel's would
    settings = OpsSettings(RELAIS_ENV="test", DATABASE_URL=database_url, KAFKA_BOOTSTRAP_SERVERS=bootstrap,  # type: ignore[call-arg]
                           RELAIS_TOKEN_JWKS_URL=JWKS_URL, RELAIS_REFERRAL_URL="http://referral",
                           RELAIS_SITES_URL=closed, RELAIS_NOTIFICATIONS_URL="http://notifications",
                           RELAIS_LAG_INTERVAL_S=60)
    async with referral_api(database_url, bootstrap, RELAIS_TOKEN_KEYS_FILE=str(KEYS_FILE)) as referral, \
            notifications.router.lifespan_context(notifications):
        await until_ready(notifications)
        routes = Routes(referral.app, notifications)  # type: ignore[attr-defined]
        ops = ops_app(settings)
        ops.state.token_issuer = ReferralAuth(settings.referral_url, transport=routes)
        ops.state.ops_api = lambda token: HttpOpsApi(service_urls(settings), token, transport=routes)
        async with ops.router.lifespan_context(ops):
            await eventually(lambda: _ready(ops), what="the ops database")
            db = await asyncpg.connect(database_url)
            try:
                async with httpx.AsyncClient(transport=httpx.ASGITransport(app=notifications),
                                             base_url="http://notifications") as to_notifications, \
                        httpx.AsyncClient(transport=httpx.ASGITransport(app=ops),
                                          base_url="http://ops.test") as console:
                    yield Stack(to_notifications, console, db)
            finally:
                await db.close()


async def _ready(app: Any) -> bool:
    return app.state.pool is not None


async def sign_in(console: httpx.AsyncClient) -> None:
    sent_away = await console.get(JOURNEY)
    assert sent_away.status_code == 303, sent_away.text
    page = await console.get(sent_away.headers["location"])
    found = CSRF.search(page.text)
    assert found, "no CSRF token in the page"
    signed = await console.post("/console/connexion", data={"username": "demo-ops", "password": "demo",
                                                            "suite": JOURNEY, "csrf_token": found.group(1)})
    assert signed.status_code == 303, signed.text


def rows_of(page: str) -> dict[str, str]:
    """Each message's row of the page, by its state (text without tags)."""
    rows = re.findall(r'<tr data-delivery="[^"]+" data-state="([a-z]+)">(.*?)</tr>', page, re.S)
    return {state: " ".join(unescape(re.sub(r"<[^>]+>", " ", row)).split()) for state, row in rows}


async def test_the_journey_lists_each_message_received_or_failed_with_its_reason_never_a_number_or_a_text(
        database_url: str, kafka_bootstrap: str, tmp_path: Path) -> None:
    referral_id = str(uuid.uuid4())
    first = answered_data(channel="sms", referral_id=referral_id)
    second = answered_data(channel="sms", referral_id=referral_id, outcome="resolved")
    second["message_to_citizen"] = "Votre dossier de prime d'activité est complet, merci."
    second["message_to_adviser"] = "Dossier CAF-47-2025-000999 clos après vérification."
    async with stack(database_url, kafka_bootstrap, tmp_path) as s:
        events = [answered_event(first), answered_event(second)]
        await produce(kafka_bootstrap, *events)

        async def sent(event_id: str) -> asyncpg.Record | None:
            row = await s.citizen_sms(referral_id, event_id)
            return row if row is not None and row["status"] == "sent" else None

        received = await eventually(lambda: sent(events[0].id), timeout=45.0, what="the first SMS sent")
        lost = await eventually(lambda: sent(events[1].id), timeout=45.0, what="the second SMS sent")
        await s.report(received["id"], 8)  # the operator's SMSC took it
        await s.report(received["id"], 1)  # the telephone received it
        await s.report(lost["id"], 2)  # never reached the telephone

        # The list API: each delivery's report, its times, no next attempt once settled; no content.
        listed = await s.notifications.get("/api/v1/notifications", params={"referral_id": referral_id},
                                           headers=bearer_for(ADVISER))
        assert listed.status_code == 200, listed.text
        by_id = {d["id"]: d for d in listed.json()}
        assert len(by_id) == 4
        assert {"delivered_at", "report", "report_at", "next_attempt_at"} <= set(by_id[str(received["id"])])
        assert not {"address", "subject", "body"} & set(by_id[str(received["id"])])
        got, failed = by_id[str(received["id"])], by_id[str(lost["id"])]
        assert (got["status"], got["report"], got["next_attempt_at"]) == ("sent", "delivered", None)
        assert got["delivered_at"] == got["report_at"] and got["delivered_at"] is not None
        assert (failed["status"], failed["report"], failed["delivered_at"]) == ("failed", "failed", None)
        assert failed["reason"].startswith("le SMS n'est pas arrivé sur le téléphone")
        assert {d["message"] for d in listed.json() if d["recipient"] == "adviser"} == {
            first["message_to_adviser"], second["message_to_adviser"]}

        # Its ops view: the same facts, without the adviser's note; for ops only.
        ops_view = await s.notifications.get("/api/v1/ops/deliveries", params={"referral_id": referral_id},
                                             headers=bearer_for(OPS))
        assert ops_view.status_code == 200, ops_view.text
        assert len(ops_view.json()) == 4 and all("message" not in d for d in ops_view.json())
        assert [d["recipient"] for d in ops_view.json()][:2] in (["citizen", "adviser"], ["adviser", "citizen"])
        assert (await s.notifications.get("/api/v1/ops/deliveries", params={"referral_id": referral_id},
                                          headers=bearer_for(ADVISER))).status_code == 403
        assert (await s.notifications.get("/api/v1/ops/deliveries", params={"referral_id": "42"},
                                          headers=bearer_for(OPS))).status_code == 422
        audited = await s.db.fetchval("SELECT count(*) FROM notifications.audit WHERE user_id = $1"
                                      " AND action = 'list' AND referral_id = $2", OPS.user_id,
                                      uuid.UUID(referral_id))
        assert audited == 1

        # The console's journey page.
        await sign_in(s.console)
        page = await s.console.get(JOURNEY, params={"demande": referral_id})
        assert page.status_code == 200, page.text
        html = page.text
        assert "Messages à la personne et au conseiller" in html and 'aria-labelledby="messages-titre"' in html
        shown = rows_of(html)
        assert set(shown) == {"delivered", "failed", "sent"}, shown  # the adviser's screen: "sent"
        assert shown["delivered"].startswith("La personne SMS reçu par le téléphone — 1 envoyé le ")
        assert " reçu le " in shown["delivered"]
        assert shown["failed"].startswith("La personne SMS échec le SMS n'est pas arrivé sur le téléphone")
        assert " échec le " in shown["failed"]
        assert shown["sent"].startswith("Le conseiller écran du conseiller envoyé")
        assert html.count('data-state="sent"') == 2 and "4 messages" in html
        for secret in (PHONE, PHONE[3:], "0612345678", "06 12 34 56 78", "Mme Dupont",
                       first["message_to_citizen"], second["message_to_citizen"],
                       first["message_to_adviser"], second["message_to_adviser"], "CAF-47-2025"):
            assert secret not in html and secret not in unescape(html), secret
