"""A failed SMS falls back to a letter, end to end through a real Kannel: an answer to a
citizen reached by SMS who also gave a postal address goes through bearerbox and
smsbox; the operator (fakesmsc gone) never delivers it and reports it undelivered (type
2, as Kannel calls us); the SMS fails saying a letter is ready, and that letter — the
one written with the SMS — is stored to print, with its `notification.sent`."""

from __future__ import annotations

import json

import asyncpg
import httpx
import pytest

from deploy.kannel.config import installed
from relais_notifications.adapters.kannel import dlr_secret
from relais_notifications.domain.model import delivery_id, fallback_letter_id
from tests.integration.test_notifications_kannel import RunningKannel, kannel, served  # noqa: F401 (fixture)
from tests.integration.test_notifications_service import (
    answered_data,
    answered_event,
    header_map,
    produce,
    read_topic,
)
from tests.support import eventually

pytestmark = pytest.mark.skipif(not installed(), reason="Kannel not installed (deploy/kannel/install-kannel.sh)")



async def test_an_undelivered_sms_becomes_a_letter_to_print(
        monkeypatch: pytest.MonkeyPatch, database_url: str, kafka_bootstrap: str,
        kannel: RunningKannel) -> None:  # noqa: F811 (the fixture)
    async with served(monkeypatch, database_url, kafka_bootstrap, kannel) as url:
        db = await asyncpg.connect(database_url)
        try:
            kannel.stop("fakesmsc")  # the operator's SMSC away: no delivery report of its own
            data = answered_data(channel="sms")
            data["recipient"]["postal_address"] = {"street": "4 rue des Lilas", "postcode": "47000", "city": "Agen"}
            answer = answered_event(data)
            sms_id = delivery_id(answer.id, "citizen")
            await produce(kafka_bootstrap, answer)

            async def handed_to_kannel() -> asyncpg.Record | None:
                row = await db.fetchrow("SELECT * FROM notifications.deliveries WHERE id = $1", sms_id)
                return row if row is not None and row["status"] == "sent" else None

            row = await eventually(handed_to_kannel, timeout=60.0, what="the SMS handed to Kannel")
            assert row["fallback_body"] is not None  # the letter, sealed, kept with the SMS
            async with httpx.AsyncClient(base_url=url) as client:
                for _ in range(2):  # Kannel retrying the callback: one letter all the same
                    report = await client.get("/kannel/dlr", params={
                        "id": str(sms_id), "type": "2", "secret": dlr_secret(kannel.kannel.dlr_secret, sms_id)})
                    assert report.status_code == 200

            sms = await db.fetchrow("SELECT * FROM notifications.deliveries WHERE id = $1", sms_id)
            assert sms["status"] == "failed" and sms["reason"].endswith("— un courrier est prêt à imprimer")
            assert sms["fallback_body"] is None  # the letter holds the text now
            letters = await db.fetch("SELECT * FROM notifications.deliveries WHERE referral_id = $1"
                                     " AND channel = 'letter'", sms["referral_id"])
            assert [(r["id"], r["status"], r["recipient"]) for r in letters] == [
                (fallback_letter_id(sms_id), "sent", "citizen")]

            records = await read_topic(kafka_bootstrap, "notifications", lambda rs: any(
                r.key.decode() == answer.subject and json.loads(r.value).get("channel") == "letter" for r in rs))
            told = [(header_map(r)["ce_type"].rsplit(".", 2)[-2], json.loads(r.value)["channel"])
                    for r in records if r.key.decode() == answer.subject]
            assert told == [("sent", "sms"), ("failed", "sms"), ("sent", "letter")]
        finally:
            await db.close()
