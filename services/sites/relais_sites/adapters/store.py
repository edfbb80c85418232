"""The sites table, through one asyncpg connection (the caller's transaction)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import asyncpg

from relais_sites.domain import Address, Site, SiteRecord, Slot
from relais_sites.domain.events import slot_data

_COLUMNS = ("site_id, name, kind, street, postcode, city, department, operators, parent_site_id,"
            " schedule, created_at, updated_at, retired_at")


@dataclass(frozen=True)
class SiteFilter:
    operator: str | None = None
    kind: str | None = None
    department: str | None = None
    parent_site_id: str | None = None
    include_retired: bool = False


class SiteStore:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def lock(self, *site_ids: str) -> None:
        """Serialises the writers of these sites until the end of the transaction
        (also for ids not in the table yet). Sorted, so two writers never deadlock."""
        for site_id in sorted(set(site_ids)):
            await self._conn.execute(
                "SELECT pg_advisory_xact_lock(hashtext('relais.sites'), hashtext($1))", site_id)

    async def get(self, site_id: str) -> SiteRecord | None:
        row = await self._conn.fetchrow(f"SELECT {_COLUMNS} FROM sites WHERE site_id = $1", site_id)
        return _record(row) if row else None

    async def active_children(self, site_id: str) -> list[str]:
        rows = await self._conn.fetch(
            "SELECT site_id FROM sites WHERE parent_site_id = $1 AND retired_at IS NULL"
            " ORDER BY site_id", site_id)
        return [r["site_id"] for r in rows]

    async def save(self, record: SiteRecord) -> None:
        site = record.site
        await self._conn.execute(
            f"INSERT INTO sites ({_COLUMNS})"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb, $11, $12, $13)"
            " ON CONFLICT (site_id) DO UPDATE SET name = excluded.name, kind = excluded.kind,"
            " street = excluded.street, postcode = excluded.postcode, city = excluded.city,"
            " department = excluded.department, operators = excluded.operators,"
            " parent_site_id = excluded.parent_site_id, schedule = excluded.schedule,"
            " updated_at = excluded.updated_at, retired_at = excluded.retired_at",
            site.site_id, site.name, site.kind, site.address.street, site.address.postcode,
            site.address.city, site.department, list(site.operators), site.parent_site_id,
            json.dumps([slot_data(s) for s in site.schedule], ensure_ascii=False),
            record.created_at, record.updated_at, record.retired_at,
        )

    async def list(self, where: SiteFilter) -> list[SiteRecord]:
        rows = await self._conn.fetch(
            f"SELECT {_COLUMNS} FROM sites"
            " WHERE ($1::text IS NULL OR $1 = ANY (operators))"
            " AND ($2::text IS NULL OR kind = $2)"
            " AND ($3::text IS NULL OR department = $3)"
            " AND ($4::text IS NULL OR parent_site_id = $4)"
            " AND ($5 OR retired_at IS NULL)"
            " ORDER BY site_id",
            where.operator, where.kind, where.department, where.parent_site_id, where.include_retired)
        return [_record(r) for r in rows]


def _record(row: asyncpg.Record) -> SiteRecord:
    site = Site(
        site_id=row["site_id"], name=row["name"], kind=row["kind"],
        address=Address(postcode=row["postcode"], city=row["city"], street=row["street"]),
        department=row["department"], operators=tuple(row["operators"]),
        schedule=tuple(_slot(s) for s in json.loads(row["schedule"])),
        parent_site_id=row["parent_site_id"],
    )
    return SiteRecord(site, created_at=row["created_at"], updated_at=row["updated_at"],
                      retired_at=row["retired_at"])


def _slot(data: dict[str, Any]) -> Slot:
    return Slot(weekday=data["weekday"], opens=data["opens"], closes=data["closes"],
                place=data.get("place"))
