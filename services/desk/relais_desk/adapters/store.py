"""The desk's tables (its own schema), through asyncpg. Every function takes the
connection of the caller's transaction."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from relais_desk.domain.cases import Status
from relais_desk.domain.inbox import RoutedCase


@dataclass(frozen=True)
class Case(RoutedCase):
    """A case as the desk keeps it: what the routed event said, and where it stands."""
    operator: str
    received_at: datetime
    status: Status
    overdue_since: datetime | None
    case_reference: str | None

    def overdue(self, at: datetime) -> bool:
        return self.overdue_since is not None or (self.status not in _DONE and self.due_at <= at)


_DONE = frozenset({Status.ANSWERED, Status.REJECTED, Status.CANCELLED})


@dataclass(frozen=True)
class TimelineEntry:
    at: datetime
    kind: str
    actor: str | None
    detail: dict[str, Any]
    personal_data: str | None


def _case(row: asyncpg.Record) -> Case:
    return Case(
        referral_id=str(row["referral_id"]), operator=row["operator"], visit_id=str(row["visit_id"]),
        procedure=row["procedure"], site_id=row["site_id"], site=json.loads(row["site"]),
        adviser_id=row["adviser_id"], adviser=json.loads(row["adviser"]), consent=json.loads(row["consent"]),
        routed_at=row["routed_at"], received_at=row["received_at"], due_at=row["due_at"],
        status=Status(row["status"]), overdue_since=row["overdue_since"], case_reference=row["case_reference"],
        personal_data=row["personal_data"])


async def add_case(conn: asyncpg.Connection, operator: str, case: RoutedCase, at: datetime) -> bool:
    """False when the referral already has a case (the same routing seen again)."""
    inserted = await conn.fetchval(
        "INSERT INTO cases (referral_id, operator, visit_id, procedure, site_id, site, adviser_id, adviser,"
        " consent, routed_at, received_at, due_at, status, personal_data, updated_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 'new', $13, $11)"
        " ON CONFLICT (referral_id) DO NOTHING RETURNING true",
        case.referral_id, operator, case.visit_id, case.procedure, case.site_id, json.dumps(case.site),
        case.adviser_id, json.dumps(case.adviser), json.dumps(case.consent), case.routed_at, at, case.due_at,
        case.personal_data)
    return bool(inserted)


async def case_for_update(conn: asyncpg.Connection, referral_id: str) -> Case | None:
    row = await conn.fetchrow("SELECT * FROM cases WHERE referral_id = $1 FOR UPDATE", referral_id)
    return _case(row) if row else None


async def get_case(conn: asyncpg.Connection, referral_id: str) -> Case | None:
    row = await conn.fetchrow("SELECT * FROM cases WHERE referral_id = $1", referral_id)
    return _case(row) if row else None


async def set_status(conn: asyncpg.Connection, referral_id: str, status: Status, at: datetime,
                     *, case_reference: str | None = None) -> None:
    await conn.execute(
        "UPDATE cases SET status = $2, updated_at = $3, case_reference = coalesce($4, case_reference)"
        " WHERE referral_id = $1", referral_id, status.value, at, case_reference)


async def flag_overdue(conn: asyncpg.Connection, referral_id: str, since: datetime, at: datetime) -> None:
    await conn.execute(
        "UPDATE cases SET overdue_since = coalesce(overdue_since, $2), updated_at = $3 WHERE referral_id = $1",
        referral_id, since, at)


async def add_entry(conn: asyncpg.Connection, referral_id: str, at: datetime, kind: str, *,
                    actor: str | None = None, detail: dict[str, Any] | None = None,
                    personal_data: str | None = None) -> None:
    await conn.execute(
        "INSERT INTO case_events (referral_id, at, kind, actor, detail, personal_data)"
        " VALUES ($1, $2, $3, $4, $5, $6)",
        referral_id, at, kind, actor, json.dumps(detail or {}, ensure_ascii=False), personal_data)


async def timeline(conn: asyncpg.Connection, referral_id: str) -> list[TimelineEntry]:
    rows = await conn.fetch(
        "SELECT at, kind, actor, detail, personal_data FROM case_events WHERE referral_id = $1 ORDER BY id",
        referral_id)
    return [TimelineEntry(r["at"], r["kind"], r["actor"], json.loads(r["detail"]), r["personal_data"])
            for r in rows]


async def inbox(conn: asyncpg.Connection, *, status: Status | None, limit: int = 50,
                offset: int = 0) -> tuple[list[Case], int]:
    """One page of cases, the open ones first, the most urgent first; and how many in all."""
    wanted = status.value if status else None
    rows = await conn.fetch(
        "SELECT * FROM cases WHERE ($1::text IS NULL OR status = $1)"
        " ORDER BY (status IN ('answered', 'rejected', 'cancelled')), due_at, received_at, referral_id"
        " LIMIT $2 OFFSET $3", wanted, limit, offset)
    total = await conn.fetchval("SELECT count(*) FROM cases WHERE ($1::text IS NULL OR status = $1)", wanted)
    return [_case(r) for r in rows], int(total)


async def note_view(conn: asyncpg.Connection, referral_id: str, user_id: str) -> None:
    await conn.execute("INSERT INTO case_views (referral_id, user_id) VALUES ($1, $2)", referral_id, user_id)


async def get_expert(conn: asyncpg.Connection, user_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM experts WHERE user_id = $1", user_id)


async def put_expert(conn: asyncpg.Connection, user_id: str, password_hash: str, display_name: str) -> None:
    await conn.execute(
        "INSERT INTO experts (user_id, password_hash, display_name) VALUES ($1, $2, $3)"
        " ON CONFLICT (user_id) DO UPDATE SET password_hash = $2, display_name = $3",
        user_id, password_hash, display_name)
