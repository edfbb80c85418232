"""A moment of a referral as the notifications service sees it, and the notifications
it gives rise to. Built from the event data the contract already validated."""

from __future__ import annotations

import unicodedata
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

Outcome = Literal["resolved", "appointment_offered", "documents_needed", "refused", "other"]
Moment = Literal["sent", "info_requested", "answered", "rejected"]
CitizenChannel = Literal["email", "sms", "letter", "none"]
Channel = Literal["email", "sms", "letter", "adviser_screen"]
RecipientKind = Literal["citizen", "adviser"]
Status = Literal["pending", "sent", "failed"]

OUTCOMES: tuple[Outcome, ...] = ("resolved", "appointment_offered", "documents_needed", "refused", "other")

# Deterministic ids: the same answer always gives the same delivery ids, whoever
# computes them and however often.
_NAMESPACE = uuid.UUID("5b0c1f0e-3d8a-4b4e-9a55-6f6e6f746966")
# How a citizen is addressed when the name given is blank once cleaned.
NEUTRAL_ADDRESSEE = "Madame, Monsieur"


class UnusableStep(ValueError):
    """The event cannot be turned into notifications (what the schema should have caught)."""


@dataclass(frozen=True)
class PostalAddress:
    street: str
    postcode: str
    city: str


@dataclass(frozen=True)
class Recipient:
    display_name: str
    channel: CitizenChannel
    email: str | None = None
    phone: str | None = None
    postal_address: PostalAddress | None = None


@dataclass(frozen=True)
class Appointment:
    at: datetime
    place: str


@dataclass(frozen=True)
class StatusLink:
    """The citizen's status link (made by the referral service): the page's address and
    the code written on the receipt, grouped to be read aloud."""

    url: str
    code: str


# The moments of a referral the citizen is told of, and the `referrals` event of each.
MOMENTS: dict[str, Moment] = {
    "referral.routed": "sent",
    "referral.info_requested": "info_requested",
    "referral.answered": "answered",
    "referral.rejected": "rejected",
}


