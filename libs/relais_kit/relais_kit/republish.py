"""Re-publication from the outbox: PostgreSQL is the system of record, the outbox keeps
every event it published (`RELAIS_RETENTION_OUTBOX_DAYS`), and consumers drop an event
they already handled by its `ce_id`, so publishing one again is always safe.

Re-publishing a row = marking it unpublished again: the service's own outbox relay
then publishes it, in outbox order with whatever is new, through its one publisher per
schema (the per-referral order on a topic stays the outbox order). Nothing here talks
to Kafka: the service must be running for the events to leave.

The ops command, audited (a JSON log line and a row of `republish_runs`: who, why,
which range, how many rows; never an event's content):

    python -m relais_kit.republish --service referral --since 2026-12-01T08:00Z \\
        --until 2026-12-01T09:00Z --reason "operator caf lost its inbox" [--dry-run]
    python -m relais_kit.republish --service referral --referral <id> --reason ... [--topic ...]

`--since`/`--until` select by the event's own time (`occurred_at`), which never
changes; the automatic recovery (relais_kit.recovery) selects by publication time."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime

import asyncpg

from relais_kit.logs import configure_logging, log

AUTOMATIC = "relais_kit.recovery"


class SelectionError(ValueError):
    """The rows to re-publish are not selected precisely enough (the message says how)."""


@dataclass(frozen=True)
class Selection:
    """Which outbox rows: by event time (`since` ≤ occurred_at < `until`), by publication
    time (`published_since`, for the automatic recovery), by subject (a referral, visit
    or site id) and/or topics. Only rows already published: the others are on their way."""

    since: datetime | None = None
    until: datetime | None = None
    published_since: datetime | None = None
    subject: str | None = None
    topics: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        for name in ("since", "until", "published_since"):
            moment = getattr(self, name)
            if moment is not None and moment.tzinfo is None:
                raise SelectionError(f"--{name.replace('_', '-')} needs a time zone (e.g. 2026-12-01T08:00Z)")
        if self.since and self.until and self.until <= self.since:
            raise SelectionError("--until must come after --since")
        if self.subject is None and self.since is None and self.published_since is None:
            raise SelectionError("say what to re-publish: --since (with --until if wanted) or --referral")

    def where(self) -> tuple[str, list[object]]:
        """The SQL condition and its arguments."""
        clauses: list[str] = ["published_at IS NOT NULL"]
        args: list[object] = []
        for sql, value in (("occurred_at >= ${}", self.since), ("occurred_at < ${}", self.until),
                           ("published_at >= ${}", self.published_since)):
            if value is not None:
                args.append(value)
                clauses.append(sql.format(len(args)))
        if self.subject is not None:
            args.append(self.subject)
            clauses.append(f"(subject = ${len(args)} OR record_key = ${len(args)})")
        if self.topics:
            args.append(list(self.topics))
            clauses.append(f"topic = ANY(${len(args)}::text[])")
        return " AND ".join(clauses), args


async def republish(conn: asyncpg.Connection, selection: Selection, *, reason: str, requested_by: str,
                    dry_run: bool = False) -> int:
    """Marks the selected rows unpublished (unless `dry_run`), records the run, logs it;
    returns how many rows. In the caller's transaction if it has one."""
    if not reason.strip():
        raise SelectionError("--reason is required: the audit says why")
    where, args = selection.where()
    async with conn.transaction():
        if dry_run:
            rows = int(await conn.fetchval(f"SELECT count(*) FROM outbox WHERE {where}", *args))
        else:
            status = await conn.execute(f"UPDATE outbox SET published_at = NULL WHERE {where}", *args)
            rows = int(status.split()[-1])
            await conn.execute("SELECT pg_notify('relais_outbox_' || current_schema(), '')")
        await conn.execute(
            "INSERT INTO republish_runs (requested_by, reason, since, until, subject, topics, dry_run, rows)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            requested_by, reason, selection.since or selection.published_since, selection.until,
            selection.subject, list(selection.topics) or None, dry_run, rows)
    log.info("republish_dry_run" if dry_run else "republished", requested_by=requested_by, reason=reason,
             since=_iso(selection.since), until=_iso(selection.until),
             published_since=_iso(selection.published_since), subject=selection.subject,
             topics=list(selection.topics), rows=rows)
    return rows


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def parse_time(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no time zone (e.g. 2026-12-01T08:00Z)")
    return moment.astimezone(UTC)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m relais_kit.republish", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--service", required=True,
                        help="the service whose outbox to re-publish (its schema: referral, sites, "
                             "notifications, desk_<operator>)")
    parser.add_argument("--since", type=parse_time, help="events that occurred at or after this time")
    parser.add_argument("--until", type=parse_time, help="... and before this time")
    parser.add_argument("--referral", help="only the events of this referral (or visit, or site) id")
    parser.add_argument("--topic", action="append", default=[], help="only these topics (repeatable)")
    parser.add_argument("--reason", required=True, help="why (kept in the audit)")
    parser.add_argument("--dry-run", action="store_true", help="count, change nothing (audited too)")
    return parser.parse_args(argv)


async def run(argv: list[str] | None = None) -> int:
    from relais_kit.db import create_pool
    from relais_kit.settings import PlatformSettings

    args = parse_args(argv)
    try:
        selection = Selection(since=args.since, until=args.until, subject=args.referral,
                              topics=tuple(args.topic))
    except SelectionError as exc:
        print(f"republish: {exc}", file=sys.stderr)
        return 2
    settings = PlatformSettings()
    pool = await create_pool(settings.database_url, args.service, min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn:
            if await conn.fetchval("SELECT to_regclass('republish_runs') IS NULL"):
                print(f"republish: schema {args.service} has no outbox of this version "
                      "(start the service once to migrate it)", file=sys.stderr)
                return 2
            rows = await republish(conn, selection, reason=args.reason, requested_by=getpass.getuser(),
                                   dry_run=args.dry_run)
    except SelectionError as exc:
        print(f"republish: {exc}", file=sys.stderr)
        return 2
    finally:
        await pool.close()
    verb = "would be re-published (dry run)" if args.dry_run else "marked for re-publication by the running relay"
    print(f"{rows} event(s) of schema {args.service} {verb}")
    return 0


def main() -> None:
    configure_logging("republish")
    sys.exit(asyncio.run(run()))


if __name__ == "__main__":
    main()
