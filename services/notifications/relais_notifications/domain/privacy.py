"""The citizen's rights over what this service holds: erasure (the content of every
delivery of the referrals named is wiped, the facts — who, which channel, when, with
what result — stay) and access (every delivery of those referrals, content included,
for the one-off key of the ops command that asked)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any

SERVICE = "notifications"
KIND = "deliveries"
ERASED_REASON = "données personnelles effacées"

_NAMESPACE = uuid.UUID("0b6c2f8e-7a51-4d0e-9f3b-707269766163")


def answer_event_id(request_id: str, name: str) -> str:
    """The `ce_id` of this service's answer (`personal_data.erased` or `…access_answered`)
    to a request: the same request handled twice gives the same answer id."""
    return str(uuid.uuid5(_NAMESPACE, f"{request_id}/{name}"))


def erased(request_id: str, at: datetime, count: int) -> dict[str, Any]:
    return {"request_id": request_id, "service": SERVICE, "erased_at": at.isoformat(),
            "counts": {KIND: count}}


def access_records(request_id: str, deliveries: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """The plaintext of an access answer (schemas/personal/personal_data.access_answered):
    each delivery with its content opened, dates in RFC 3339 (fields: README)."""
    return {"request_id": request_id, "service": SERVICE,
            "records": {KIND: [_record(d) for d in deliveries]}}


_FIELDS = ("delivery_id", "referral_id", "recipient", "channel", "status", "address", "subject", "body",
           "fallback_subject", "fallback_body", "reason", "created_at", "sent_at", "failed_at", "erased_at")


def _record(delivery: dict[str, Any]) -> dict[str, Any]:
    return {field: _json(delivery.get(field)) for field in _FIELDS}


def _json(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def answered(request_id: str, at: datetime, sealed: str) -> dict[str, Any]:
    return {"request_id": request_id, "service": SERVICE, "answered_at": at.isoformat(),
            "personal_data": sealed}
