"""Outbox rows set aside because they could not be published (relais_kit.outbox:
too large for the broker, refused by it for good, or no longer opening), and what ops
do with them once the cause is understood:

    python -m relais_kit.parked list    --service referral
    python -m relais_kit.parked retry   --service referral --id 1234 --reason "max.message.bytes raised"
    python -m relais_kit.parked discard --service referral --id 1234 --reason "superseded: INC-42"

`retry` hands the row back to the running relay (published next, before the rows of
its key that waited behind it); `discard` gives it up for good (those rows go on). Both
are kept in `outbox_actions` (who, when, why) and logged; nothing shown or logged holds
the event's data.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import asyncpg

from relais_kit.logs import configure_logging, log

Action = Literal["retry", "discard"]


class NotParked(Exception):
    """No parked row with that id (never parked, already retried, published or discarded)."""


@dataclass(frozen=True)
class ParkedRow:
    outbox_id: int
    topic: str
    event_type: str
    created_at: datetime
    parked_at: datetime
    reason: str
    waiting_behind: int  # rows of the same key held until this one is retried or discarded


async def parked_rows(conn: asyncpg.Connection) -> list[ParkedRow]:
    rows = await conn.fetch(
        "SELECT p.id, p.topic, p.event_type, p.created_at, p.parked_at, p.park_reason,"
        " (SELECT count(*) FROM outbox o WHERE o.record_key = p.record_key AND o.id > p.id"
        "  AND o.published_at IS NULL AND o.discarded_at IS NULL) AS waiting"
        " FROM outbox p WHERE p.parked_at IS NOT NULL AND p.published_at IS NULL AND p.discarded_at IS NULL"
        " ORDER BY p.id")
    return [ParkedRow(r["id"], r["topic"], r["event_type"], r["created_at"], r["parked_at"],
                      r["park_reason"] or "", r["waiting"]) for r in rows]


async def act(conn: asyncpg.Connection, action: Action, outbox_id: int, *, requested_by: str, reason: str) -> None:
    """Retries or discards one parked row, audited, in one transaction; then wakes the
    relay of the schema."""
    if not reason.strip():
        raise ValueError("a reason is needed (kept in the audit)")
    change = "parked_at = NULL, park_reason = NULL" if action == "retry" else "discarded_at = now()"
    async with conn.transaction():
        row = await conn.fetchrow(
            f"UPDATE outbox SET {change} WHERE id = $1 AND parked_at IS NOT NULL AND published_at IS NULL"
            " AND discarded_at IS NULL RETURNING topic, event_type", outbox_id)
        if row is None:
            raise NotParked(f"outbox row {outbox_id} is not parked (never parked, or already handled)")
        await conn.execute(
            "INSERT INTO outbox_actions (action, outbox_id, event_type, topic, requested_by, reason)"
            " VALUES ($1, $2, $3, $4, $5, $6)", action, outbox_id, row["event_type"], row["topic"],
            requested_by, reason)
        await conn.execute("SELECT pg_notify('relais_outbox_' || current_schema(), '')")
    log.warning("outbox_parked_row_" + ("retried" if action == "retry" else "discarded"), outbox_id=outbox_id,
                event_type=row["event_type"], topic=row["topic"], requested_by=requested_by, reason=reason)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m relais_kit.parked", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=("list", "retry", "discard"))
    parser.add_argument("--service", required=True,
                        help="whose outbox (its schema: referral, sites, notifications, desk_<operator>)")
    parser.add_argument("--id", type=int, help="the parked row (retry, discard)")
    parser.add_argument("--reason", help="why (retry, discard; kept in the audit)")
    args = parser.parse_args(argv)
    if args.action != "list" and (args.id is None or not (args.reason or "").strip()):
        parser.error(f"{args.action} needs --id and --reason")
    return args


async def run(argv: list[str] | None = None) -> int:
    from relais_kit.db import create_pool
    from relais_kit.settings import PlatformSettings

    args = parse_args(argv)
    pool = await create_pool(PlatformSettings().database_url, args.service, min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn:
            if await conn.fetchval("SELECT to_regclass('outbox_actions') IS NULL"):
                print(f"parked: schema {args.service} has no outbox of this version "
                      "(start the service once to migrate it)", file=sys.stderr)
                return 2
            if args.action == "list":
                rows = await parked_rows(conn)
                for r in rows:
                    print(f"{r.outbox_id}\t{r.topic}\t{r.event_type}\tparked {r.parked_at.isoformat()}"
                          f"\t{r.waiting_behind} waiting behind\t{r.reason}")
                print(f"{len(rows)} parked row(s) in schema {args.service}")
                return 0
            await act(conn, args.action, args.id, requested_by=getpass.getuser(), reason=args.reason)
    except NotParked as exc:
        print(f"parked: {exc}", file=sys.stderr)
        return 2
    finally:
        await pool.close()
    print(f"outbox row {args.id} of schema {args.service}: "
          + ("handed back to the relay" if args.action == "retry" else "discarded"))
    return 0


def main() -> None:
    configure_logging("parked")
    sys.exit(asyncio.run(run()))


if __name__ == "__main__":
    main()
