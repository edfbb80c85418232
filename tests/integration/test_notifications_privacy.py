"""The notifications service and personal data, on a real PostgreSQL and the real broker:
who may read which delivery (the platform's scope rule over the service's view of the
sites registry), the audit of every read, content sealed at rest, its erasure when the
retention period ends, and the citizen's rights of erasure and access asked through
the `privacy` topic. One service for the module; each test uses referrals and users of
its own. The SMTP server is down throughout: e-mails stay pending (retried)."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer, ConsumerRecord
from aiokafka.structs import TopicPartition
from fastapi import FastAPI
from joserfc.jwk import ECKey
from prometheus_client import REGISTRY

from relais_kit import retention, sealing
from relais_kit.auth import User
from relais_kit.contract import load_contract
from relais_kit.embedded import free_port
from relais_kit.envelope import event_type, now
from relais_kit.runtime import Runtime, until_ready
from relais_kit.settings import REPO_ROOT
from relais_notifications.app import create_app
from relais_notifications.domain.privacy import answer_event_id
from relais_notifications.settings import NotificationsSettings
from tests.support import dump_schema, eventually, headers, of_type, produce
from tests.tokens_support import JWKS_URL, bearer_for

pytestmark = pytest.mark.asyncio(loop_scope="module")

CONTRACT = load_contract(REPO_ROOT / "schemas")
AGEN, AGEN_BUS, MERIGNAC, MARTIGNAS = ("agen-leon-blum-poste", "agen-bus-albret", "merignac-centre",
                                       "martignas-sur-jalle-poste")


def site(site_id: str, department: str, parent: str | None = None, *,
         updated_at: str = "2026-01-05T09:00:00+01:00") -> dict[str, Any]:
    data: dict[str, Any] = {
        "site_id": site_id, "name": f"France Services {site_id}", "kind": "bus" if parent else "fixed",
        "address": {"postcode": f"{department}000", "city": "Ville"}, "department": department,
        "operators": ["caf"], "schedule": [], "updated_at": updated_at}
    if parent:
        data["parent_site_id"] = parent
    return data


SITES = [site(AGEN, "47"), site(AGEN_BUS, "47", AGEN), site(MERIGNAC, "33"), site(MARTIGNAS, "33", MERIGNAC)]


def answered(site_id: str, channel: str, *, adviser_id: str | None = None, name: str = "Mme Dupont",
             email: str | None = None, phone: str = "+33612345678", street: str = "12 avenue de la Libération",
             to_citizen: str = "Votre prime d'activité a été recalculée.",
             to_adviser: str = "Dossier CAF-47-2025-000813 régularisé.") -> dict[str, Any]:
    recipient: dict[str, Any] = {"display_name": name, "channel": channel}
    if channel == "email":
        recipient["email"] = email or f"citoyen-{uuid.uuid4().hex[:10]}@example.fr"
    elif channel == "sms":
        recipient["phone"] = phone
    elif channel == "letter":
        recipient["postal_address"] = {"street": street, "postcode": "47000", "city": "Agen"}
    return {
        "referral_id": str(uuid.uuid4()), "visit_id": str(uuid.uuid4()), "operator": "caf",
        "procedure": "caf.prime-activite", "site_id": site_id,
        "adviser_id": adviser_id or f"adv-{uuid.uuid4().hex[:8]}",
        "status": "answered", "occurred_at": "2026-03-18T16:10:00+01:00", "outcome": "resolved",
        "message_to_citizen": to_citizen, "message_to_adviser": to_adviser, "recipient": recipient,
    }


def token(user: User) -> dict[str, str]:
    return bearer_for(user)


def adviser(site_id: str) -> User:
    return User(f"adv-{site_id}-{uuid.uuid4().hex[:6]}", "adviser", site_id, "Camille Martin")


def supervisor(department: str | None) -> User:
    return User(f"sup-{department}-{uuid.uuid4().hex[:6]}", "supervisor", None, "Dominique Leroy",
                department=department)


OPS = User("ops-privacy-tests", "ops", None, "Équipe d'exploitation")


@dataclass
class Service:
    app: FastAPI
    client: httpx.AsyncClient
    db: asyncpg.Connection
    bootstrap: str
    database_url: str

    @property
    def runtime(self) -> Runtime:
        runtime: Runtime = self.app.state.runtime
        return runtime

    async def answer(self, data: dict[str, Any]) -> str:
        """Produces `referral.answered` and waits for its deliveries to be stored."""
        await produce(self.bootstrap, "referrals", "referral.answered", data, subject=data["referral_id"],
                      source="/relais/referral")
        count = 1 if data["recipient"]["channel"] == "none" else 2
        await eventually(lambda: self._stored(data["referral_id"], count), timeout=45.0,
                         what="the deliveries to be stored")
        return str(data["referral_id"])

    async def _stored(self, referral_id: str, count: int) -> bool:
        return await self.db.fetchval("SELECT count(*) FROM notifications.deliveries WHERE referral_id = $1",
                                      uuid.UUID(referral_id)) == count

    async def rows(self, referral_id: str) -> list[asyncpg.Record]:
        return await self.db.fetch("SELECT * FROM notifications.deliveries WHERE referral_id = $1"
                                   " ORDER BY recipient DESC", uuid.UUID(referral_id))

    async def listed(self, user: User, **params: str) -> list[dict[str, Any]]:
        response = await self.client.get("/api/v1/notifications", params=params, headers=token(user))
        assert response.status_code == 200, response.text
        body: list[dict[str, Any]] = response.json()
        return body

    async def letter(self, user: User, delivery: uuid.UUID | str) -> httpx.Response:
        return await self.client.get(f"/api/v1/notifications/{delivery}/letter", headers=token(user))

    async def audit(self, user: User) -> list[tuple[str, str, str, str | None]]:
        rows = await self.db.fetch("SELECT role, action, referral_id::text, delivery_id::text FROM notifications.audit"
                                   " WHERE user_id = $1 ORDER BY id", user.user_id)
        return [(r[0], r[1], r[2], r[3]) for r in rows]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def svc(module_database_url: str, kafka_bootstrap: str,
              tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Service]:
    spool: Path = tmp_path_factory.mktemp("sms")
    settings = NotificationsSettings(
        DATABASE_URL=module_database_url, KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap, RELAIS_TOKEN_JWKS_URL=JWKS_URL,
        RELAIS_SMTP_PORT=free_port(), RELAIS_SMTP_TIMEOUT_S=5, RELAIS_SMS_SPOOL=spool,
        RELAIS_NOTIFICATIONS_MAX_ATTEMPTS=1000, RELAIS_NOTIFICATIONS_RETRY_BASE_S=0.05,
        RELAIS_NOTIFICATIONS_RETRY_MAX_S=2, RELAIS_NOTIFICATIONS_POLL_S=0.5)  # type: ignore[call-arg]
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        await until_ready(app)
        db = await asyncpg.connect(module_database_url)
        try:
            for data in SITES:
                await produce(kafka_bootstrap, "sites", "site.upserted", data, subject=data["site_id"],
                              source="/relais/sites")
            await eventually(lambda: _sites_known(db, [s["site_id"] for s in SITES]), timeout=45.0,
                             what="the sites to reach the view")
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                         base_url="http://notifications") as client:
                yield Service(app, client, db, kafka_bootstrap, module_database_url)
        finally:
            await db.close()


async def _sites_known(db: asyncpg.Connection, site_ids: list[str]) -> bool:
    return await db.fetchval("SELECT count(*) FROM notifications.sites WHERE site_id = ANY($1)",
                             site_ids) == len(site_ids)


# --- who reads what ----------------------------------------------------------------------------

async def test_each_reader_lists_only_the_deliveries_of_their_scope(svc: Service) -> None:
    agen_adviser_id = f"adv-agen-{uuid.uuid4().hex[:6]}"
    at_agen = await svc.answer(answered(AGEN, "letter", adviser_id=agen_adviser_id))
    at_bus = await svc.answer(answered(AGEN_BUS, "none"))
    at_martignas = await svc.answer(answered(MARTIGNAS, "sms"))
    agen, martignas, merignac = adviser(AGEN), adviser(MARTIGNAS), adviser(MERIGNAC)

    # The probe: a Martignas adviser, 404 on Agen's referral elsewhere, read its deliveries here.
    assert await svc.listed(martignas, referral_id=at_agen) == []
    assert await svc.listed(martignas, adviser_id=agen_adviser_id) == []
    assert len(await svc.listed(martignas, referral_id=at_martignas)) == 2

    # An adviser: their home site and the sites that depend on it.
    assert len(await svc.listed(agen, referral_id=at_agen)) == 2
    assert {d["referral_id"] for d in await svc.listed(agen, adviser_id=agen_adviser_id)} == {at_agen}
    assert len(await svc.listed(agen, referral_id=at_bus)) == 1
    assert await svc.listed(agen, referral_id=at_martignas) == []
    assert len(await svc.listed(merignac, referral_id=at_martignas)) == 2
    assert await svc.listed(martignas, referral_id=at_bus) == []

    # A supervisor: their department; without one, nothing. Ops: everything.
    for referral, seen_by_47, seen_by_33 in ((at_agen, 2, 0), (at_bus, 1, 0), (at_martignas, 0, 2)):
        assert len(await svc.listed(supervisor("47"), referral_id=referral)) == seen_by_47
        assert len(await svc.listed(supervisor("33"), referral_id=referral)) == seen_by_33
        assert await svc.listed(supervisor(None), referral_id=referral) == []
        assert len(await svc.listed(OPS, referral_id=referral)) == seen_by_47 + seen_by_33


async def test_a_site_the_view_does_not_know_is_seen_only_by_its_own_advisers(svc: Service) -> None:
    unknown = f"inconnu-{uuid.uuid4().hex[:6]}"
    referral = await svc.answer(answered(unknown, "sms"))
    assert len(await svc.listed(adviser(unknown), referral_id=referral)) == 2
    assert await svc.listed(adviser(AGEN), referral_id=referral) == []
    assert await svc.listed(supervisor("47"), referral_id=referral) == []
    assert len(await svc.listed(OPS, referral_id=referral)) == 2


async def test_the_letter_is_for_its_scope_only_and_every_read_is_audited(svc: Service) -> None:
    referral = await svc.answer(answered(AGEN, "letter", street="3 rue des Cordeliers"))
    letter_id = (await svc.rows(referral))[0]["id"]
    martignas, agen, sup33, sup47 = adviser(MARTIGNAS), adviser(AGEN), supervisor("33"), supervisor("47")

    missing = await svc.letter(martignas, uuid.uuid4())
    outside = await svc.letter(martignas, letter_id)
    # The probe: the whole letter (name, postal address, the operator's answer) was 200.
    assert (outside.status_code, missing.status_code) == (404, 404)
    assert outside.json() == missing.json() == {"detail": "no letter with this id"}
    assert (await svc.letter(sup33, letter_id)).status_code == 404
    for reader in (agen, sup47, OPS):
        read = await svc.letter(reader, letter_id)
        assert read.status_code == 200 and "3 rue des Cordeliers" in read.text

    assert await svc.listed(martignas, referral_id=referral) == []
    assert len(await svc.listed(agen, referral_id=referral)) == 2
    # One row per referral a list returned, one per letter read; nothing for what was refused.
    assert await svc.audit(martignas) == []
    assert await svc.audit(sup33) == []
    assert await svc.audit(agen) == [("adviser", "letter", referral, str(letter_id)),
                                     ("adviser", "list", referral, None)]
    assert await svc.audit(sup47) == [("supervisor", "letter", referral, str(letter_id))]
    assert ("ops", "letter", referral, str(letter_id)) in await svc.audit(OPS)


async def test_an_older_state_of_a_site_replayed_does_not_move_it(svc: Service) -> None:
    moved = f"permanence-{uuid.uuid4().hex[:6]}"
    newer = site(moved, "33", MERIGNAC, updated_at="2026-02-01T09:00:00+01:00")
    older = site(moved, "47", AGEN, updated_at="2026-01-01T09:00:00+01:00")
    marker = site(f"marker-{uuid.uuid4().hex[:6]}", "33")
    for data in (newer, older, marker):  # one partition: the marker comes after the older state
        await produce(svc.bootstrap, "sites", "site.upserted", data, subject=data["site_id"], source="/relais/sites")
    await eventually(lambda: _sites_known(svc.db, [moved, marker["site_id"]]), timeout=45.0, what="the sites")
    referral = await svc.answer(answered(moved, "sms"))
    assert await svc.listed(adviser(AGEN), referral_id=referral) == []
    assert await svc.listed(supervisor("47"), referral_id=referral) == []
    assert len(await svc.listed(adviser(MERIGNAC), referral_id=referral)) == 2

    # Retired, it keeps its place in the registry: its deliveries stay readable by the same people.
    await produce(svc.bootstrap, "sites", "site.retired", {"site_id": moved, "retired_at": "2026-03-01T09:00:00Z"},
                  subject=moved, source="/relais/sites")
    await eventually(lambda: svc.db.fetchval("SELECT retired FROM notifications.sites WHERE site_id = $1", moved),
                     timeout=45.0, what="the retirement")
    assert len(await svc.listed(supervisor("33"), referral_id=referral)) == 2


# --- at rest ---------------------------------------------------------------------------------

async def test_a_dump_of_the_schema_shows_no_personal_data(svc: Service) -> None:
    mark = uuid.uuid4().hex[:8]
    name, email, phone = f"Mme Zéphyrine Quillebeuf{mark}", f"zephyrine.{mark}@example.fr", "+33698765432"
    street = f"7 impasse des Tilleuls {mark}"
    to_citizen, to_adviser = f"Votre allocation logement reprend {mark}.", f"Dossier APL-{mark} débloqué."
    texts = {"name": name, "to_citizen": to_citizen, "to_adviser": to_adviser}
    by_email = await svc.answer(answered(AGEN, "email", email=email, **texts))
    by_sms = await svc.answer(answered(AGEN, "sms", phone=phone, **texts))
    by_letter = await svc.answer(answered(AGEN, "letter", street=street, **texts))
    await eventually(lambda: _sms_sent(svc, by_sms), timeout=45.0, what="the SMS to be sent")
    await eventually(lambda: _email_tried(svc, by_email), timeout=45.0, what="the e-mail to be tried")
    await eventually(lambda: _outbox_published(svc), timeout=45.0, what="the outbox to be published")

    dump = dump_schema(svc.database_url, "notifications")
    for referral in (by_email, by_sms, by_letter):
        assert referral in dump  # the rows are in the dump…
    for clear in (name, "Quillebeuf", email, phone, "98765432", street, "Tilleuls", to_citizen, to_adviser, mark):
        assert clear not in dump, f"{clear!r} in clear in the dump"  # …their personal data is not

    # Sealed, it still reads where it must: the adviser's message and the letter.
    listed = await svc.listed(adviser(AGEN), referral_id=by_letter)
    assert [d["message"] for d in listed if d["recipient"] == "adviser"] == [to_adviser]
    letter_id = next(d["id"] for d in listed if d["recipient"] == "citizen")
    letter = await svc.letter(adviser(AGEN), letter_id)
    assert street in letter.text and name in letter.text


async def _sms_sent(svc: Service, referral: str) -> bool:
    return (await svc.rows(referral))[0]["status"] == "sent"


async def _email_tried(svc: Service, referral: str) -> bool:
    return (await svc.rows(referral))[0]["attempts"] >= 1


async def _outbox_published(svc: Service) -> bool:
    return not await svc.db.fetchval("SELECT count(*) FROM notifications.outbox WHERE published_at IS NULL")


# --- retention -------------------------------------------------------------------------------

async def test_the_retention_job_erases_the_content_of_old_deliveries(svc: Service) -> None:
    old = await svc.answer(answered(AGEN, "letter"))
    recent = await svc.answer(answered(AGEN, "letter"))
    retrying = await svc.answer(answered(AGEN, "email"))  # the SMTP server is down: pending
    await _age(svc, old, days=181)
    await _age(svc, recent, days=179)
    await _age(svc, retrying, days=400, recipient="citizen")
    assert "deliveries_erased" in [name for name, _ in svc.runtime.retention_steps]

    counts = await retention.run_once(svc.runtime.pool, svc.runtime.retention_steps, trigger="command", at=now())
    assert counts is not None and counts["deliveries_erased"] == 2
    run = await svc.db.fetchrow("SELECT trigger, counts FROM notifications.retention_runs ORDER BY id DESC LIMIT 1")
    assert run["trigger"] == "command" and json.loads(run["counts"])["deliveries_erased"] == 2

    erased = await svc.rows(old)
    assert all(r["erased_at"] is not None and (r["address"], r["subject"], r["body"]) == (None, None, None)
               for r in erased)
    assert [(r["recipient"], r["status"]) for r in erased] == [("citizen", "sent"), ("adviser", "sent")]
    listed = await svc.listed(adviser(AGEN), referral_id=old)
    assert [(d["recipient"], d["message"], d["erased_at"] is not None) for d in listed] == [
        ("adviser", None, True), ("citizen", None, True)]
    gone = await svc.letter(adviser(AGEN), erased[0]["id"])
    assert gone.status_code == 410 and "erased" in gone.json()["detail"]

    assert all(r["erased_at"] is None and r["body"] is not None for r in await svc.rows(recent))
    assert (await svc.letter(adviser(AGEN), (await svc.rows(recent))[0]["id"])).status_code == 200
    pending = (await svc.rows(retrying))[0]
    assert pending["status"] == "pending" and pending["erased_at"] is None and pending["address"] is not None


async def _age(svc: Service, referral: str, *, days: int, recipient: str | None = None) -> None:
    await svc.db.execute(
        "UPDATE notifications.deliveries SET created_at = created_at - make_interval(days => $2)"
        " WHERE referral_id = $1 AND ($3::text IS NULL OR recipient = $3)", uuid.UUID(referral), days, recipient)


# --- the citizen's rights, through the broker ------------------------------------------------

async def test_an_erasure_request_erases_every_delivery_of_the_referrals_and_is_confirmed(svc: Service) -> None:
    sent_letter = await svc.answer(answered(AGEN, "letter"))
    pending_email = await svc.answer(answered(AGEN, "email"))
    untouched = await svc.answer(answered(AGEN, "sms"))
    await eventually(lambda: _email_tried(svc, pending_email), timeout=45.0, what="the e-mail to be tried")
    request_id = str(uuid.uuid4())
    request = {"request_id": request_id, "reason": "erasure_request", "referral_ids": [sent_letter, pending_email],
               "visit_ids": [], "requested_at": now().isoformat()}
    failed_emails = _failed_emails_counted()
    first = await produce(svc.bootstrap, "privacy", "personal_data.erasure_requested", request, subject=request_id,
                          source="/relais/referral")
    await produce(svc.bootstrap, "privacy", "personal_data.erasure_requested", request, subject=request_id,
                  source="/relais/referral", event_id=first.id)  # delivered twice
    await handled_and_published(svc, "privacy")

    records = await read_all(svc.bootstrap, "privacy", "notifications")
    confirmed = _answers(records, "personal_data.erased", request_id)
    failed = _keyed(of_type(records, "notification.failed"), pending_email)
    assert len(confirmed) == 1
    h, data = headers(confirmed[0]), json.loads(confirmed[0].value)
    CONTRACT.check(h["ce_type"], data)
    assert h["ce_id"] == answer_event_id(request_id, "personal_data.erased")
    assert h["ce_source"] == "/relais/notifications" and h["ce_subject"] == request_id
    assert (data["service"], data["counts"]) == ("notifications", {"deliveries": 4})
    assert len(failed) == 1 and json.loads(failed[0].value)["reason"] == "données personnelles effacées"

    for referral in (sent_letter, pending_email):
        for row in await svc.rows(referral):
            assert row["erased_at"] is not None and (row["address"], row["subject"], row["body"]) == (None, None, None)
    assert [(r["recipient"], r["status"]) for r in await svc.rows(pending_email)] == [
        ("citizen", "failed"), ("adviser", "sent")]
    assert (await svc.rows(pending_email))[0]["reason"] == "données personnelles effacées"
    assert _failed_emails_counted() - failed_emails == 1  # the pending one, settled by the erasure, once
    assert all(r["erased_at"] is None and r["body"] is not None for r in await svc.rows(untouched))
    letter = await svc.letter(adviser(AGEN), (await svc.rows(sent_letter))[0]["id"])
    assert letter.status_code == 410


def _failed_emails_counted() -> float:
    return REGISTRY.get_sample_value("relais_notification_deliveries_total",
                                     {"channel": "email", "outcome": "failed"}) or 0.0


async def test_an_access_request_is_answered_sealed_for_the_reply_key(svc: Service) -> None:
    by_sms = await svc.answer(answered(AGEN, "sms", phone="+33611223344", to_citizen="Rendez-vous confirmé."))
    by_letter = await svc.answer(answered(MARTIGNAS, "letter", street="9 allée des Acacias",
                                          to_adviser="Courrier CAF envoyé."))
    await eventually(lambda: _sms_sent(svc, by_sms), timeout=45.0, what="the SMS to be sent")
    key = ECKey.generate_key("P-256", parameters={"kid": "ops-access-test"}, private=True)
    request_id, refused_id = str(uuid.uuid4()), str(uuid.uuid4())
    request = {"request_id": request_id, "referral_ids": [by_sms, by_letter], "visit_ids": [],
               "requested_at": now().isoformat(), "reply_key": key.as_dict(private=False)}
    await produce(svc.bootstrap, "privacy", "personal_data.access_requested", request, subject=request_id,
                  source="/relais/referral")
    not_a_point = {**request, "request_id": refused_id,
                   "reply_key": {"kty": "EC", "crv": "P-256", "x": "A" * 43, "y": "B" * 43, "kid": "bad"}}
    await produce(svc.bootstrap, "privacy", "personal_data.access_requested", not_a_point, subject=refused_id,
                  source="/relais/referral")
    await handled_and_published(svc, "privacy")
    await handled_and_published(svc, "privacy")  # our own answers too: read and skipped

    records = await read_all(svc.bootstrap, "privacy", "privacy.dlq")
    answers = _answers(records, "personal_data.access_answered", request_id)
    dead = [r for r in records if r.topic == "privacy.dlq"]
    assert len(answers) == 1
    h, data = headers(answers[0]), json.loads(answers[0].value)
    CONTRACT.check(h["ce_type"], data)
    assert h["ce_id"] == answer_event_id(request_id, "personal_data.access_answered")
    assert data["service"] == "notifications" and "+33611223344" not in answers[0].value.decode()

    plaintext = sealing.unseal(data["personal_data"], key, request_id=request_id)
    CONTRACT.check_personal("personal_data.access_answered", plaintext)
    held = {(d["referral_id"], d["recipient"]): d for d in plaintext["records"]["deliveries"]}
    assert set(held) == {(by_sms, "citizen"), (by_sms, "adviser"), (by_letter, "citizen"), (by_letter, "adviser")}
    sms = held[(by_sms, "citizen")]
    assert (sms["channel"], sms["status"], sms["address"]) == ("sms", "sent", "+33611223344")
    assert "Rendez-vous confirmé" in sms["body"] and sms["sent_at"] is not None
    assert "9 allée des Acacias" in held[(by_letter, "citizen")]["body"]
    assert held[(by_letter, "adviser")]["body"] == "Courrier CAF envoyé."
    with pytest.raises(sealing.SealingError):
        sealing.unseal(data["personal_data"], ECKey.generate_key("P-256", private=True), request_id=request_id)

    # The request with an unusable key is set aside with its reason; nothing else of ours is.
    assert [headers(r)["dlq_error"] for r in dead if r.key == refused_id.encode()] == ["schema_violation"]
    assert not [r for r in dead if r.key == request_id.encode()]
    audited = await svc.db.fetch("SELECT role, action, referral_id::text FROM notifications.audit WHERE user_id = $1",
                                 f"privacy-request:{request_id}")
    assert sorted(tuple(r) for r in audited) == sorted([("ops", "access_request", by_sms),
                                                        ("ops", "access_request", by_letter)])


def _answers(records: list[ConsumerRecord], name: str, request_id: str) -> list[ConsumerRecord]:
    return [r for r in records if r.topic == "privacy" and headers(r).get("ce_type") == event_type(name)
            and r.key == request_id.encode()]


def _keyed(records: list[ConsumerRecord], key: str) -> list[ConsumerRecord]:
    return [r for r in records if r.key == key.encode()]


async def handled_and_published(svc: Service, topic: str) -> None:
    """Waits until the service's consumer of `topic` has committed past everything on it
    now, and its outbox has published what that work recorded."""
    ends = await end_offsets(svc.bootstrap, topic)
    group = {"privacy": "relais-notifications-privacy"}[topic]
    await eventually(lambda: _group_reached(svc.bootstrap, group, ends), timeout=45.0,
                     what=f"{group} to handle everything on {topic}")
    await eventually(lambda: _outbox_published(svc), timeout=45.0, what="the outbox to be published")


async def end_offsets(bootstrap: str, *topics: str) -> dict[TopicPartition, int]:
    client = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await client.start()
    try:
        await client.topics()  # fetches the metadata
        partitions = [TopicPartition(t, p) for t in topics for p in client.partitions_for_topic(t) or ()]
        ends: dict[TopicPartition, int] = await client.end_offsets(partitions)
        return ends
    finally:
        await client.stop()


async def _group_reached(bootstrap: str, group: str, ends: dict[TopicPartition, int]) -> bool:
    """Has `group` committed offsets up to `ends`? (Asked by a member that never joins.)"""
    probe = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await probe.start()
    try:
        for tp, end in ends.items():
            if end and ((await probe.committed(tp)) or 0) < end:
                return False
        return True
    finally:
        await probe.stop()


async def read_all(bootstrap: str, *topics: str) -> list[ConsumerRecord]:
    """Every record on `topics` up to their current ends, read without a group."""
    ends = await end_offsets(bootstrap, *topics)
    reader = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                              auto_offset_reset="earliest", isolation_level="read_committed")
    await reader.start()
    try:
        reader.assign(list(ends))
        await reader.seek_to_beginning(*ends)
        records: list[ConsumerRecord] = []
        while not await _at(reader, ends):
            for batch in (await reader.getmany(timeout_ms=200)).values():
                records.extend(batch)
        return records
    finally:
        await reader.stop()


async def _at(reader: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> bool:
    for tp, end in ends.items():
        if await reader.position(tp) < end:
            return False
    return True
