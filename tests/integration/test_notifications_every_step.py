"""The citizen told at every step (issue #13 item 4), through the real service, broker,
PostgreSQL and SMTP server: `referral.routed` gives the mail with the status link,
`referral.info_requested` the SMS saying what to bring, `referral.rejected` the letter
to print; an event without `recipient` (contract 1.1) tells nobody."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from relais_notifications.domain.model import delivery_id
from tests.integration.test_notifications_service import contract, produce, running_service
from tests.support import eventually

LINK = {"url": "https://france-services.example/suivi/K7QM-9TXH-2C", "code": "K7QM-9TXH-2C"}


def base(referral_id: str, status: str, recipient: dict[str, Any] | None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "referral_id": referral_id, "visit_id": str(uuid.uuid4()), "operator": "caf",
        "procedure": "caf.prime-activite", "site_id": "agen-leon-blum-poste", "adviser_id": "adv-agen-0142",
        "status": status, "occurred_at": "2026-12-01T10:00:00+01:00"}
    if recipient is not None:
        data.update(recipient=recipient, status_link=LINK)
    return data


async def test_each_moment_reaches_the_citizen_by_their_channel(
        monkeypatch: pytest.MonkeyPatch, database_url: str, kafka_bootstrap: str, tmp_path: Path) -> None:
    async with running_service(monkeypatch, database_url, kafka_bootstrap, tmp_path) as svc:
        address = f"citoyen-{uuid.uuid4().hex[:10]}@example.fr"
        by_mail, by_sms, by_letter, silent = (str(uuid.uuid4()) for _ in range(4))
        routed = contract.event("referral.routed", source="/relais/referral", subject=by_mail, data={
            **base(by_mail, "routed", {"display_name": "Mme Dupont", "channel": "email", "email": address}),
            "due_at": "2026-12-15T18:00:00+01:00", "inbox_topic": "operator.caf.inbox"})
        asked = contract.event("referral.info_requested", source="/relais/referral", subject=by_sms, data={
            **base(by_sms, "info_requested", {"display_name": "M. Benali", "channel": "sms",
                                              "phone": "+33612345678"}),
            "question": "Merci de fournir l'avis d'impôt.", "documents": ["Avis d'impôt 2025"]})
        rejected = contract.event("referral.rejected", source="/relais/referral", subject=by_letter, data={
            **base(by_letter, "rejected", {"display_name": "Mme Martin", "channel": "letter", "postal_address": {
                "street": "4 rue des Lilas", "postcode": "47000", "city": "Agen"}}),
            "reason_code": "not_competent", "suggested_operator": "france-travail"})
        old = contract.event("referral.routed", source="/relais/referral", subject=silent, data={
            **base(silent, "routed", None), "due_at": "2026-12-15T18:00:00+01:00",
            "inbox_topic": "operator.caf.inbox"})
        sent = await produce(svc.bootstrap, routed, asked, rejected, old)

        (mail,) = await eventually(lambda: _async(svc.mails_to(address)), timeout=45.0, what="the mail")
        assert mail["Subject"] == "Votre demande est envoyée à la CAF"
        body = " ".join(mail.get_content().split())
        assert "La CAF doit répondre avant le 15 décembre 2026." in body
        assert f"allez sur : {LINK['url']} Votre code de suivi est : K7QM-9TXH-2C" in body

        sms_id = str(delivery_id(asked.id, "citizen"))
        (text,) = await eventually(lambda: _async([s for s in svc.sms.read() if s["id"] == sms_id]),
                                   timeout=45.0, what="the SMS")
        assert text["text"].startswith("La CAF a besoin de : Avis d'impot 2025. Apportez-les")
        assert LINK["url"] in text["text"]

        await eventually(svc.all_published, timeout=45.0, what="the outbox to be published")
        (letter,) = await svc.deliveries(by_letter)
        assert (letter["channel"], letter["status"], letter["recipient"]) == ("letter", "sent", "citizen")
        assert await svc.deliveries(silent) == []
        # One notification.sent per moment told, none for the one without a recipient.
        told = {r["record_key"] for r in await svc.db.fetch(
            "SELECT record_key FROM notifications.outbox WHERE record_key = ANY($1::text[])",
            [by_mail, by_sms, by_letter, silent])}
        assert told == {by_mail, by_sms, by_letter}
        assert len(sent) == 4


async def _async(value: Any) -> Any:
    return value
