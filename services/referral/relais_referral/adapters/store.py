"""PostgreSQL reads and writes of the referral service; callers own the transaction.
The citizen's data (identity and contact, summaries, timeline details) is sealed with
the vault on the way in and opened on the way out: nothing else reads those columns."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import date, datetime
from typing import Any

import asyncpg
from asyncpg import Connection as Conn

from relais_kit.vault import Vault
from relais_referral.adapters.sealed import REFERRAL_SUMMARY, TIMELINE_DETAIL, VISIT_CITIZEN
from relais_referral.domain import identity
from relais_referral.domain.inboxes import AWAITING_OPERATOR, UNACKNOWLEDGED, InboxFigures
from relais_referral.domain.lifecycle import Status
from relais_referral.domain.model import Citizen, PostalAddress, Referral, Site, Visit


def _citizen_json(citizen: Citizen) -> str:
    data = asdict(citizen)
    if citizen.birth_date:
        data["birth_date"] = citizen.birth_date.isoformat()
    return json.dumps(data, ensure_ascii=False)


def _citizen(raw: str) -> Citizen:
    data = json.loads(raw)
    if data.get("birth_date"):
        data["birth_date"] = date.fromisoformat(data["birth_date"])
    if data.get("postal_address"):
        data["postal_address"] = PostalAddress(**data["postal_address"])
    return Citizen(**data)


def _lookup_indexes(vault: Vault, citizen: Citizen) -> tuple[str, list[str] | None]:
    keys = identity.lookup_keys(citizen)
    contacts = [vault.blind_index(kind, text) for kind, text in keys.contacts]
    return vault.blind_index(*keys.identity), contacts or None


async def add_visit(conn: Conn, vault: Vault, visit: Visit) -> None:
    assert visit.citizen is not None
    identity_index, contact_index = _lookup_indexes(vault, visit.citizen)
    await conn.execute(
        "INSERT INTO visits (visit_id, site_id, adviser_id, channel, citizen, opened_at, identity_index,"
        " contact_index, name_index) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        visit.visit_id, visit.site_id, visit.adviser_id, visit.channel,
        vault.seal(_citizen_json(visit.citizen), VISIT_CITIZEN.context(visit.visit_id)), visit.opened_at,
        identity_index, contact_index, name_index(vault, visit.citizen))


async def update_visit_citizen(conn: Conn, vault: Vault, visit_id: str, citizen: Citizen) -> None:
    """The citizen's record completed (birth date, contact): sealed again, and the
    lookup indexes that depend on it recomputed (the names do not change)."""
    identity_index, contact_index = _lookup_indexes(vault, citizen)
    await conn.execute(
        "UPDATE visits SET citizen = $2, identity_index = $3, contact_index = $4"
        " WHERE visit_id = $1 AND citizen IS NOT NULL",
        visit_id, vault.seal(_citizen_json(citizen), VISIT_CITIZEN.context(visit_id)), identity_index, contact_index)


def name_index(vault: Vault, citizen: Citizen) -> list[str]:
    return [vault.blind_index(identity.NAME_PREFIX, p) for p in identity.name_prefixes(citizen)]


async def note_operator_reference(conn: Conn, vault: Vault, referral_id: str, reference: str) -> None:
    await conn.execute("UPDATE referrals SET operator_reference_index = $2 WHERE referral_id = $1",
                       referral_id, vault.blind_index(identity.OPERATOR_REFERENCE, reference))


async def index_missing(conn: Conn, vault: Vault, batch: int = 500) -> int:
    """Fills the name and operator-reference indexes of the rows written before they
    existed (migration 010); returns how many rows it filled. Idempotent."""
    done = 0
    while rows := await conn.fetch(
            "SELECT * FROM visits WHERE name_index IS NULL AND citizen IS NOT NULL LIMIT $1", batch):
        for row in rows:
            visit = visit_of(row, vault)
            assert visit.citizen is not None
            await conn.execute("UPDATE visits SET name_index = $2 WHERE visit_id = $1",
                               visit.visit_id, name_index(vault, visit.citizen))
        done += len(rows)
    entries = await conn.fetch(
        "SELECT t.id, t.referral_id::text AS referral_id, t.detail FROM referral_timeline t"
        " JOIN referrals r ON r.referral_id = t.referral_id"
        " WHERE t.event = 'acknowledged' AND r.operator_reference_index IS NULL AND r.anonymised_at IS NULL")
    for entry in entries:
        reference = detail_of(entry, vault).get("case_reference")
        if reference:
            await note_operator_reference(conn, vault, entry["referral_id"], str(reference))
            done += 1
    return done


def visit_of(row: asyncpg.Record, vault: Vault) -> Visit:
    """A `visits` row (`SELECT *`) as a Visit, its citizen opened (None once erased)."""
    visit_id = str(row["visit_id"])
    citizen = vault.open_optional(row["citizen"], VISIT_CITIZEN.context(visit_id))
    return Visit(visit_id, row["site_id"], row["adviser_id"], row["channel"],
                 _citizen(citizen) if citizen is not None else None, row["opened_at"], row["anonymised_at"])


async def get_visit(conn: Conn, vault: Vault, visit_id: str) -> Visit | None:
    row = await conn.fetchrow("SELECT * FROM visits WHERE visit_id = $1", visit_id)
    return visit_of(row, vault) if row else None


def referral_of(row: asyncpg.Record, vault: Vault) -> Referral:
    """A `referrals` row (`SELECT *`) as a Referral, its summary opened (None once erased)."""
    referral_id = str(row["referral_id"])
    return Referral(
        referral_id=referral_id, visit_id=str(row["visit_id"]),
        operator=row["operator"], procedure=row["procedure"], site_id=row["site_id"],
        adviser_id=row["adviser_id"],
        summary=vault.open_optional(row["summary"], REFERRAL_SUMMARY.context(referral_id)),
        consent_given_at=row["consent_given_at"], requested_at=row["requested_at"],
        status=Status(row["status"]), due_at=row["due_at"],
        supersedes_referral_id=str(row["supersedes_referral_id"]) if row["supersedes_referral_id"] else None,
        overdue_at=row["overdue_at"], anonymised_at=row["anonymised_at"],
    )


async def add_referral(conn: Conn, vault: Vault, r: Referral) -> None:
    await conn.execute(
        "INSERT INTO referrals (referral_id, visit_id, operator, procedure, site_id, adviser_id,"
        " summary, consent_given_at, requested_at, status, due_at, supersedes_referral_id)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        r.referral_id, r.visit_id, r.operator, r.procedure, r.site_id, r.adviser_id,
        vault.seal_optional(r.summary, REFERRAL_SUMMARY.context(r.referral_id)),
        r.consent_given_at, r.requested_at, r.status.value, r.due_at, r.supersedes_referral_id)


async def get_referral(conn: Conn, vault: Vault, referral_id: str, *, for_update: bool = False) -> Referral | None:
    lock = " FOR UPDATE" if for_update else ""
    row = await conn.fetchrow(f"SELECT * FROM referrals WHERE referral_id = $1{lock}", referral_id)
    return referral_of(row, vault) if row else None


async def save_status(conn: Conn, r: Referral) -> None:
    await conn.execute(
        "UPDATE referrals SET status = $2, due_at = $3, updated_at = now() WHERE referral_id = $1",
        r.referral_id, r.status.value, r.due_at)


async def close(conn: Conn, r: Referral, outcome: str) -> None:
    await conn.execute(
        "UPDATE referrals SET status = $2, closed_outcome = $3, updated_at = now() WHERE referral_id = $1",
        r.referral_id, r.status.value, outcome)


async def claim_overdue(conn: Conn, vault: Vault, at: datetime, limit: int) -> list[Referral]:
    """Referrals past their due time without an answer, not yet flagged; locked until
    the caller's transaction ends, skipped by any other instance meanwhile."""
    rows = await conn.fetch(
        "SELECT * FROM referrals WHERE overdue_at IS NULL AND due_at < $1"
        " AND status IN ('routed', 'acknowledged', 'info_requested')"
        " ORDER BY due_at LIMIT $2 FOR UPDATE SKIP LOCKED", at, limit)
    return [referral_of(r, vault) for r in rows]


