"""The desk's tables (its own schema), through asyncpg. Every function takes the
connection of the caller's transaction. The experts' texts (`case_events.detail`) and
the operator's case reference are sealed at rest with the vault of the desk's schema;
the citizen's data stays the JWE received, which only the operator's key opens."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from relais_desk.domain.cases import CLOSED, Status
from relais_desk.domain.inbox import RoutedCase
from relais_kit.resealing import SealedColumn
from relais_kit.retention import Step
from relais_kit.vault import Vault

ENTRY_DETAIL = SealedColumn("case_events", "detail", row_id="id")
CASE_REFERENCE = SealedColumn("cases", "case_reference", row_id="referral_id")
SEALED = (ENTRY_DETAIL, CASE_REFERENCE)


@dataclass(frozen=True)
class Case(RoutedCase):
    """A case as the desk keeps it: what the routed event said, and where it stands."""
    personal_data: str | None  # type: ignore[assignment]  # None once erased (`erased_at`)
    operator: str
    received_at: datetime
    status: Status
    overdue_since: datetime | None
    case_reference: str | None
    erased_at: datetime | None  # its personal data erased at the end of its retention period

    def overdue(self, at: datetime) -> bool:
        return self.overdue_since is not None or (self.status not in CLOSED and self.due_at <= at)


@dataclass(frozen=True)
class TimelineEntry:
    at: datetime
    kind: str
    actor: str | None
    detail: dict[str, Any]
    personal_data: str | None


def _case(row: asyncpg.Record, vault: Vault) -> Case:
    return Case(
        referral_id=str(row["referral_id"]), operator=row["operator"], visit_id=str(row["visit_id"]),
        procedure=row["procedure"], site_id=row["site_id"], site=json.loads(row["site"]),
        adviser_id=row["adviser_id"], adviser=json.loads(row["adviser"]), consent=json.loads(row["consent"]),
        routed_at=row["routed_at"], received_at=row["received_at"], due_at=row["due_at"],
        status=Status(row["status"]), overdue_since=row["overdue_since"],
        case_reference=vault.open_optional(row["case_reference"], CASE_REFERENCE.context(row["referral_id"])),
        personal_data=row["personal_data"], erased_at=row["erased_at"])


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


async def case_for_update(conn: asyncpg.Connection, vault: Vault, referral_id: str) -> Case | None:
    row = await conn.fetchrow("SELECT * FROM cases WHERE referral_id = $1 FOR UPDATE", referral_id)
    return _case(row, vault) if row else None


async def get_case(conn: asyncpg.Connection, vault: Vault, referral_id: str) -> Case | None:
    row = await conn.fetchrow("SELECT * FROM cases WHERE referral_id = $1", referral_id)
    return _case(row, vault) if row else None


async def set_status(conn: asyncpg.Connection, vault: Vault, referral_id: str, status: Status, at: datetime,
                     *, case_reference: str | None = None) -> None:
    """A closed status also starts the retention period (`closed_at`, set once)."""
    sealed = vault.seal_optional(case_reference, CASE_REFERENCE.context(referral_id))
    await conn.execute(
        "UPDATE cases SET status = $2, updated_at = $3, case_reference = coalesce($4, case_reference),"
        " closed_at = CASE WHEN $5 THEN coalesce(closed_at, $3) END"
        " WHERE referral_id = $1", referral_id, status.value, at, sealed, status in CLOSED)


async def flag_overdue(conn: asyncpg.Connection, referral_id: str, since: datetime, at: datetime) -> None:
    await conn.execute(
        "UPDATE cases SET overdue_since = coalesce(overdue_since, $2), updated_at = $3 WHERE referral_id = $1",
        referral_id, since, at)


async def add_entry(conn: asyncpg.Connection, vault: Vault, referral_id: str, at: datetime, kind: str, *,
                    actor: str | None = None, detail: dict[str, Any] | None = None,
                    personal_data: str | None = None) -> None:
    entry_id = await conn.fetchval("SELECT nextval(pg_get_serial_sequence('case_events', 'id'))")
    await conn.execute(
        "INSERT INTO case_events (id, referral_id, at, kind, actor, detail, personal_data)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7)",
        entry_id, referral_id, at, kind, actor, vault.seal_json(detail or {}, ENTRY_DETAIL.context(entry_id)),
        personal_data)


async def timeline(conn: asyncpg.Connection, vault: Vault, referral_id: str) -> list[TimelineEntry]:
    """Oldest first; an erased entry keeps its time, kind and actor only."""
    rows = await conn.fetch(
        "SELECT id, at, kind, actor, detail, personal_data FROM case_events WHERE referral_id = $1 ORDER BY id",
        referral_id)
    return [TimelineEntry(r["at"], r["kind"], r["actor"],
                          vault.open_json(r["detail"], ENTRY_DETAIL.context(r["id"])) if r["detail"] else {},
                          r["personal_data"])
            for r in rows]


async def inbox(conn: asyncpg.Connection, vault: Vault, *, status: Status | None, limit: int = 50,
                offset: int = 0) -> tuple[list[Case], int]:
    """One page of cases, the open ones first, the most urgent first; and how many in all."""
    wanted = status.value if status else None
    rows = await conn.fetch(
        "SELECT * FROM cases WHERE ($1::text IS NULL OR status = $1)"
        " ORDER BY (status IN ('answered', 'rejected', 'cancelled')), due_at, received_at, referral_id"
        " LIMIT $2 OFFSET $3", wanted, limit, offset)
    total = await conn.fetchval("SELECT count(*) FROM cases WHERE ($1::text IS NULL OR status = $1)", wanted)
    return [_case(r, vault) for r in rows], int(total)


# Literal statuses (from the domain's enum): the planner may use `cases_by_status`.
_CLOSED = ", ".join(sorted(f"'{status.value}'" for status in CLOSED))


async def count_open(conn: asyncpg.Connection) -> int:
    """The cases not answered, rejected nor cancelled yet: the experts' work in hand."""
    return int(await conn.fetchval(f"SELECT count(*) FROM cases WHERE status NOT IN ({_CLOSED})"))


