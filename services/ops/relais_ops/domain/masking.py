"""What the console shows of a dead letter's value before anyone asks for more: its
shape, its ids, types and times, and no personal data.

Every string and number of the JSON value is replaced by a mask unless the key it sits
under names an identifier, a code or a time of the platform (referral_id, operator,
procedure, status, occurred_at...): names, birth dates, addresses, messages, emails,
phones, and whatever an unknown field holds are masked. A value that is not JSON is
masked whole. Inbox events carry the citizen's details sealed for the operator (a JWE
string, masked here as any other string)."""

from __future__ import annotations

import json
from typing import Any

MASK = "•••"

# Keys whose scalar values (or list of scalars) are shown: ids, codes, times.
SHOWN_KEYS = frozenset({
    "referral_id", "referral_ids", "visit_id", "visit_ids", "site_id", "parent_site_id", "place_id",
    "supersedes_referral_id", "cause_event_id", "notification_id", "request_id",
    "operator", "operators", "suggested_operator", "inbox_topic", "procedure", "status", "kind", "channel",
    "outcome", "reason_code", "scope", "type", "event_type", "specversion", "id", "source", "subject",
})
# Times of the platform (`occurred_at`, `due_at`, `sent_at`...), and `overdue_since`.
TIME_SUFFIXES = ("_at", "_since")


def shown_key(key: str | None) -> bool:
    return key is not None and (key in SHOWN_KEYS or key.endswith(TIME_SUFFIXES))


def masked(data: Any, key: str | None = None) -> Any:
    """`data` with every string and number masked, except under a shown key.
    Booleans and nulls stay (consent given or not, an empty field)."""
    if isinstance(data, dict):
        return {k: masked(v, str(k)) for k, v in data.items()}
    if isinstance(data, list):
        return [masked(item, key) for item in data]
    if isinstance(data, bool) or data is None:
        return data
    if isinstance(data, str | int | float):
        return data if shown_key(key) else MASK
    return MASK


def masked_value(value: bytes | None) -> str:
    """The record value as pretty JSON with personal data masked; never raises."""
    if value is None:
        return "(pas de valeur)"
    try:
        data = json.loads(value.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return f"(valeur non JSON de {len(value)} octets, masquée)"
    return json.dumps(masked(data), indent=2, ensure_ascii=False)