async def flag_overdue(conn: Conn, referral_id: str, at: datetime) -> None:
    await conn.execute("UPDATE referrals SET overdue_at = $2 WHERE referral_id = $1", referral_id, at)


# Literal statuses (from the lifecycle's enum), so that the planner uses the partial
# index `referrals_awaiting_operator` (migrations/009): a handful of rows, not the table.
_AWAITING_OPERATOR = ", ".join(f"'{status.value}'" for status in AWAITING_OPERATOR)


async def awaiting_operators(conn: Conn) -> list[InboxFigures]:
    """Per operator with referrals waiting on it, in one query: how many are flagged
    overdue, how many are routed and not acknowledged yet, and the age of the oldest of
    those in seconds (by the database's clock: `updated_at` is stamped by it at each
    move, and a routed referral has made none since its routing)."""
    rows = await conn.fetch(
        "SELECT operator,"
        " count(*) FILTER (WHERE overdue_at IS NOT NULL) AS overdue,"
        " count(*) FILTER (WHERE status = $1) AS unacknowledged,"
        " coalesce(extract(epoch FROM now() - min(updated_at) FILTER (WHERE status = $1)), 0)"
        "   AS oldest_unacknowledged_age_s"
        f" FROM referrals WHERE status IN ({_AWAITING_OPERATOR}) GROUP BY operator",
        UNACKNOWLEDGED.value)
    return [InboxFigures(r["operator"], r["overdue"], r["unacknowledged"], float(r["oldest_unacknowledged_age_s"]))
            for r in rows]


