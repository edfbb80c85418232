"""The data of the events the registry publishes, shaped exactly as
`schemas/events/site.upserted.v1.json` and `site.retired.v1.json`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from relais_sites.domain.model import Site, SiteRecord, Slot

UPSERTED = "site.upserted"
RETIRED = "site.retired"
TOPIC = "sites"


def upserted_data(record: SiteRecord) -> dict[str, Any]:
    site = record.site
    data: dict[str, Any] = {
        "site_id": site.site_id,
        "name": site.name,
        "kind": str(site.kind),
        "address": address_data(site),
        "department": site.department,
        "operators": [str(code) for code in site.operators],
        "schedule": [slot_data(slot) for slot in site.schedule],
        "updated_at": record.updated_at.isoformat(),
    }
    if site.parent_site_id is not None:
        data["parent_site_id"] = site.parent_site_id
    return data


def address_data(site: Site) -> dict[str, str]:
    address: dict[str, str] = {}
    if site.address.street is not None:
        address["street"] = site.address.street
    address["postcode"] = site.address.postcode
    address["city"] = site.address.city
    return address


def slot_data(slot: Slot) -> dict[str, Any]:
    data: dict[str, Any] = {"weekday": slot.weekday, "opens": slot.opens, "closes": slot.closes}
    if slot.place is not None:
        data["place"] = slot.place
    return data


def retired_data(site_id: str, retired_at: datetime) -> dict[str, Any]:
    return {"site_id": site_id, "retired_at": retired_at.isoformat()}
