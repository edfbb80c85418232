"""Which notifications a moment of a referral gives rise to."""

from __future__ import annotations

from collections.abc import Callable
from email.headerregistry import Address
from functools import partial

from jinja2 import TemplateError

from relais_notifications.domain import texts
from relais_notifications.domain.model import Notification, Step, delivery_id
from relais_notifications.domain.sites import SiteState

# What writing one message may raise on data the contract let through; it costs that
# message only, never the others of the same moment.
UNWRITABLE = (ValueError, TypeError, LookupError, TemplateError)


def notifications_for(step: Step, cause_event_id: str, wordings: texts.Wordings,
                      site: SiteState | None = None) -> list[Notification]:
    """The citizen's notification by the channel they chose (none for `none`), then, for
    an answer, the adviser's on their screen. Ids are derived from the cause event: the
    same event always yields the same notifications. A citizen's message that cannot be
    written is a `failed` notification with its reason; the adviser's is made all the
    same. `site`: the adviser's France Services, where to bring what is asked."""
    common = partial(Notification, referral_id=step.referral_id, cause_event_id=cause_event_id,
                     adviser_id=step.adviser_id, site_id=step.site_id)
    found: list[Notification] = []
    citizen = _for_citizen(step, wordings, site, partial(common, id=delivery_id(cause_event_id, "citizen"),
                                                         recipient="citizen"))
    if citizen is not None:
        found.append(citizen)
    if step.moment == "answered":
        found.append(common(
            id=delivery_id(cause_event_id, "adviser"), recipient="adviser", channel="adviser_screen",
            status="sent", body=texts.adviser_text(step)))
    return found


def by_letter(step: Step) -> bool:
    """A letter is printed for every moment but the sending: the citizen was at the
    counter then, and left with the printed receipt."""
    return step.moment != "sent"


def _for_citizen(step: Step, wordings: texts.Wordings, site: SiteState | None,
                 make: Callable[..., Notification]) -> Notification | None:
    recipient = step.recipient
    if recipient.channel == "none":
        return None
    try:
        if recipient.channel == "email" and recipient.email:
            return make(channel="email", status="pending",
                        address=_mailbox(recipient.display_name, recipient.email),
                        subject=wordings.subject(step, site), body=wordings.citizen_text(step, site=site))
        if recipient.channel == "sms" and recipient.phone:
            fallback = recipient.postal_address is not None and by_letter(step)
            return make(channel="sms", status="pending", address=recipient.phone,
                        body=wordings.sms_text(step, site),
                        fallback_subject=wordings.subject(step, site) if fallback else None,
                        fallback_body=wordings.citizen_text(step, letter=True, site=site) if fallback else None)
        if recipient.channel == "letter" and recipient.postal_address and by_letter(step):
            # Printed by the adviser from the stored text: storing it is delivering it.
            return make(channel="letter", status="sent", subject=wordings.subject(step, site),
                        body=wordings.citizen_text(step, letter=True, site=site))
    except UNWRITABLE as exc:
        # The reason names the failure, never the data (it may be quoted in the error).
        return make(channel=recipient.channel, status="failed", body=None,
                    reason=f"message impossible à rédiger ({type(exc).__name__})")
    return None


def _mailbox(display_name: str, email: str) -> str:
    """`Mme Dupont <nadia.dupont@example.fr>`, quoted as RFC 5322 wants."""
    local, _, domain = email.rpartition("@")
    return str(Address(display_name=display_name, username=local, domain=domain))
