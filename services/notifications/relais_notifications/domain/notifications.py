"""Which notifications an answered referral gives rise to."""

from __future__ import annotations

from email.headerregistry import Address
from functools import partial

from relais_notifications.domain import texts
from relais_notifications.domain.model import Answer, Notification, delivery_id


def notifications_for(answer: Answer, cause_event_id: str) -> list[Notification]:
    """The citizen's notification by the channel they chose (none for `none`), then the
    adviser's, on their screen. Ids are derived from the cause event: the same answer
    always yields the same notifications."""
    common = partial(Notification, referral_id=answer.referral_id, cause_event_id=cause_event_id,
                     adviser_id=answer.adviser_id, site_id=answer.site_id)
    found: list[Notification] = []
    recipient = answer.recipient
    citizen_id = delivery_id(cause_event_id, "citizen")
    if recipient.channel == "email" and recipient.email:
        found.append(common(
            id=citizen_id, recipient="citizen", channel="email", status="pending",
            address=_mailbox(recipient.display_name, recipient.email),
            subject=texts.subject(answer), body=texts.citizen_text(answer)))
    elif recipient.channel == "sms" and recipient.phone:
        found.append(common(
            id=citizen_id, recipient="citizen", channel="sms", status="pending",
            address=recipient.phone, body=texts.sms_text(answer)))
    elif recipient.channel == "letter" and recipient.postal_address:
        # Printed by the adviser from the stored text: storing it is delivering it.
        found.append(common(
            id=citizen_id, recipient="citizen", channel="letter", status="sent",
            subject=texts.subject(answer), body=texts.citizen_text(answer, letter=True)))
    found.append(common(
        id=delivery_id(cause_event_id, "adviser"), recipient="adviser", channel="adviser_screen",
        status="sent", body=texts.adviser_text(answer)))
    return found


def _mailbox(display_name: str, email: str) -> str:
    """`Mme Dupont <nadia.dupont@example.fr>`, quoted as RFC 5322 wants."""
    local, _, domain = email.rpartition("@")
    return str(Address(display_name=display_name, username=local, domain=domain))
