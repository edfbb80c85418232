"""The notifications service against a real PostgreSQL, a real broker and a real SMTP
server (deploy/local/mailbox.py): `referral.answered` in, mail / SMS / letter and
the adviser's screen out, one `notification.*` per answer on `notifications`."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRecord
from aiokafka.structs import RecordMetadata, TopicPartition
from prometheus_client import REGISTRY

from deploy.local.mailbox import Mailbox
from relais_kit import kafka
from relais_kit.auth import REFERRAL_ISSUER, User, issue_token
from relais_kit.contract import Contract, load_contract
from relais_kit.embedded import free_port
from relais_kit.envelope import CloudEvent, event_type, to_record
from relais_kit.runtime import until_ready
from relais_kit.settings import REPO_ROOT
from relais_kit.tokenkeys import TokenKeySet, new_key
from relais_kit.tokens import FixedKeys, TokenSigner
from relais_notifications.adapters.sms import SpoolSmsGateway
from relais_notifications.app import create_app
from relais_notifications.domain.model import delivery_id
from tests.support import eventually
from tests.tokens_support import JWKS_URL, token_for

GROUP = "relais-notifications"
SENT = event_type("notification.sent")
FAILED = event_type("notification.failed")
T = TypeVar("T")

contract: Contract = load_contract(REPO_ROOT / "schemas")


# --- helpers -------------------------------------------------------------------------------

def answered_data(*, channel: str = "email", outcome: str = "appointment_offered",
                  referral_id: str | None = None, adviser_id: str = "adv-agen-0142") -> dict[str, Any]:
    recipient: dict[str, Any] = {"display_name": "Mme Dupont", "channel": channel}
    if channel == "email":
        recipient["email"] = f"citoyen-{uuid.uuid4().hex[:10]}@example.fr"
    elif channel == "sms":
        recipient["phone"] = "+33612345678"
    elif channel == "letter":
        recipient["postal_address"] = {"street": "12 avenue de la Libération", "postcode": "33127",
                                       "city": "Martignas-sur-Jalle"}
    data: dict[str, Any] = {
        "referral_id": referral_id or str(uuid.uuid4()), "visit_id": str(uuid.uuid4()),
        "operator": "caf", "procedure": "caf.prime-activite", "site_id": "agen-leon-blum-poste",
        "adviser_id": adviser_id, "status": "answered", "occurred_at": "2025-03-18T16:10:00+01:00",
        "outcome": outcome,
        "message_to_citizen": "Un conseiller de la CAF vous recevra pour revoir votre prime d'activité.",
        "message_to_adviser": "RDV fixé à l'accueil CAF d'Agen, dossier CAF-47-2025-000813.",
        "recipient": recipient,
    }
    if outcome == "appointment_offered":
        data["appointment"] = {"at": "2025-03-25T10:30:00+01:00",
                               "place": "CAF de Lot-et-Garonne, 1 rue Lafayette, 47000 Agen"}
    return data


def answered_event(data: dict[str, Any]) -> CloudEvent:
    return contract.event("referral.answered", source="/relais/referral", subject=data["referral_id"],
                          data=data)


async def produce(bootstrap: str, *events: CloudEvent, topic: str = "referrals") -> list[RecordMetadata]:
    producer = kafka.producer(bootstrap)
    await producer.start()
    try:
        sent = []
        for event in events:
            key, value, headers = to_record(event)
            sent.append(await producer.send_and_wait(topic, value=value, key=key, headers=headers))
        return sent
    finally:
        await producer.stop()


Counts = dict[tuple[str, str], float]


def deliveries_counted() -> Counts:
    """`relais_notification_deliveries_total` by (channel, outcome), as /metrics shows it."""
    return {(channel, outcome): REGISTRY.get_sample_value(
                "relais_notification_deliveries_total", {"channel": channel, "outcome": outcome}) or 0.0
            for channel in ("email", "sms", "letter", "adviser_screen") for outcome in ("sent", "failed")}


async def counted_since(before: Counts, wanted: Counts) -> bool:
    """Have exactly the `wanted` deliveries been counted since `before` (the others not)?"""
    now = deliveries_counted()
    return {k: now[k] - before[k] for k in now if now[k] != before[k]} == wanted


def header_map(record: ConsumerRecord) -> dict[str, str]:
    return {k: v.decode() for k, v in record.headers}


async def read_topic(bootstrap: str, topic: str, done: Callable[[list[ConsumerRecord]], bool],
                     within_s: float = 45.0) -> list[ConsumerRecord]:
    """Reads `topic` from the start with a fresh group until `done(records)` holds and
    everything present when it started has been read."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=f"test-{uuid.uuid4().hex}",
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                isolation_level="read_committed")
    await consumer.start()
    records: list[ConsumerRecord] = []
    deadline = time.monotonic() + within_s
    try:
        ends: dict[TopicPartition, int] | None = None
        while True:
            for batch in (await consumer.getmany(timeout_ms=200)).values():
                records.extend(batch)
            assigned = consumer.assignment()
            if assigned and ends is None:
                ends = await consumer.end_offsets(list(assigned))
            caught_up = ends is not None and await _caught_up(consumer, ends)
            if caught_up and done(records):
                return records
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out reading {topic}: {len(records)} record(s) seen")
    finally:
        await consumer.stop()


