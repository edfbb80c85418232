"""What every audited action of the console needs: somewhere to write the audit
(service_layer.audit bound to the database, or a fake in the tests) and a reason."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

# audit(user_id, action, target, reason, details): ids only in target and details.
Audit = Callable[[str, str, str, str, Mapping[str, Any]], Awaitable[None]]


class ReasonRequired(ValueError):
    """An audited action without a reason."""


def reason_of(text: str | None) -> str:
    """The reason given, trimmed; ReasonRequired when there is none."""
    why = (text or "").strip()
    if not why:
        raise ReasonRequired("a reason is needed (kept in the audit)")
    return why
