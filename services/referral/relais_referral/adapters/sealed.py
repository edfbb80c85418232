"""The columns of the referral service that hold personal data, sealed at rest
(`relais_kit.vault`): declared once, for the store that seals and opens them and for
the kit's loop that re-seals them under the current key. The kit seals `outbox.data`."""

from __future__ import annotations

from relais_kit.resealing import SealedColumn

# The citizen's identity, birth date, contact and postal address (JSON).
VISIT_CITIZEN = SealedColumn("visits", "citizen", row_id="visit_id")
# The citizen's request in the adviser's words.
REFERRAL_SUMMARY = SealedColumn("referrals", "summary", row_id="referral_id")
# Operators' questions and messages, appointments, reasons in words (JSON).
TIMELINE_DETAIL = SealedColumn("referral_timeline", "detail")
# Why ops erased a citizen's data, as they wrote it.
PRIVACY_NOTE = SealedColumn("privacy_requests", "note", row_id="request_id")
# The citizen's live status code (a bearer secret: it opens the status page), kept to be
# printed again and sent in the citizen's messages; found by its blind index.
STATUS_CODE = SealedColumn("status_links", "code", row_id="referral_id")

SEALED = (VISIT_CITIZEN, REFERRAL_SUMMARY, TIMELINE_DETAIL, PRIVACY_NOTE, STATUS_CODE)