async def _caught_up(consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> bool:
    for tp, end in ends.items():
        if await consumer.position(tp) < end:
            return False
    return True


async def consumed_past(bootstrap: str, *sent: RecordMetadata) -> bool:
    """Has the service's group committed offsets beyond every record in `sent`? (Asked
    by a consumer of that group that never subscribes, so never joins it.)"""
    probe = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=GROUP, enable_auto_commit=False)
    await probe.start()
    try:
        for meta in sent:
            committed = await probe.committed(TopicPartition(meta.topic, meta.partition))
            if committed is None or committed <= meta.offset:
                return False
        return True
    finally:
        await probe.stop()


@dataclass
class Service:
    client: httpx.AsyncClient
    db: asyncpg.Connection
    bootstrap: str
    mailbox: Mailbox | None
    sms: SpoolSmsGateway

    async def deliveries(self, referral_id: str) -> list[asyncpg.Record]:
        return await self.db.fetch(
            "SELECT * FROM notifications.deliveries WHERE referral_id = $1 ORDER BY recipient DESC",
            uuid.UUID(referral_id))

    async def all_published(self) -> bool:
        return not await self.db.fetchval(
            "SELECT count(*) FROM notifications.outbox WHERE published_at IS NULL")

    async def outbox_rows(self, referral_id: str) -> list[asyncpg.Record]:
        return await self.db.fetch("SELECT * FROM notifications.outbox WHERE record_key = $1", referral_id)

    def mails_to(self, address: str) -> list[EmailMessage]:
        assert self.mailbox is not None
        return [m for m in self.mailbox.messages() if address in str(m["To"])]


