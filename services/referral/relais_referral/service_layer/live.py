"""The live feed of a referral's page (server-sent events): an event each time its
timeline grows. Each open page asks PostgreSQL for the timeline's last entry about
once a second (one indexed read; works across instances and survives database
restarts), sends a comment every 15 s so proxies keep the connection, stops when the
browser leaves, ends when the session does (signed out, account closed: checked at
each heartbeat) and after 10 minutes (the page then offers to refresh)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg

from relais_kit import numbers
from relais_kit.db import CONNECTION_LOST

POLL_S = 1.0
HEARTBEAT_S = 15.0
LASTING_S = 600.0
RETRY_MS = 5000
LAST_SEQ = 2**63 - 1  # the timeline's bigserial


@dataclass(frozen=True)
class Latest:
    """Where a referral's timeline stands: its last entry's number and the status."""

    seq: int
    status: str
    overdue: bool


async def latest(conn: asyncpg.Connection, referral_id: str) -> Latest | None:
    row = await conn.fetchrow(
        "SELECT r.status, r.overdue_at IS NOT NULL AS overdue,"
        " (SELECT coalesce(max(t.id), 0) FROM referral_timeline t WHERE t.referral_id = r.referral_id) AS seq"
        " FROM referrals r WHERE r.referral_id = $1", referral_id)
    return Latest(row["seq"], row["status"], row["overdue"]) if row else None


def frame(event: str, data: dict[str, Any], event_id: int | None = None) -> str:
    lines = [f"event: {event}"]
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines.append(f"data: {json.dumps(data, ensure_ascii=False)}")
    return "\n".join(lines) + "\n\n"


def since(last_event_id: str | None, query: str | None) -> int:
    """Where the browser stands: its `Last-Event-ID` on a reconnection, else the page's."""
    for raw in (last_event_id, query):
        if (seq := numbers.bounded(raw, 0, LAST_SEQ)) is not None:
            return seq
    return 0


async def changes(read: Callable[[], Awaitable[Latest | None]], seen: int,
                  disconnected: Callable[[], Awaitable[bool]],
                  signed_in: Callable[[], Awaitable[bool]] | None = None, *, poll_s: float = POLL_S,
                  heartbeat_s: float = HEARTBEAT_S, lasting_s: float = LASTING_S,
                  clock: Callable[[], float] = time.monotonic,
                  sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep) -> AsyncIterator[str]:
    """The stream's text: an event `chronologie` (id = the last entry's number) when the
    timeline grew past `seen`, heartbeats, and `fin` when the time is up or, at a
    heartbeat, `signed_in()` says the session ended."""
    yield f"retry: {RETRY_MS}\n\n"
    start = beat = clock()
    while clock() - start < lasting_s:
        if await disconnected():
            return
        try:
            now = await read()
        except CONNECTION_LOST:  # the database restarts: the page waits, the feed goes on
            now = None
        if now is not None and now.seq > seen:
            seen = now.seq
            yield frame("chronologie", {"seq": now.seq, "status": now.status, "overdue": now.overdue}, now.seq)
            beat = clock()
        elif clock() - beat >= heartbeat_s:
            if signed_in is not None and not await signed_in():
                break
            yield ": toujours là\n\n"
            beat = clock()
        await sleep(poll_s)
    yield frame("fin", {})


def reader(pool: asyncpg.Pool, referral_id: str) -> Callable[[], Awaitable[Latest | None]]:
    async def read() -> Latest | None:
        async with pool.acquire(timeout=5) as conn:
            return await latest(conn, referral_id)
    return read


# --- Today's list: the same feed, for every referral of the user's sites ------------------

async def latest_seq_of_sites(conn: asyncpg.Connection, sites: list[str] | None) -> int:
    """The last timeline entry of the referrals of `sites` (None: every site). Read
    newest first along the timeline's key: cheap while the scope's referrals move."""
    found = await conn.fetchval(
        "SELECT t.id FROM referral_timeline t JOIN referrals r ON r.referral_id = t.referral_id"
        " WHERE $1::text[] IS NULL OR r.site_id = ANY($1::text[]) ORDER BY t.id DESC LIMIT 1", sites)
    return int(found or 0)


def sites_reader(pool: asyncpg.Pool, sites: list[str] | None) -> Callable[[], Awaitable[Latest | None]]:
    async def read() -> Latest | None:
        async with pool.acquire(timeout=5) as conn:
            return Latest(await latest_seq_of_sites(conn, sites), "", False)
    return read
