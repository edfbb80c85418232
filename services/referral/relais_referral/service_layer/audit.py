"""The audit trail: every view and change of a referral, and every view of a visit's
page (the citizen's identity and contact) — who, when, what, through which channel —
written in the caller's transaction, so that a change and its audit row stand or fall
together. Identifiers and action names only, never personal data."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

import asyncpg

from relais_kit import numbers
from relais_kit.auth import User
from relais_referral.service_layer.scope import Scope

ACTIONS = ("view", "refer", "provide_info", "cancel", "close", "reroute", "view_visit", "complete_visit",
           "print_receipt", "renew_status_code")
CHANNELS = ("ui", "api")
PAGE_SIZE = 50

# The channel of the request being served: the JSON API unless a page says otherwise.
_channel: ContextVar[str] = ContextVar("audit_channel", default="api")


async def ui_channel() -> None:
    """A router dependency for the pages (async: it runs in the request's own task)."""
    _channel.set("ui")


async def api_channel() -> None:
    """The same for the JSON API: set on every request, never inherited from another
    request served in the same task."""
    _channel.set("api")


def channel() -> str:
    return _channel.get()


async def record(conn: asyncpg.Connection, user: User, referral_id: str, action: str) -> None:
    await conn.execute(
        "INSERT INTO audit (user_id, role, referral_id, action, channel) VALUES ($1, $2, $3, $4, $5)",
        user.user_id, user.role, referral_id, action, _channel.get())


async def visit_viewed(conn: asyncpg.Connection, user: User, visit_id: str) -> None:
    await conn.execute(
        "INSERT INTO audit (user_id, role, visit_id, action, channel) VALUES ($1, $2, $3, 'view_visit', $4)",
        user.user_id, user.role, visit_id, _channel.get())


async def visit_completed(conn: asyncpg.Connection, user: User, visit_id: str) -> None:
    """The citizen's record on the visit completed (birth date, contact) before a referral."""
    await conn.execute(
        "INSERT INTO audit (user_id, role, visit_id, action, channel) VALUES ($1, $2, $3, 'complete_visit', $4)",
        user.user_id, user.role, visit_id, _channel.get())


@dataclass(frozen=True)
class JournalFilters:
    referral_id: str = ""
    user_id: str = ""
    day: date | None = None
    page: int = 1

    @classmethod
    def parse(cls, query: dict[str, str]) -> tuple[JournalFilters, dict[str, str]]:
        """The filters of the journal's GET form, and a French message per bad field."""
        errors: dict[str, str] = {}
        referral_id = query.get("demande", "").strip().lower()
        if referral_id and not _is_uuid_prefix(referral_id):
            errors["demande"] = "Indiquez une référence de demande (chiffres et lettres a à f, tirets)."
            referral_id = ""
        day = None
        if raw := query.get("date", "").strip():
            day = _day(raw)
            if day is None:
                errors["date"] = "Indiquez une date au format JJ/MM/AAAA."
        user_id = query.get("utilisateur", "").strip()[:100]
        return cls(referral_id, user_id, day, numbers.page(query.get("page"))), errors


def _day(raw: str) -> date | None:
    """`2026-11-22` (what a date field sends) or `22/11/2026` (what a person types)."""
    try:
        if "/" in raw:
            parts = raw.split("/")
            if len(parts) != 3:
                return None
            day, month, year = (numbers.bounded(p, 1, 9999) for p in parts)
            return date(year, month, day) if day and month and year else None
        return date.fromisoformat(raw)
    except ValueError:
        return None


def _is_uuid_prefix(text: str) -> bool:
    return len(text) <= 36 and all(c in "0123456789abcdef-" for c in text)


async def journal(conn: asyncpg.Connection, scope: Scope, filters: JournalFilters,
                  tz: Any) -> tuple[list[dict[str, Any]], bool]:
    """One page of audit rows, newest first, and whether there is a next page: the views
    and changes of the referrals, and the views of the visits, of the scope."""
    where, args = scope.where("coalesce(r.site_id, v.site_id)", "s.parent_site_id", "s.department")
    if filters.referral_id:
        args.append(filters.referral_id + "%")
        where.append(f"a.referral_id::text LIKE ${len(args)}")
    if filters.user_id:
        args.append(filters.user_id)
        where.append(f"a.user_id = ${len(args)}")
    if filters.day:
        start = datetime.combine(filters.day, time(), tz)
        args += [start, start + timedelta(days=1)]
        where.append(f"a.at >= ${len(args) - 1} AND a.at < ${len(args)}")
    args += [PAGE_SIZE + 1, (filters.page - 1) * PAGE_SIZE]
    rows = await conn.fetch(
        "SELECT a.id, a.at, a.user_id, a.role, a.referral_id::text AS referral_id,"
        " a.visit_id::text AS visit_id, a.action, a.channel, coalesce(r.site_id, v.site_id) AS site_id"
        " FROM audit a LEFT JOIN referrals r ON r.referral_id = a.referral_id"
        " LEFT JOIN visits v ON v.visit_id = a.visit_id"
        " LEFT JOIN known_sites s ON s.site_id = coalesce(r.site_id, v.site_id)"
        f" WHERE {' AND '.join(where) or 'true'}"
        f" ORDER BY a.id DESC LIMIT ${len(args) - 1} OFFSET ${len(args)}", *args)
    return [dict(r) for r in rows[:PAGE_SIZE]], len(rows) > PAGE_SIZE
