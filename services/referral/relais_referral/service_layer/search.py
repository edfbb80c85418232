"""Finding referrals: by status, operator, site, overdue flag and reference prefix,
within the user's scope, newest first, a page at a time."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import asyncpg

from relais_kit import numbers
from relais_referral.domain.lifecycle import Status
from relais_referral.service_layer.scope import Scope

PAGE_SIZE = 50
STATUSES = tuple(s.value for s in Status)


@dataclass(frozen=True)
class Filters:
    statut: str = ""
    operateur: str = ""
    site: str = ""
    en_retard: bool = False
    reference: str = ""
    page: int = 1

    @classmethod
    def parse(cls, query: dict[str, str]) -> Filters:
        """The GET form's fields; what is not understood is ignored (a list, not a command)."""
        reference = query.get("reference", "").strip().lower()
        if len(reference) > 36 or any(c not in "0123456789abcdef-" for c in reference):
            reference = ""
        status = query.get("statut", "")
        return cls(
            statut=status if status in STATUSES else "",
            operateur=_code(query.get("operateur", "")),
            site=_code(query.get("site", "")),
            en_retard=query.get("en_retard", "") in ("1", "on", "oui", "true"),
            reference=reference,
            page=numbers.page(query.get("page")))

    def query(self, **changes: Any) -> dict[str, str]:
        """The filters as query parameters (for the pagination links), without the empty ones."""
        values = {**asdict(self), **changes}
        values["en_retard"] = "1" if values["en_retard"] else ""
        return {k: str(v) for k, v in values.items() if v and not (k == "page" and v == 1)}


def _code(raw: str) -> str:
    raw = raw.strip()
    return raw if 0 < len(raw) <= 100 and all(c.isalnum() or c in ".-_" for c in raw) else ""


async def search(conn: asyncpg.Connection, scope: Scope, filters: Filters) -> tuple[list[dict[str, Any]], bool]:
    """One page of referrals, and whether there is a next page."""
    where, args = scope.where("r.site_id", "s.parent_site_id", "s.department")
    for column, value in (("r.status", filters.statut), ("r.operator", filters.operateur),
                          ("r.site_id", filters.site)):
        if value:
            args.append(value)
            where.append(f"{column} = ${len(args)}")
    if filters.en_retard:
        where.append("r.overdue_at IS NOT NULL AND r.status IN ('routed', 'acknowledged', 'info_requested')")
    if filters.reference:
        args.append(filters.reference + "%")
        where.append(f"r.referral_id::text LIKE ${len(args)}")
    args += [PAGE_SIZE + 1, (filters.page - 1) * PAGE_SIZE]
    rows = await conn.fetch(
        "SELECT r.referral_id::text AS referral_id, r.operator, r.procedure, r.site_id, s.name AS site_name,"
        " r.status, r.requested_at, r.due_at, r.overdue_at, r.adviser_id"
        " FROM referrals r LEFT JOIN known_sites s ON s.site_id = r.site_id"
        f" WHERE {' AND '.join(where) or 'true'}"
        f" ORDER BY r.requested_at DESC, r.referral_id LIMIT ${len(args) - 1} OFFSET ${len(args)}", *args)
    return [dict(r) for r in rows[:PAGE_SIZE]], len(rows) > PAGE_SIZE


async def sites_in(conn: asyncpg.Connection, scope: Scope) -> list[dict[str, Any]]:
    """The sites a user may filter by."""
    where, args = scope.where("s.site_id", "s.parent_site_id", "s.department")
    rows = await conn.fetch(
        f"SELECT s.site_id, s.name FROM known_sites s WHERE {' AND '.join(where) or 'true'} ORDER BY s.name", *args)
    return [dict(r) for r in rows]
