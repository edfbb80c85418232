"""Which notifications an answered referral gives rise to."""

from __future__ import annotations

from collections.abc import Callable
from email.headerregistry import Address
from functools import partial

from jinja2 import TemplateError

from relais_notifications.domain import texts
from relais_notifications.domain.model import Answer, Notification, delivery_id

# What writing one message may raise on data the contract let through; it costs that
# message only, never the others of the same answer.
UNWRITABLE = (ValueError, TypeError, LookupError, TemplateError)


def notifications_for(answer: Answer, cause_event_id: str) -> list[Notification]:
    """The citizen's notification by the channel they chose (none for `none`), then the
    adviser's, on their screen. Ids are derived from the cause event: the same answer
    always yields the same notifications. A citizen's message that cannot be written
    is a `failed` notification with its reason; the adviser's is made all the same."""
    common = partial(Notification, referral_id=answer.referral_id, cause_event_id=cause_event_id,
                     adviser_id=answer.adviser_id, site_id=answer.site_id)
    found: list[Notification] = []
    citizen = _for_citizen(answer, partial(common, id=delivery_id(cause_event_id, "citizen"),
                                           recipient="citizen"))
    if citizen is not None:
        found.append(citizen)
    found.append(common(
        id=delivery_id(cause_event_id, "adviser"), recipient="adviser", channel="adviser_screen",
        status="sent", body=texts.adviser_text(answer)))
    return found


def _for_citizen(answer: Answer, make: Callable[..., Notification]) -> Notification | None:
    recipient = answer.recipient
    if recipient.channel == "none":
        return None
    try:
        if recipient.channel == "email" and recipient.email:
            return make(channel="email", status="pending",
                        address=_mailbox(recipient.display_name, recipient.email),
                        subject=texts.subject(answer), body=texts.citizen_text(answer))
        if recipient.channel == "sms" and recipient.phone:
            return make(channel="sms", status="pending", address=recipient.phone, body=texts.sms_text(answer))
        if recipient.channel == "letter" and recipient.postal_address:
            # Printed by the adviser from the stored text: storing it is delivering it.
            return make(channel="letter", status="sent", subject=texts.subject(answer),
                        body=texts.citizen_text(answer, letter=True))
    except UNWRITABLE as exc:
        # The reason names the failure, never the data (it may be quoted in the error).
        return make(channel=recipient.channel, status="failed", body=None,
                    reason=f"message impossible à rédiger ({type(exc).__name__})")
    return None


def _mailbox(display_name: str, email: str) -> str:
    """`Mme Dupont <nadia.dupont@example.fr>`, quoted as RFC 5322 wants."""
    local, _, domain = email.rpartition("@")
    return str(Address(display_name=display_name, username=local, domain=domain))
