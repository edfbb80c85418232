"""The delivery loop and the delivery reports against a real PostgreSQL (the service's
own migrations): an SMS claimed in quiet hours waits for the next allowed morning,
nothing sent and no attempt counted, and goes out then; an SMS that fails for good
with a letter written for it gives that letter, printable, told once, however often
the failure is heard; without one, nothing more."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import pytest_asyncio

from relais_kit import outbox
from relais_kit.access import User
from relais_kit.contract import load_contract
from relais_kit.db import create_pool, migrate
from relais_kit.envelope import event_type
from relais_kit.settings import REPO_ROOT
from relais_kit.vault import FileKeyRing, Vault, new_key_set, write_key_file
from relais_notifications.adapters import store
from relais_notifications.adapters.ports import DeliveryError
from relais_notifications.app import MIGRATIONS
from relais_notifications.domain.french import PARIS
from relais_notifications.domain.model import Notification, delivery_id, fallback_letter_id
from relais_notifications.domain.quiet_hours import HELD_REASON, QuietHours
from relais_notifications.domain.sms_replies import OPTED_OUT_REASON
from relais_notifications.service_layer import access, reports
from relais_notifications.service_layer.delivery import DeliveryLoop

CONTRACT = load_contract(REPO_ROOT / "schemas")
SOURCE = "/relais/notifications"
SITE = "agen-leon-blum-poste"
NIGHT = QuietHours(time(20, 0), time(8, 0))
SATURDAY_NIGHT = datetime(2025, 6, 14, 23, 0, tzinfo=PARIS)
MONDAY_MORNING = datetime(2025, 6, 16, 8, 0, tzinfo=PARIS)
LETTER_SUBJECT = "Réponse de la CAF à votre demande"
LETTER_BODY = "Mme Dupont\n12 avenue de la Libération\n33127 MARTIGNAS SUR JALLE\n\nMadame, la CAF a répondu."
SENT = event_type("notification.sent")
FAILED = event_type("notification.failed")


class Gateway:
    """Both ports: records what it is handed, or refuses it (`refusal`)."""

    def __init__(self) -> None:
        self.sent: list[tuple[uuid.UUID, str]] = []
        self.refusal: DeliveryError | None = None

    async def send(self, *, notification_id: uuid.UUID, to: str, text: str = "", subject: str = "",
                   body: str = "") -> None:
        if self.refusal is not None:
            raise self.refusal
        self.sent.append((notification_id, to))


class Clock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


@pytest_asyncio.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(database_url, "notifications")
    await migrate(pool, MIGRATIONS)
    yield pool
    await pool.close()


@pytest.fixture
def vault(tmp_path: Path) -> Vault:
    keys = tmp_path / "notifications.json"
    write_key_file(keys, new_key_set())
    return Vault(FileKeyRing(keys, recheck_s=0))


def loop(pool: asyncpg.Pool, vault: Vault, gateway: Gateway, *, quiet: QuietHours | None = None,
         clock: Clock | None = None) -> DeliveryLoop:
    return DeliveryLoop(pool=pool, contract=CONTRACT, source=SOURCE, vault=vault, mailer=gateway, sms=gateway,
                        quiet=quiet, clock=clock or Clock(datetime.now(UTC)), retry_base_s=0.01)


async def planned(pool: asyncpg.Pool, vault: Vault, *, channel: str = "sms", with_letter: bool = True) -> Notification:
    """A citizen's pending SMS (or e-mail), as the consumer stores it."""
    cause = str(uuid.uuid4())
    n = Notification(id=delivery_id(cause, "citizen"), referral_id=uuid.uuid4(), cause_event_id=cause,
                     adviser_id="adv-agen-0142", site_id=SITE, recipient="citizen", channel=channel,  # type: ignore[arg-type]
                     status="pending", body="La CAF a répondu : RDV le mardi 25/03 à 10h30.",
                     subject="La CAF a répondu" if channel == "email" else None,
                     address="+33612345678" if channel == "sms" else "Mme Dupont <nadia.dupont@example.fr>",
                     fallback_subject=LETTER_SUBJECT if with_letter else None,
                     fallback_body=LETTER_BODY if with_letter else None)
    async with pool.acquire() as conn, conn.transaction():
        assert await store.add(conn, vault, n, datetime.now(UTC))
        assert not await store.add(conn, vault, n, datetime.now(UTC)), "the same event twice: one row"
    return n