async def note_view(conn: asyncpg.Connection, referral_id: str, user_id: str) -> None:
    await conn.execute("INSERT INTO case_views (referral_id, user_id) VALUES ($1, $2)", referral_id, user_id)


async def get_expert(conn: asyncpg.Connection, user_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM experts WHERE user_id = $1", user_id)


async def put_expert(conn: asyncpg.Connection, user_id: str, password_hash: str, display_name: str) -> None:
    """Creates the account, or resets its password and name (a closed account stays closed)."""
    await conn.execute(
        "INSERT INTO experts (user_id, password_hash, display_name) VALUES ($1, $2, $3)"
        " ON CONFLICT (user_id) DO UPDATE SET password_hash = $2, display_name = $3",
        user_id, password_hash, display_name)


async def set_disabled(conn: asyncpg.Connection, user_id: str, disabled: bool) -> bool:
    """Closes (or reopens) the account; False when there is no such expert."""
    status = await conn.execute(
        "UPDATE experts SET disabled_at = CASE WHEN $2 THEN coalesce(disabled_at, now()) END WHERE user_id = $1",
        user_id, disabled)
    return status.endswith(" 1")


async def expert_active(conn: asyncpg.Connection, user_id: str) -> bool:
    return bool(await conn.fetchval(
        "SELECT true FROM experts WHERE user_id = $1 AND disabled_at IS NULL", user_id))


# -- retention -------------------------------------------------------------------------------

def retention_steps(period: timedelta) -> list[tuple[str, Step]]:
    """The desk's steps of the retention job: a case closed for longer than `period`
    loses its personal data (the citizen's JWE, the operator's reference), then its
    timeline does (the adviser's sealed information, the experts' texts)."""
    async def closed_cases(conn: asyncpg.Connection, at: datetime) -> int:
        status = await conn.execute(
            "UPDATE cases SET personal_data = NULL, case_reference = NULL, erased_at = $1"
            " WHERE erased_at IS NULL AND closed_at <= $2", at, at - period)
        return int(status.split()[-1])

    async def their_timelines(conn: asyncpg.Connection, at: datetime) -> int:
        status = await conn.execute(
            "UPDATE case_events e SET personal_data = NULL, detail = NULL FROM cases c"
            " WHERE c.referral_id = e.referral_id AND c.erased_at IS NOT NULL"
            " AND (e.personal_data IS NOT NULL OR e.detail IS NOT NULL)")
        return int(status.split()[-1])

    return [("desk_closed_cases", closed_cases), ("desk_case_events", their_timelines)]
