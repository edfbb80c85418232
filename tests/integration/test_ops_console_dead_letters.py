"""The ops console's dead letters, journey and parked rows, for real: the ops service
in-process on the real broker and PostgreSQL, signed in through the referral service
(in-process too, its real token API and ops API). A dead letter put on
`operator.caf.outbox.dlq` is listed, shown with its personal data masked, unmasked
only for a reason (audited first), and replayed — after a confirmation, for a reason,
audited — onto its source topic only; a forged one is refused. One referral's journey
shows what the referral service published, and names the services that did not answer;
a parked outbox row is retried from the console, audited on both sides."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from html import escape
from typing import Any

import asyncpg
import httpx
from aiokafka import AIOKafkaProducer

from relais_kit import outbox
from relais_kit.contract import load_contract
from relais_kit.embedded import free_port
from relais_kit.settings import REPO_ROOT
from relais_ops.adapters.referral_auth import ReferralAuth
from relais_ops.adapters.services_api import HttpOpsApi
from relais_ops.app import create_app
from relais_ops.entrypoints.console.services import service_urls
from relais_ops.settings import OpsSettings
from tests.referral_app import refer, referral_api
from tests.support import TopicReader, eventually, headers
from tests.tokens_support import JWKS_URL, KEYS_FILE

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
CONTRACT = load_contract(REPO_ROOT / "schemas")
ANSWERED = "fr.franceservices.operator.answered.v1"
SOURCE, DLQ = "operator.caf.outbox", "operator.caf.outbox.dlq"
LIST = "/console/lettres-mortes"


class Routes(httpx.AsyncBaseTransport):
    """The referral service in-process at http://referral; anything else over the
    network (the other services' addresses here: closed ports)."""

    def __init__(self, referral: Any) -> None:
        self.referral = httpx.ASGITransport(app=referral)
        self.network = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        transport = self.referral if request.url.host == "referral" else self.network
        return await transport.handle_async_request(request)


@asynccontextmanager
async def console(database_url: str, bootstrap: str, referral: Any) -> AsyncIterator[httpx.AsyncClient]:
    closed = f"http://127.0.0.1:{free_port()}"
    settings = OpsSettings(RELAIS_ENV="test", DATABASE_URL=database_url, KAFKA_BOOTSTRAP_SERVERS=bootstrap,  # type: ignore[call-arg]
                           RELAIS_TOKEN_JWKS_URL=JWKS_URL, RELAIS_REFERRAL_URL="http://referral",
                           RELAIS_SITES_URL=closed, RELAIS_NOTIFICATIONS_URL=closed, RELAIS_LAG_INTERVAL_S=60,
                           RELAIS_TRACE_URL="https://traces.example/trace/{trace_id}")
    app = create_app(settings)
    routes = Routes(referral)
    app.state.token_issuer = ReferralAuth(settings.referral_url, transport=routes)
    app.state.ops_api = lambda token: HttpOpsApi(service_urls(settings), token, transport=routes)
    async with app.router.lifespan_context(app):
        await eventually(lambda: _ready(app), what="the ops database")
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ops.test") as client:
            yield client


async def _ready(app: Any) -> bool:
    return app.state.pool is not None


def csrf_of(page: httpx.Response) -> str:
    found = CSRF.search(page.text)
    assert found, "no CSRF token in the page"
    return found.group(1)


async def sign_in(client: httpx.AsyncClient) -> str:
    sent_away = await client.get(LIST)
    assert sent_away.status_code == 303 and sent_away.headers["location"].startswith("/console/connexion")
    page = await client.get(sent_away.headers["location"])
    signed = await client.post("/console/connexion", data={"username": "demo-ops", "password": "demo",
                                                           "suite": LIST, "csrf_token": csrf_of(page)})
    assert signed.status_code == 303 and signed.headers["location"] == LIST, signed.text
    return csrf_of(await client.get("/console"))


async def put_dead_letter(bootstrap: str, value: bytes, *, claimed_topic: str = SOURCE,
                          error: str = "schema_violation") -> tuple[str, str]:
    """A dead letter as the kit's consumer writes it; (its id, its ce_id)."""
    event_id = f"caf-answer-{uuid.uuid4().hex[:8]}"
    original = [("ce_specversion", b"1.0"), ("ce_id", event_id.encode()), ("ce_type", ANSWERED.encode()),
                ("ce_source", b"/operators/caf"), ("content-type", b"application/json")]
    dlq_headers = [("dlq_error", error.encode()), ("dlq_reason", b"data.message_to_citizen is too long"),
                   ("dlq_topic", claimed_topic.encode()), ("dlq_partition", b"1"), ("dlq_offset", b"7"),
                   ("dlq_consumer", b"referral-operator-replies"), ("dlq_time", b"2026-11-20T10:00:00+00:00")]
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        meta = await producer.send_and_wait(DLQ, value=value, key=b"ref-console-1",
                                            headers=[*original, *dlq_headers])
    finally:
        await producer.stop()
    return f"{DLQ}:{meta.partition}:{meta.offset}", event_id


async def audit_rows(database_url: str, action: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(database_url)
    try:
        return await conn.fetch("SELECT user_id, target, reason, details::text AS details FROM ops.ops_audit"
                                " WHERE action = $1 ORDER BY id", action)
    finally:
        await conn.close()


async def test_dead_letters_masked_unmasked_for_a_reason_and_replayed_onto_their_source_only(
        database_url: str, kafka_bootstrap: str) -> None:
    referral_id = str(uuid.uuid4())
    value = json.dumps({"referral_id": referral_id, "outcome": "resolved",
                        "message_to_citizen": "Bonjour Jeanne Martin, née le 03/02/1980"}).encode()
    letter_id, event_id = await put_dead_letter(kafka_bootstrap, value)
    forged_id, _ = await put_dead_letter(kafka_bootstrap, value, claimed_topic="operator.cnav.inbox",
                                         error="forged_test")
    async with referral_api(database_url, kafka_bootstrap, RELAIS_TOKEN_KEYS_FILE=str(KEYS_FILE)) as referral, \
            console(database_url, kafka_bootstrap, referral.app) as client:  # type: ignore[attr-defined]
        csrf = await sign_in(client)

        listed = await client.get(LIST, params={"sujet": DLQ, "erreur": "schema_violation"})
        assert listed.status_code == 200, listed.text
        assert letter_id in listed.text and forged_id not in listed.text
        assert "data.message_to_citizen is too long" in listed.text and "Jeanne" not in listed.text
        assert f"{SOURCE}:1:7" in listed.text
        assert forged_id in (await client.get(LIST, params={"erreur": "forged_test"})).text
        assert (await client.get(LIST, params={"sujet": "referrals"})).status_code == 422

        shown = await client.get(f"{LIST}/{letter_id}")
        assert shown.status_code == 200
        for expected in (referral_id, event_id, "•••", "referral-operator-replies", "ref-console-1"):
            assert escape(expected) in shown.text, expected
        assert "Jeanne" not in shown.text and "1980" not in shown.text, "personal data masked by default"
        assert (await client.get(f"{LIST}/{DLQ}:0:999999")).status_code == 404
        assert (await client.get(f"{LIST}/nothing:here")).status_code == 400

        unmask = f"{LIST}/{letter_id}/afficher"
        assert (await client.post(unmask, data={"motif": "INC-1", "csrf_token": "forged"})).status_code == 403
        no_reason = await client.post(unmask, data={"motif": "  ", "csrf_token": csrf})
        assert no_reason.status_code == 422 and "Jeanne" not in no_reason.text
        assert await audit_rows(database_url, "dead_letter_unmasked") == []
        unmasked = await client.post(unmask, data={"motif": "INC-42 réponse illisible", "csrf_token": csrf})
        assert unmasked.status_code == 200 and "Bonjour Jeanne Martin" in unmasked.text
        [row] = await audit_rows(database_url, "dead_letter_unmasked")
        user = row["user_id"]
        assert [r["user_id"] for r in await audit_rows(database_url, "sign_in")] == [user]
        assert (row["target"], row["reason"]) == (letter_id, "INC-42 réponse illisible")

        replay = f"{LIST}/rejouer"
        async with TopicReader(kafka_bootstrap, SOURCE) as source:
            refused = await client.post(replay, data={"id": [letter_id, forged_id], "csrf_token": csrf})
            assert refused.status_code == 409 and "operator.cnav.inbox" in refused.text
            forced = await client.post(replay, data={"id": [letter_id, forged_id], "confirmer": "1",
                                                     "motif": "anyway", "csrf_token": csrf})
            assert forced.status_code == 409, "a forged dead letter is never replayed, even confirmed"

            confirm = await client.post(replay, data={"id": letter_id, "csrf_token": csrf})
            assert confirm.status_code == 200 and f"<code>{SOURCE}</code>" in confirm.text
            assert 'name="confirmer" value="1"' in confirm.text
            no_reason = await client.post(replay, data={"id": letter_id, "confirmer": "1", "csrf_token": csrf})
            assert no_reason.status_code == 422
            assert await audit_rows(database_url, "dead_letters_replayed") == []

            done = await client.post(replay, data={"id": letter_id, "confirmer": "1", "motif": "schéma corrigé",
                                                   "csrf_token": csrf})
            assert done.status_code == 200 and f"{SOURCE}:" in done.text, done.text
            records = await source.until(
                lambda rs: any(headers(r).get("ce_id") == event_id for r in rs), what="the replayed record")
        [replayed] = [r for r in records if headers(r).get("ce_id") == event_id]
        assert (replayed.key, replayed.value) == (b"ref-console-1", value)
        assert headers(replayed)["dlq_replayed_from"] == letter_id
        assert not [k for k in headers(replayed) if k.startswith("dlq_") and not k.startswith("dlq_replayed_")]
        [row] = await audit_rows(database_url, "dead_letters_replayed")
        assert (row["user_id"], row["target"], row["reason"]) == (user, letter_id, "schéma corrigé")
        assert json.loads(row["details"]) == {"dead_letters": [letter_id], "to_topics": [SOURCE]}
        assert all(forged_id not in r["details"] for r in await audit_rows(database_url, "dead_letters_replayed"))

        # One referral's journey: what the referral service published, the silent services named.
        journey_of = await refer(referral)

        async def journey_shown() -> httpx.Response | None:
            page = await client.get("/console/parcours", params={"demande": journey_of})
            return page if page.status_code == 200 and "referrals:" in page.text else None

        journey = await eventually(journey_shown, what="the referral's events in its journey")
        assert "referral.requested v1" in journey.text
        assert journey.text.count("n'a pas répondu") == 2, "sites and notifications are not running here"
        assert "Les messages de cette demande ne sont pas connus : le service Notifications" in journey.text
        assert (await client.get("/console/parcours", params={"demande": "not-an-id"})).status_code == 422

        # A parked outbox row of the referral service, retried from the console.
        runtime = referral.app.state.runtime  # type: ignore[attr-defined]
        site_id = f"site-parked-{uuid.uuid4().hex[:8]}"
        event = CONTRACT.event("site.retired", source="/relais/referral", subject=site_id,
                               data={"site_id": site_id, "retired_at": "2026-11-20T10:00:00+01:00"})
        async with runtime.pool.acquire() as conn, conn.transaction():
            await outbox.record(conn, "sites", event, runtime.vault)
            row_id = await conn.fetchval("UPDATE outbox SET parked_at = now(), park_reason = 'RecordTooLargeError:"
                                         " test' WHERE event_id = $1 RETURNING id", event.id)
        parked = await client.get("/console/en-attente")
        assert parked.status_code == 200 and "RecordTooLargeError: test" in parked.text
        action = f"/console/en-attente/referral/{row_id}/relancer"
        assert f'href="{action}"' in parked.text
        assert (await client.get(action)).status_code == 200
        assert (await client.post(action, data={"motif": "", "csrf_token": csrf})).status_code == 422
        retried = await client.post(action, data={"motif": "limite relevée", "csrf_token": csrf})
        assert retried.status_code == 303 and retried.headers["location"] == "/console/en-attente?fait=relancer"
        [row] = await audit_rows(database_url, "outbox_row_retried")
        assert (row["target"], row["reason"]) == (f"referral:{row_id}", "limite relevée")
        kept = await runtime.pool.fetch("SELECT action, requested_by FROM outbox_actions WHERE outbox_id = $1", row_id)
        assert [tuple(k) for k in kept] == [("retry", user)]
        again = await client.post(action, data={"motif": "twice", "csrf_token": csrf})
        assert again.status_code == 404