async def row(pool: asyncpg.Pool, id_: uuid.UUID) -> asyncpg.Record | None:
    async with pool.acquire() as conn:
        return await conn.fetchrow("SELECT * FROM deliveries WHERE id = $1", id_)


async def told(pool: asyncpg.Pool, vault: Vault, referral_id: uuid.UUID) -> list[tuple[str, dict[str, Any]]]:
    """The events of a referral in the outbox, in order: (type, data)."""
    async with pool.acquire() as conn:
        rows = await conn.fetch("SELECT * FROM outbox WHERE record_key = $1 ORDER BY id", str(referral_id))
    return [(r["event_type"], outbox.event_of(r, SOURCE, vault).data) for r in rows]


async def test_an_sms_claimed_on_saturday_night_waits_until_monday_morning(pool: asyncpg.Pool, vault: Vault) -> None:
    gateway, clock = Gateway(), Clock(SATURDAY_NIGHT.astimezone(UTC))
    deliveries = loop(pool, vault, gateway, quiet=NIGHT, clock=clock)
    # An e-mail at that hour is not held.
    mail = await planned(pool, vault, channel="email", with_letter=False)
    assert await deliveries.deliver_one() and gateway.sent == [(mail.id, "Mme Dupont <nadia.dupont@example.fr>")]
    gateway.sent.clear()

    sms = await planned(pool, vault)

    assert await deliveries.deliver_one()
    held = await row(pool, sms.id)
    assert held is not None
    assert (held["status"], held["attempts"], held["sent_at"]) == ("pending", 0, None)
    assert held["next_attempt_at"] == MONDAY_MORNING
    assert held["reason"] == f"{HELD_REASON} — envoi prévu lundi 16 juin 2025 à 8 h"
    assert gateway.sent == [] and await told(pool, vault, sms.referral_id) == []

    # Still Sunday: held again, still for Monday 08:00, still no attempt.
    clock.at = datetime(2025, 6, 15, 18, 0, tzinfo=PARIS)
    assert await deliveries.deliver_one()
    again = await row(pool, sms.id)
    assert again is not None and (again["attempts"], again["next_attempt_at"]) == (0, MONDAY_MORNING)

    clock.at = MONDAY_MORNING
    assert await deliveries.deliver_one()
    sent = await row(pool, sms.id)
    assert sent is not None
    assert (sent["status"], sent["attempts"], sent["reason"], sent["sent_at"]) == ("sent", 1, None, MONDAY_MORNING)
    assert gateway.sent == [(sms.id, "+33612345678")]
    assert [(kind, data["channel"]) for kind, data in await told(pool, vault, sms.referral_id)] == [(SENT, "sms")]
    assert not await deliveries.deliver_one(), "nothing left"


async def test_an_sms_refused_for_good_gives_its_letter_to_print(pool: asyncpg.Pool, vault: Vault) -> None:
    gateway = Gateway()
    gateway.refusal = DeliveryError(OPTED_OUT_REASON, permanent=True)
    sms = await planned(pool, vault)

    assert await loop(pool, vault, gateway).deliver_one()
    failed = await row(pool, sms.id)
    assert failed is not None and failed["status"] == "failed"
    assert failed["reason"] == OPTED_OUT_REASON + " — un courrier est prêt à imprimer"
    assert (failed["fallback_subject"], failed["fallback_body"]) == (None, None), "now the letter's own"

    letter_id = fallback_letter_id(sms.id)
    letter = await row(pool, letter_id)
    assert letter is not None
    assert (letter["channel"], letter["recipient"], letter["status"], letter["referral_id"], letter["adviser_id"],
            letter["site_id"], letter["cause_event_id"]) == (
        "letter", "citizen", "sent", sms.referral_id, sms.adviser_id, SITE, sms.cause_event_id)
    assert "Dupont" not in letter["body"] and "Dupont" not in (letter["subject"] or ""), "sealed at rest"
    async with pool.acquire() as conn, conn.transaction():
        printable = await access.printable_letter(conn, vault, User("adv-1", "adviser", SITE, "Camille Martin"),
                                                  letter_id)
    assert printable.text == LETTER_BODY and printable.referral_id == sms.referral_id

    events = await told(pool, vault, sms.referral_id)
    assert [(kind, data["notification_id"], data["channel"]) for kind, data in events] == [
        (FAILED, str(sms.id), "sms"), (SENT, str(letter_id), "letter")]
    assert events[0][1]["reason"] == failed["reason"]
    assert events[1][1]["cause_event_id"] == sms.cause_event_id


