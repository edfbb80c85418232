"""What this service knows of a France Services site: enough to decide who may read its
deliveries (the site it depends on, its department) and to sign a printed letter (its
name and postal address), from the `sites` topic."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from relais_notifications.domain.model import parse_datetime


@dataclass(frozen=True)
class SiteState:
    """A site as of `updated_at`: a newer state replaces an older one, never the reverse
    (a compacted topic read again from its start replays old states)."""

    site_id: str
    updated_at: datetime
    parent_site_id: str | None = None
    department: str | None = None
    retired: bool = False
    name: str | None = None
    street: str | None = None
    postcode: str | None = None
    city: str | None = None

    @classmethod
    def upserted(cls, data: dict[str, Any]) -> SiteState:
        address = data.get("address") or {}
        return cls(data["site_id"], parse_datetime(data["updated_at"]),
                   parent_site_id=data.get("parent_site_id"), department=data["department"],
                   name=data.get("name"), street=address.get("street"), postcode=address.get("postcode"),
                   city=address.get("city"))

    @classmethod
    def retired_from(cls, data: dict[str, Any]) -> SiteState:
        return cls(data["site_id"], parse_datetime(data["retired_at"]), retired=True)