async def add_to_timeline(conn: Conn, vault: Vault, referral_id: str, event: str, status: Status | None,
                          actor: str, at: datetime, detail: dict[str, Any] | None = None) -> None:
    # The entry's number first: its detail is sealed for that row alone.
    entry = await conn.fetchval("SELECT nextval(pg_get_serial_sequence('referral_timeline', 'id'))")
    await conn.execute(
        "INSERT INTO referral_timeline (id, referral_id, event, status, actor, at, detail)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7)",
        entry, referral_id, event, status.value if status else None, actor, at,
        vault.seal_json(detail or {}, TIMELINE_DETAIL.context(entry)))


def detail_of(row: asyncpg.Record, vault: Vault) -> dict[str, Any]:
    """A timeline row's detail (its `id` and `detail` columns), opened."""
    opened = vault.open_json(row["detail"], TIMELINE_DETAIL.context(row["id"]))
    return dict(opened) if isinstance(opened, dict) else {}


async def timeline(conn: Conn, vault: Vault, referral_id: str) -> list[dict[str, Any]]:
    """The referral's timeline in order: id, event, status, actor, at, detail."""
    rows = await conn.fetch(
        "SELECT id, event, status, actor, at, detail FROM referral_timeline"
        " WHERE referral_id = $1 ORDER BY id", referral_id)
    return [{**dict(r), "detail": detail_of(r, vault)} for r in rows]


def _site(row: asyncpg.Record) -> Site:
    return Site(row["site_id"], row["name"], row["kind"], row["postcode"], row["city"],
                row["department"], frozenset(row["operators"]), row["parent_site_id"], row["retired"])


async def get_site(conn: Conn, site_id: str) -> Site | None:
    row = await conn.fetchrow("SELECT * FROM known_sites WHERE site_id = $1", site_id)
    return _site(row) if row else None


async def upsert_site(conn: Conn, site: Site, updated_at: datetime) -> None:
    await conn.execute(
        "INSERT INTO known_sites (site_id, name, kind, postcode, city, department, operators,"
        " parent_site_id, retired, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, false, $9)"
        " ON CONFLICT (site_id) DO UPDATE SET name = $2, kind = $3, postcode = $4, city = $5,"
        " department = $6, operators = $7, parent_site_id = $8, retired = false, updated_at = $9",
        site.site_id, site.name, site.kind, site.postcode, site.city, site.department,
        sorted(site.operators), site.parent_site_id, updated_at)


async def retire_site(conn: Conn, site_id: str, at: datetime) -> None:
    await conn.execute(
        "UPDATE known_sites SET retired = true, updated_at = $2 WHERE site_id = $1", site_id, at)