@asynccontextmanager
async def running_service(monkeypatch: pytest.MonkeyPatch, database_url: str, kafka_bootstrap: str,
                          tmp_path: Path, *, smtp_up: bool = True,
                          max_attempts: int = 5) -> AsyncIterator[Service]:
    smtp_port = free_port()  # with no mailbox on it, a closed port: the SMTP server is down
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    monkeypatch.setenv("RELAIS_TOKEN_JWKS_URL", JWKS_URL)
    monkeypatch.setenv("RELAIS_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("RELAIS_SMTP_PORT", str(smtp_port))
    monkeypatch.setenv("RELAIS_SMTP_TIMEOUT_S", "5")
    monkeypatch.setenv("RELAIS_SMS_SPOOL", str(tmp_path / "sms"))
    monkeypatch.setenv("RELAIS_NOTIFICATIONS_MAX_ATTEMPTS", str(max_attempts))
    monkeypatch.setenv("RELAIS_NOTIFICATIONS_RETRY_BASE_S", "0.05")
    monkeypatch.setenv("RELAIS_NOTIFICATIONS_POLL_S", "0.5")
    mailbox = Mailbox(tmp_path / "mail", port=smtp_port).start() if smtp_up else None
    app = create_app()
    try:
        async with app.router.lifespan_context(app):
            await until_ready(app)
            db = await asyncpg.connect(database_url)
            transport = httpx.ASGITransport(app=app)
            try:
                async with httpx.AsyncClient(transport=transport, base_url="http://notifications") as client:
                    yield Service(client, db, kafka_bootstrap, mailbox, SpoolSmsGateway(tmp_path / "sms"))
            finally:
                await db.close()
    finally:
        if mailbox is not None:
            mailbox.stop()


def bearer(role: str = "adviser") -> dict[str, str]:
    token = token_for(User("adv-agen-0142", role, "agen-leon-blum-poste", "Camille Martin"))
    return {"Authorization": f"Bearer {token}"}


# --- tests ---------------------------------------------------------------------------------

async def test_email_sent_once_announced_once_and_listed(
        monkeypatch: pytest.MonkeyPatch, database_url: str, kafka_bootstrap: str, tmp_path: Path) -> None:
    async with running_service(monkeypatch, database_url, kafka_bootstrap, tmp_path) as svc:
        data = answered_data(channel="email", adviser_id=f"adv-{uuid.uuid4().hex[:8]}")
        referral_id, address = data["referral_id"], data["recipient"]["email"]
        event = answered_event(data)
        routed = contract.event("referral.routed", source="/relais/referral", subject=referral_id, data={
            **{k: data[k] for k in ("referral_id", "visit_id", "operator", "procedure", "site_id",
                                    "adviser_id", "occurred_at")},
            "status": "routed", "due_at": "2025-04-01T18:00:00+02:00", "inbox_topic": "operator.caf.inbox"})
        # The same event twice (a redelivery), and a lifecycle event the service ignores.
        counted = deliveries_counted()
        sent = await produce(svc.bootstrap, routed, event, event)

        mails = await eventually(lambda: _async(svc.mails_to(address)), timeout=45.0, what="the citizen's mail")
        await eventually(lambda: consumed_past(svc.bootstrap, *sent), timeout=45.0, what="the duplicate to be consumed")
        await eventually(svc.all_published, timeout=45.0, what="the outbox to be published")
        # Counted once each, the redelivery included.
        email_and_screen = {("email", "sent"): 1.0, ("adviser_screen", "sent"): 1.0}
        await eventually(lambda: counted_since(counted, email_and_screen), what="the deliveries counted")

        # Exactly one mail, in French, with a Message-ID derived from the delivery id.
        mails = svc.mails_to(address)
        assert len(mails) == 1
        mail = mails[0]
        citizen_id = delivery_id(event.id, "citizen")
        assert mail["Message-ID"] == f"<{citizen_id}@france-services.example>"
        assert mail["Subject"] == "La CAF vous propose un rendez-vous"
        assert "ne-pas-repondre@france-services.example" in mail["From"]
        body = " ".join(mail.get_content().split())
        assert body.startswith("Bonjour Mme Dupont,")
        assert "Quand : le mardi 25 mars 2025 à 10 h 30" in body
        assert "Où : CAF de Lot-et-Garonne, 1 rue Lafayette, 47000 Agen" in body
        assert "Un conseiller de la CAF vous recevra pour revoir votre prime d'activité." in body
        assert "votre conseiller France Services" in body

        rows = await svc.deliveries(referral_id)
        assert [(r["recipient"], r["channel"], r["status"], r["attempts"]) for r in rows] == [
            ("citizen", "email", "sent", 1), ("adviser", "adviser_screen", "sent", 0)]
        # Content sealed at rest (the API below opens the adviser's message).
        assert all(r["body"].startswith("rv1:") for r in rows)
        assert rows[0]["address"].startswith("rv1:") and address not in rows[0]["address"]

        # Exactly one notification.sent for this referral, the CloudEvents way.
        records = await read_topic(svc.bootstrap, "notifications",
                                   lambda rs: any(r.key == referral_id.encode() for r in rs))
        mine = [r for r in records if r.key == referral_id.encode()]
        assert len(mine) == 1
        record = mine[0]
        h = header_map(record)
        assert h["ce_specversion"] == "1.0"
        assert h["ce_type"] == SENT
        assert h["ce_source"] == "/relais/notifications"
        assert h["ce_subject"] == referral_id
        assert h["ce_partitionkey"] == referral_id
        assert h["ce_dataschema"] == contract.schema_id(SENT)
        assert h["content-type"] == "application/json"
        assert h["ce_time"]
        payload = json.loads(record.value)
        contract.check(SENT, payload)
        assert payload["notification_id"] == str(citizen_id)
        assert payload["cause_event_id"] == event.id
        assert (payload["recipient"], payload["channel"]) == ("citizen", "email")
        assert address not in record.value.decode()

        # The routed event gave nothing.
        assert len(await svc.outbox_rows(referral_id)) == 1

        # The API lists both deliveries, never the citizen's address.
        response = await svc.client.get("/api/v1/notifications", params={"referral_id": referral_id},
                                        headers=bearer())
        assert response.status_code == 200, response.text
        listed = response.json()
        assert [(d["recipient"], d["channel"], d["status"]) for d in listed] == [
            ("adviser", "adviser_screen", "sent"), ("citizen", "email", "sent")]
        assert set(listed[1]) >= {"id", "referral_id", "recipient", "channel", "status", "created_at",
                                  "sent_at", "attempts", "reason"}
        assert listed[1]["id"] == str(citizen_id) and listed[1]["attempts"] == 1
        assert listed[0]["message"] == data["message_to_adviser"] and listed[1]["message"] is None
        assert address not in response.text and "Dupont" not in response.text

        by_adviser = await svc.client.get("/api/v1/notifications", params={"adviser_id": data["adviser_id"]},
                                          headers=bearer())
        assert {d["referral_id"] for d in by_adviser.json()} == {referral_id}
        assert len(by_adviser.json()) == 2

        assert (await svc.client.get("/api/v1/notifications",
                                     params={"referral_id": referral_id})).status_code == 401
        stranger = TokenSigner(FixedKeys(TokenKeySet.of(new_key())), REFERRAL_ISSUER)
        bad_token = {"Authorization": "Bearer " + issue_token(User("x", "adviser", None, "x"), stranger)}
        assert (await svc.client.get("/api/v1/notifications", params={"referral_id": referral_id},
                                     headers=bad_token)).status_code == 401
        not_uuid = await svc.client.get("/api/v1/notifications", params={"referral_id": "42"},
                                        headers=bearer())
        assert not_uuid.status_code == 422
        assert not_uuid.json()["errors"][0]["field"] == "referral_id"
        neither = await svc.client.get("/api/v1/notifications", headers=bearer())
        assert neither.status_code == 422 and "referral_id" in neither.json()["detail"]

        health = await svc.client.get("/healthz")
        assert health.status_code == 200, health.text
        assert health.json()["loops"]["deliveries"] == "running"
        assert await counted_since(counted, email_and_screen)


async def test_sms_letter_and_none(
        monkeypatch: pytest.MonkeyPatch, database_url: str, kafka_bootstrap: str, tmp_path: Path) -> None:
    async with running_service(monkeypatch, database_url, kafka_bootstrap, tmp_path) as svc:
        by_sms = answered_event(answered_data(channel="sms"))
        by_letter = answered_event(answered_data(channel="letter", outcome="resolved"))
        no_channel = answered_event(answered_data(channel="none"))
        counted = deliveries_counted()
        sent = await produce(svc.bootstrap, by_sms, by_letter, no_channel)
        await eventually(lambda: consumed_past(svc.bootstrap, *sent), timeout=45.0,
                         what="the three answers to be consumed")

        # SMS: one line in the spool, short, with the appointment.
        sms_id = str(delivery_id(by_sms.id, "citizen"))
        spooled = await eventually(lambda: _async([s for s in svc.sms.read() if s["id"] == sms_id]),
                                   timeout=45.0, what="the SMS in the spool")
        assert len(spooled) == 1
        assert spooled[0]["to"] == "+33612345678"
        assert len(spooled[0]["text"]) <= 160
        assert "rendez-vous le mardi 25/03 à 10h30" in spooled[0]["text"]

        # Letter: stored, sent, printable through the API.
        letter_rows = await svc.deliveries(by_letter.subject)
        assert [(r["recipient"], r["channel"], r["status"]) for r in letter_rows] == [
            ("citizen", "letter", "sent"), ("adviser", "adviser_screen", "sent")]
        letter = await svc.client.get(f"/api/v1/notifications/{letter_rows[0]['id']}/letter",
                                      headers=bearer())
        assert letter.status_code == 200
        assert letter.headers["content-type"].startswith("text/plain")
        assert "33127 Martignas-sur-Jalle" in letter.text
        assert "Bonne nouvelle : la CAF a répondu à votre demande." in " ".join(letter.text.split())
        not_a_letter = await svc.client.get(f"/api/v1/notifications/{letter_rows[1]['id']}/letter",
                                            headers=bearer())
        assert not_a_letter.status_code == 404

        # None: the adviser only, nothing for the citizen, nothing announced.
        none_rows = await svc.deliveries(no_channel.subject)
        assert [(r["recipient"], r["channel"]) for r in none_rows] == [("adviser", "adviser_screen")]

        await eventually(lambda: _sms_settled(svc, by_sms.subject), timeout=45.0, what="the SMS delivery to be marked")
        await eventually(svc.all_published, timeout=45.0, what="the outbox to be published")
        keys = {by_sms.subject, by_letter.subject, no_channel.subject}
        records = await read_topic(svc.bootstrap, "notifications",
                                   lambda rs: sum(r.key.decode() in keys for r in rs) >= 2)
        mine = {r.key.decode(): r for r in records if r.key.decode() in keys}
        assert set(mine) == {by_sms.subject, by_letter.subject}
        for key, channel in ((by_sms.subject, "sms"), (by_letter.subject, "letter")):
            assert header_map(mine[key])["ce_type"] == SENT
            payload = json.loads(mine[key].value)
            contract.check(SENT, payload)
            assert payload["channel"] == channel
        assert svc.mailbox is not None and svc.mailbox.messages() == []
        # Nothing counted for the citizen who chose no channel: no delivery was made.
        three = {("sms", "sent"): 1.0, ("letter", "sent"): 1.0, ("adviser_screen", "sent"): 3.0}
        await eventually(lambda: counted_since(counted, three), what="the deliveries counted")


async def test_smtp_down_retries_then_fails(
        monkeypatch: pytest.MonkeyPatch, database_url: str, kafka_bootstrap: str, tmp_path: Path) -> None:
    async with running_service(monkeypatch, database_url, kafka_bootstrap, tmp_path,
                               smtp_up=False, max_attempts=3) as svc:
        event = answered_event(answered_data(channel="email", outcome="resolved"))
        referral_id = event.subject
        counted = deliveries_counted()
        await produce(svc.bootstrap, event)

        async def failed() -> asyncpg.Record | None:
            rows = await svc.deliveries(referral_id)
            return rows[0] if rows and rows[0]["status"] == "failed" else None

        row = await eventually(failed, timeout=45.0, what="the delivery to fail")
        assert row["attempts"] == 3
        assert "serveur de messagerie injoignable" in row["reason"]
        assert row["sent_at"] is None and row["failed_at"] is not None

        records = await read_topic(svc.bootstrap, "notifications",
                                   lambda rs: any(r.key == referral_id.encode() for r in rs))
        mine = [r for r in records if r.key == referral_id.encode()]
        assert len(mine) == 1
        assert header_map(mine[0])["ce_type"] == FAILED
        payload = json.loads(mine[0].value)
        contract.check(FAILED, payload)
        assert payload["reason"] == row["reason"]
        assert payload["cause_event_id"] == event.id
        assert (payload["recipient"], payload["channel"]) == ("citizen", "email")
        # Counted once, failed: the two attempts retried are not deliveries.
        failed_once = {("email", "failed"): 1.0, ("adviser_screen", "sent"): 1.0}
        await eventually(lambda: counted_since(counted, failed_once), what="the deliveries counted")


async def test_a_line_break_in_the_name_loses_no_notification(
        monkeypatch: pytest.MonkeyPatch, database_url: str, kafka_bootstrap: str, tmp_path: Path) -> None:
    # The probe: "Mme\nDupont" made the handler fail three times, and the event with
    # the citizen's and the adviser's notifications went to the dead-letter topic.
    async with running_service(monkeypatch, database_url, kafka_bootstrap, tmp_path) as svc:
        data = answered_data(channel="email", outcome="resolved")
        data["recipient"]["display_name"] = "Mme\nDupont"
        referral_id, address = data["referral_id"], data["recipient"]["email"]
        event = answered_event(data)
        sent = await produce(svc.bootstrap, event)
        await eventually(lambda: _async(svc.mails_to(address)), timeout=45.0, what="the citizen's mail")
        await eventually(lambda: consumed_past(svc.bootstrap, *sent), timeout=45.0, what="the answer to be consumed")

        mails = svc.mails_to(address)
        assert len(mails) == 1
        assert str(mails[0]["To"]) == f"Mme Dupont <{address}>"
        assert " ".join(mails[0].get_content().split()).startswith("Bonjour Mme Dupont,")
        rows = await svc.deliveries(referral_id)
        assert [(r["recipient"], r["status"]) for r in rows] == [("citizen", "sent"), ("adviser", "sent")]
        dead = await read_topic(svc.bootstrap, "referrals.dlq", lambda rs: True)
        assert [r for r in dead if header_map(r).get("ce_id") == event.id] == []


async def test_schema_invalid_answer_goes_to_the_dead_letter_topic(
        monkeypatch: pytest.MonkeyPatch, database_url: str, kafka_bootstrap: str, tmp_path: Path) -> None:
    async with running_service(monkeypatch, database_url, kafka_bootstrap, tmp_path) as svc:
        data = answered_data()
        del data["recipient"]
        invalid = CloudEvent(type=event_type("referral.answered"), source="/relais/referral",
                             subject=data["referral_id"], data=data)
        await produce(svc.bootstrap, invalid)
        records = await read_topic(svc.bootstrap, "referrals.dlq",
                                   lambda rs: any(header_map(r).get("ce_id") == invalid.id for r in rs))
        dead = next(r for r in records if header_map(r).get("ce_id") == invalid.id)
        h = header_map(dead)
        assert h["dlq_error"] == "schema_violation"
        assert "recipient" in h["dlq_reason"]
        assert h["dlq_consumer"] == GROUP and h["dlq_topic"] == "referrals"
        assert json.loads(dead.value) == data
        assert await svc.deliveries(data["referral_id"]) == []


async def _async(value: T) -> T:
    return value


async def _sms_settled(svc: Service, referral_id: str) -> bool:
    rows = await svc.deliveries(referral_id)
    return bool(rows) and rows[0]["status"] == "sent"