async def test_an_sms_without_a_letter_fails_and_nothing_more(pool: asyncpg.Pool, vault: Vault) -> None:
    gateway = Gateway()
    gateway.refusal = DeliveryError(OPTED_OUT_REASON, permanent=True)
    sms = await planned(pool, vault, with_letter=False)

    assert await loop(pool, vault, gateway).deliver_one()
    failed = await row(pool, sms.id)
    assert failed is not None and (failed["status"], failed["reason"]) == ("failed", OPTED_OUT_REASON)
    assert await row(pool, fallback_letter_id(sms.id)) is None
    assert [kind for kind, _ in await told(pool, vault, sms.referral_id)] == [FAILED]


async def test_a_failed_report_heard_twice_gives_one_letter(pool: asyncpg.Pool, vault: Vault) -> None:
    gateway = Gateway()
    sms = await planned(pool, vault)
    assert await loop(pool, vault, gateway).deliver_one()
    sent = await row(pool, sms.id)
    assert sent is not None and sent["status"] == "sent" and sent["fallback_body"] is not None, "kept until settled"

    assert await reports.apply(pool, CONTRACT, SOURCE, vault, sms.id, 2) == "failed"
    assert await reports.apply(pool, CONTRACT, SOURCE, vault, sms.id, 2) is None
    assert await reports.apply(pool, CONTRACT, SOURCE, vault, sms.id, 16) is None

    failed = await row(pool, sms.id)
    assert failed is not None and failed["status"] == "failed" and failed["report"] == "failed"
    assert failed["reason"].endswith(" — un courrier est prêt à imprimer")
    async with pool.acquire() as conn:
        letters = await conn.fetch("SELECT id, status FROM deliveries WHERE cause_event_id = $1 AND channel = 'letter'",
                                   sms.cause_event_id)
    assert [(r["id"], r["status"]) for r in letters] == [(fallback_letter_id(sms.id), "sent")]
    assert [(kind, data["channel"]) for kind, data in await told(pool, vault, sms.referral_id)] == [
        (SENT, "sms"), (FAILED, "sms"), (SENT, "letter")]


async def test_a_delivered_sms_needs_no_letter_and_the_letter_is_erased_with_the_rest(
        pool: asyncpg.Pool, vault: Vault) -> None:
    gateway = Gateway()
    delivered, kept = await planned(pool, vault), await planned(pool, vault)
    deliveries = loop(pool, vault, gateway)
    assert await deliveries.deliver_one() and await deliveries.deliver_one()

    # Given back on a request for access while it is kept, opened.
    async with pool.acquire() as conn:
        (record,) = await store.of_referrals(conn, vault, [kept.referral_id])
    assert (record["fallback_subject"], record["fallback_body"]) == (LETTER_SUBJECT, LETTER_BODY)

    assert await reports.apply(pool, CONTRACT, SOURCE, vault, delivered.id, 1) == "delivered"
    assert await reports.apply(pool, CONTRACT, SOURCE, vault, delivered.id, 2) is None
    done = await row(pool, delivered.id)
    assert done is not None and (done["status"], done["fallback_body"]) == ("sent", None)
    assert await row(pool, fallback_letter_id(delivered.id)) is None

    async with pool.acquire() as conn, conn.transaction():
        assert await store.erase_older_than(conn, datetime.now(UTC) + timedelta(days=1), datetime.now(UTC)) == 2
    erased = await row(pool, kept.id)
    assert erased is not None and (erased["fallback_subject"], erased["fallback_body"]) == (None, None)
    assert await reports.apply(pool, CONTRACT, SOURCE, vault, kept.id, 2) == "failed"
    assert await row(pool, fallback_letter_id(kept.id)) is None, "an erased letter is no letter"
