"""Ops commands on a citizen's personal data, with the referral service's settings
(DATABASE_URL, RELAIS_REFERRAL_DB_SCHEMA, KAFKA_BOOTSTRAP_SERVERS, RELAIS_DATA_KEYS_FILE).
Each is recorded in `privacy_requests` (who, when, what, the ids and counts, never the
identity): the audit of these reads and erasures.

    find       the visits and referrals held about a citizen (ids, dates, site, status)
    access     the right of access: everything held, in a JSON file (mode 0600), with
               the other services' parts, asked for on `privacy` and sealed for a
               one-off key of this command
    erase      the right to erasure: refused while a referral is in progress (the adviser
               cancels or closes it first); then erased as the retention job does, and
               every other service asked to erase its copy (`--wait` for their answers)
    retention  the retention job, once, now (`--now`)

The citizen is named by --family-name, --given-name and --birth-date (YYYY-MM-DD; left
out: the visits recorded without one), or --email, or --phone, or --visit ID, or
--referral ID (that referral's visit).

    python -m relais_referral.privacy find --by ops.martin --email nadia.dupont@example.fr
    python -m relais_referral.privacy access --by ops.martin --family-name Dupont \\
        --given-name Nadia --birth-date 1961-05-14 --out nadia-dupont.json
    python -m relais_referral.privacy erase --by ops.martin --phone "06 12 34 56 78" \\
        --reason "courrier du 2 avril" --wait
    python -m relais_referral.privacy retention --now --by ops.martin

Exit status: 0 done; 1 nothing found (or the retention job runs elsewhere); 2 refused
(erase while a referral is in progress, bad arguments); 3 done, but a service did not
answer in time (named on the output and in the export)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import asyncpg

from relais_kit import retention as kit_retention
from relais_kit.contract import ContractViolation, load_contract
from relais_kit.db import create_pool
from relais_kit.envelope import now
from relais_kit.logs import configure_logging
from relais_kit.runtime import open_vault
from relais_kit.sealing import OperatorKeys, SealingError
from relais_kit.topics import load_topics
from relais_referral.adapters import privacy_store
from relais_referral.adapters.privacy_answers import Answers
from relais_referral.adapters.privacy_store import PrivacyRequest
from relais_referral.domain.catalogue import load_catalogue
from relais_referral.service_layer import privacy, retention
from relais_referral.service_layer.context import Context
from relais_referral.service_layer.privacy import Held, Selector
from relais_referral.settings import ReferralSettings

DONE, NOTHING, REFUSED, INCOMPLETE = 0, 1, 2, 3


@dataclass(frozen=True)
class Tools:
    settings: ReferralSettings
    pool: asyncpg.Pool
    ctx: Context


@asynccontextmanager
async def tools(settings: ReferralSettings) -> AsyncIterator[Tools]:
    vault = open_vault(settings, settings.db_schema)
    ctx = Context(load_contract(settings.schemas_dir), load_catalogue(), OperatorKeys({}), vault)
    pool = await create_pool(settings.database_url, settings.db_schema, max_size=2)
    try:
        async with pool.acquire() as conn:
            if await conn.fetchval("SELECT to_regclass('privacy_requests')") is None:
                raise SystemExit(f"schema {settings.db_schema}: the referral service has not run on this "
                                 "database yet (its migrations create the tables)")
        yield Tools(settings, pool, ctx)
    finally:
        await pool.close()


def _record(args: argparse.Namespace, request_id: str, at: datetime, found: Held,
            counts: dict[str, int], note: str | None = None) -> PrivacyRequest:
    return PrivacyRequest(request_id, args.command, args.by, at, _selector(args).kind, found.referral_ids,
                          found.visit_ids, counts, note)


def _sizes(found: Held) -> dict[str, int]:
    return {"visits": len(found.visits), "referrals": len(found.referrals)}


async def find(t: Tools, args: argparse.Namespace, out: IO[str]) -> int:
    request_id, at = str(uuid.uuid4()), now()
    async with t.pool.acquire() as conn, conn.transaction():
        found = await privacy.held(conn, await privacy.visits_of(conn, t.ctx.vault, _selector(args)))
        await privacy_store.record_request(conn, t.ctx.vault, _record(args, request_id, at, found, _sizes(found)))
    _list(found, out)
    return DONE if found.visits else NOTHING


async def access(t: Tools, args: argparse.Namespace, out: IO[str]) -> int:
    request_id, at = str(uuid.uuid4()), now()
    services = t.settings.privacy_answerers
    key = privacy.reply_key(request_id)
    with _new_private_file(args.out) as export:
        async with Answers(t.settings.kafka_bootstrap_servers, t.ctx.contract,
                           "personal_data.access_answered") as answers:
            async with t.pool.acquire() as conn, conn.transaction():
                found = await privacy.held(conn, await privacy.visits_of(conn, t.ctx.vault, _selector(args)))
                ours = await privacy.everything_held(conn, t.ctx.vault, found)
                if found.visits:
                    await privacy.ask_access(conn, t.ctx, request_id, found, key, at)
                await privacy_store.record_request(conn, t.ctx.vault,
                                                   _record(args, request_id, at, found, _sizes(found)))
            got = await answers.wait([request_id], services, args.timeout) if found.visits else {}
        theirs: dict[str, Any] = {}
        outcome: dict[str, str] = {}
        for service in services if found.visits else ():
            event = got.get((request_id, service))
            if event is None:
                outcome[service] = "no answer"
                continue
            try:
                theirs[service] = {"answered_at": event.data["answered_at"],
                                   "records": privacy.open_answer(t.ctx, event, key)}
                outcome[service] = "answered"
            except (SealingError, ContractViolation) as exc:
                outcome[service] = f"unreadable answer ({exc})"
        json.dump({"request_id": request_id, "requested_at": at, "requested_by": args.by, "referral": ours,
                   "services": theirs, "not_answered": {s: o for s, o in outcome.items() if o != "answered"}},
                  export, ensure_ascii=False, indent=2, default=_json_value)
    async with t.pool.acquire() as conn:
        await privacy_store.finish_request(conn, request_id, now(), answers=outcome)
    _list(found, out)
    print(f"export: {args.out} (request {request_id})", file=out)
    return _outcome(outcome, out) if found.visits else NOTHING


async def erase(t: Tools, args: argparse.Namespace, out: IO[str]) -> int:
    request_id, at = str(uuid.uuid4()), now()
    services = t.settings.privacy_answerers if args.wait else []
    async with AsyncExitStack() as stack:
        answers = await stack.enter_async_context(Answers(
            t.settings.kafka_bootstrap_servers, t.ctx.contract, "personal_data.erased")) if args.wait else None
        async with t.pool.acquire() as conn, conn.transaction():
            found = await privacy.held(conn, await privacy.visits_of(conn, t.ctx.vault, _selector(args)),
                                       for_update=True)
            busy = found.in_progress()
            erased = None
            if found.visits and not busy:
                erased = await privacy.erase(conn, t.ctx, found.groups(), at, privacy.ERASURE_REQUEST, request_id)
            await privacy_store.record_request(conn, t.ctx.vault, _record(
                args, request_id, at, found, erased.counts if erased else {"in_progress": len(busy)}, args.reason))
        if erased is None:
            print("nothing held about this citizen" if not found.visits else "\n".join(
                f"refused: referral {r['referral_id']} is {r['status']}: the adviser cancels or closes it first"
                for r in busy), file=out)
            return NOTHING if not found.visits else REFUSED
        print(f"erased: {erased.counts['visits']} visit(s), {erased.counts['referrals']} referral(s), "
              f"{erased.counts['outbox_rows']} published event copies (request {request_id})", file=out)
        got = await answers.wait(erased.requests, services, args.timeout) if answers else {}
    outcome = {s: "erased" if all((r, s) in got for r in erased.requests) else "no answer" for s in services}
    async with t.pool.acquire() as conn:
        await privacy_store.finish_request(conn, request_id, now(), answers=outcome)
    return _outcome(outcome, out)


async def run_retention(t: Tools, args: argparse.Namespace, out: IO[str]) -> int:
    s = t.settings
    kit_periods = kit_retention.Periods(timedelta(days=s.retention_outbox_days),
                                        timedelta(days=s.retention_processed_events_days))
    kit_retention.check_periods(kit_periods, load_topics(s.topics_file))
    steps = [*kit_retention.kit_steps(kit_periods), *retention.steps(t.ctx, retention.periods_of(s))]
    request_id, at = str(uuid.uuid4()), now()
    counts = await kit_retention.run_once(t.pool, steps, trigger="command", at=at)
    if counts is None:
        print("the retention job is running in another process: try again later", file=out)
        return NOTHING
    async with t.pool.acquire() as conn:
        await privacy_store.record_request(conn, t.ctx.vault, PrivacyRequest(
            request_id, "retention", args.by, at, "all", counts=counts))
    for name, count in counts.items():
        print(f"{name}\t{count}", file=out)
    return DONE


def _outcome(outcome: dict[str, str], out: IO[str]) -> int:
    for service, what in outcome.items():
        print(f"{service}: {what}", file=out)
    return DONE if all(o in ("answered", "erased") for o in outcome.values()) else INCOMPLETE


def _list(found: Held, out: IO[str]) -> None:
    print(f"{len(found.visits)} visit(s), {len(found.referrals)} referral(s) held", file=out)
    for v in found.visits:
        print(f"visit {v['visit_id']}  opened {_when(v['opened_at'])}  {v['site_name'] or v['site_id']}"
              f"  adviser {v['adviser_id']}  {v['resolution'] or 'open'}{_erased(v)}", file=out)
        for r in (r for r in found.referrals if r["visit_id"] == v["visit_id"]):
            print(f"  referral {r['referral_id']}  {r['operator']} {r['procedure']}  requested "
                  f"{_when(r['requested_at'])}  {r['status']}"
                  f"{' (' + r['closed_outcome'] + ')' if r['closed_outcome'] else ''}{_erased(r)}", file=out)


def _when(at: datetime | None) -> str:
    return at.strftime("%Y-%m-%d %H:%M") if at else "-"


def _erased(row: dict[str, Any]) -> str:
    return f"  personal data erased {_when(row['anonymised_at'])}" if row["anonymised_at"] else ""


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON")


@contextmanager
def _new_private_file(path: Path) -> Iterator[IO[str]]:
    """A new file only its owner reads (never an existing one overwritten); removed if
    what should fill it failed."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            yield file
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def _selector(args: argparse.Namespace) -> Selector:
    if args.family_name or args.given_name or args.birth_date:
        return Selector("identity", family_name=args.family_name, given_name=args.given_name,
                        birth_date=args.birth_date)
    for kind in ("email", "phone", "visit", "referral"):
        if getattr(args, kind):
            return Selector(kind, value=getattr(args, kind))
    raise ValueError("no selector")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m relais_referral.privacy", description=__doc__,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = top.add_subparsers(dest="command", required=True)
    for name in ("find", "access", "erase"):
        command = commands.add_parser(name)
        _common(command)
        command.add_argument("--family-name")
        command.add_argument("--given-name")
        command.add_argument("--birth-date", type=date.fromisoformat, help="YYYY-MM-DD")
        command.add_argument("--email")
        command.add_argument("--phone")
        command.add_argument("--visit", type=_uuid, help="a visit id")
        command.add_argument("--referral", type=_uuid, help="a referral id")
        if name == "access":
            command.add_argument("--out", type=Path, required=True, help="the export (a new file, mode 0600)")
        if name == "erase":
            command.add_argument("--reason", required=True, help="why (kept sealed with the request)")
            command.add_argument("--wait", action="store_true", help="wait for every service's `erased`")
        if name != "find":
            command.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the answers")
    job = commands.add_parser("retention")
    _common(job)
    job.add_argument("--now", action="store_true", required=True, help="run the retention job once, now")
    return top