@dataclass(frozen=True)
class Step:
    """A moment of the citizen's request they are told of: sent to the operator,
    information asked, answered (with its outcome), or rejected by the operator (the
    adviser then re-routes it). `outcome` and the two messages belong to an answer only."""

    referral_id: uuid.UUID
    visit_id: uuid.UUID
    operator: str
    procedure: str
    site_id: str
    adviser_id: str
    occurred_at: datetime
    moment: Moment
    recipient: Recipient
    outcome: Outcome | None = None
    message_to_citizen: str | None = None
    message_to_adviser: str | None = None
    appointment: Appointment | None = None
    documents: tuple[str, ...] = ()
    due_at: datetime | None = None
    suggested_operator: str | None = None
    status_link: StatusLink | None = None

    @classmethod
    def from_event_data(cls, data: dict[str, Any], moment: Moment = "answered") -> Step:
        try:
            rcpt = data["recipient"]
            address = rcpt.get("postal_address")
            appointment = data.get("appointment")
            link = data.get("status_link")
            answered = moment == "answered"
            step = cls(
                referral_id=uuid.UUID(data["referral_id"]),
                visit_id=uuid.UUID(data["visit_id"]),
                operator=data["operator"],
                procedure=data["procedure"],
                site_id=data["site_id"],
                adviser_id=data["adviser_id"],
                occurred_at=parse_datetime(data["occurred_at"]),
                moment=moment,
                recipient=Recipient(
                    display_name=addressee(rcpt["display_name"]), channel=rcpt["channel"],
                    email=rcpt.get("email"), phone=rcpt.get("phone"),
                    postal_address=PostalAddress(**address) if address else None),
                outcome=data["outcome"] if answered else None,
                message_to_citizen=data["message_to_citizen"] if answered else None,
                message_to_adviser=data["message_to_adviser"] if answered else None,
                appointment=(Appointment(parse_datetime(appointment["at"]), appointment["place"])
                             if appointment else None),
                documents=tuple(data.get("documents") or ()),
                due_at=parse_datetime(data["due_at"]) if data.get("due_at") else None,
                suggested_operator=data.get("suggested_operator"),
                status_link=StatusLink(str(link["url"]), str(link["code"])) if link else None,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise UnusableStep(f"referral event data unusable: {exc!r}") from exc
        step.check()
        return step

    def check(self) -> None:
        if self.moment == "answered":
            if self.outcome not in OUTCOMES:
                raise UnusableStep(f"unknown outcome {self.outcome!r}")
            if self.outcome == "appointment_offered" and self.appointment is None:
                raise UnusableStep("outcome appointment_offered without an appointment")
            if self.outcome == "documents_needed" and not self.documents:
                raise UnusableStep("outcome documents_needed without documents")
        needed = {"email": self.recipient.email, "sms": self.recipient.phone,
                  "letter": self.recipient.postal_address}
        if self.recipient.channel in needed and not needed[self.recipient.channel]:
            raise UnusableStep(f"recipient channel {self.recipient.channel} without its contact detail")

    @property
    def wording(self) -> str:
        """The name of the words said at this moment (a template's): the answer's
        outcome, or the moment itself."""
        return self.outcome if self.moment == "answered" and self.outcome else self.moment


@dataclass(frozen=True)
class Notification:
    """One delivery to make: to the citizen by their channel, or to the adviser's screen.

    `status` is `pending` when a port must still carry it (e-mail, SMS), `sent` when
    storing it is delivering it (printable letter, adviser's screen), `failed` when it
    could not even be written (then no body, and a `reason`). `announce` says whether
    it is told on the `notifications` topic (the citizen's only)."""

    id: uuid.UUID
    referral_id: uuid.UUID
    cause_event_id: str
    adviser_id: str
    site_id: str
    recipient: RecipientKind
    channel: Channel
    status: Status
    body: str | None
    subject: str | None = None
    address: str | None = None
    reason: str | None = None  # why it failed, without personal data
    # An SMS to a citizen who also has a postal address: the letter to print instead
    # if the SMS fails for good (subject, body), kept sealed with the delivery.
    fallback_subject: str | None = None
    fallback_body: str | None = None

    @property
    def announce(self) -> bool:
        return self.recipient == "citizen"


def addressee(display_name: str) -> str:
    """The name a message is addressed to, on one line: control characters and line
    breaks become single spaces (a line break in a mail header would break the mail),
    blank becomes the neutral "Madame, Monsieur"."""
    spaced = "".join(" " if _breaks_a_line(c) else c for c in display_name)
    return " ".join(spaced.split()) or NEUTRAL_ADDRESSEE


def _breaks_a_line(char: str) -> bool:
    category = unicodedata.category(char)
    return category.startswith("C") or category in ("Zl", "Zp")


def delivery_id(cause_event_id: str, recipient: RecipientKind) -> uuid.UUID:
    return uuid.uuid5(_NAMESPACE, f"{cause_event_id}/{recipient}")


def fallback_letter_id(sms_id: uuid.UUID) -> uuid.UUID:
    """The id of the letter that replaces a failed SMS: one per SMS, whoever writes it
    and however often (a delivery report heard twice makes no second letter)."""
    return uuid.uuid5(_NAMESPACE, f"{sms_id}/letter")


def outcome_event_id(notification_id: uuid.UUID, name: str) -> str:
    """The `ce_id` of the notification.sent / notification.failed of a delivery."""
    return str(uuid.uuid5(_NAMESPACE, f"{notification_id}/{name}"))


def message_id(notification_id: uuid.UUID, domain: str) -> str:
    """The e-mail Message-ID: the same for every attempt of one delivery, so that a
    mail sent twice after a crash is recognisable as the same mail."""
    return f"<{notification_id}@{domain}>"


def parse_datetime(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
