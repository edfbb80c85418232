"""A failed SMS falls back to a letter: when an SMS to a citizen fails for good (the
delivery loop gives up, e.g. the number replied STOP, or the operator reports it never
reached the telephone) and the citizen has a postal address, the letter written with
the SMS is stored to print, and the SMS's reason says so on the adviser's timeline.

Pure: the letter's delivery and the words, no I/O."""

from __future__ import annotations

import uuid

from relais_notifications.domain.model import Notification, fallback_letter_id

LETTER_READY = " — un courrier est prêt à imprimer"


def failed_reason(reason: str, *, letter: bool) -> str:
    """The failed SMS's reason, saying when a letter replaces it."""
    return reason + LETTER_READY if letter else reason


def letter_instead(*, sms_id: uuid.UUID, referral_id: uuid.UUID, cause_event_id: str, adviser_id: str,
                   site_id: str, subject: str | None, body: str) -> Notification:
    """The letter's delivery: to the citizen, for the same event, referral, adviser and
    site as the SMS; delivered by being stored (the adviser prints it), as any letter."""
    return Notification(id=fallback_letter_id(sms_id), referral_id=referral_id, cause_event_id=cause_event_id,
                        adviser_id=adviser_id, site_id=site_id, recipient="citizen", channel="letter",
                        status="sent", body=body, subject=subject)