def _common(command: argparse.ArgumentParser) -> None:
    command.add_argument("--by", required=True, help="who asks (recorded with the request)")


def _uuid(text: str) -> str:
    return str(uuid.UUID(text))


def check(args: argparse.Namespace) -> str | None:
    """What is wrong with the selector, if anything."""
    if args.command == "retention":
        return None if args.by.strip() else "--by must name who asks"
    identity = [args.family_name, args.given_name, args.birth_date]
    named = [any(identity), *(bool(getattr(args, k)) for k in ("email", "phone", "visit", "referral"))]
    if sum(named) != 1:
        return ("name the citizen one way: --family-name/--given-name/--birth-date, --email, --phone, --visit "
                "or --referral")
    if any(identity) and not all(n and n.strip() for n in identity[:2]):
        return "--family-name and --given-name go together (with --birth-date if the visits recorded one)"
    return None if args.by.strip() else "--by must name who asks"


COMMANDS = {"find": find, "access": access, "erase": erase, "retention": run_retention}


async def run(argv: Sequence[str], settings: ReferralSettings | None = None, out: IO[str] = sys.stdout) -> int:
    top = parser()
    args = top.parse_args(argv)
    if problem := check(args):
        top.error(problem)
    async with tools(settings or ReferralSettings()) as t:
        return await COMMANDS[args.command](t, args, out)


def main() -> None:
    configure_logging("referral-privacy", "warning")
    raise SystemExit(asyncio.run(run(sys.argv[1:])))


if __name__ == "__main__":
    main()
