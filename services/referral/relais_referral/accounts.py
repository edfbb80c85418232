"""The agents' accounts, for ops (`python -m relais_referral.accounts`):

    add USER_ID --role adviser --site SITE_ID --name "Sophie Martin" [--email ADDRESS]
        [--department 47 (a supervisor's)] [--password-stdin] [--oidc-issuer URL --oidc-subject SUB]
                        opens the account, or updates it (a change of role, site or
                        department ends its sessions at once). Without --password-stdin
                        an account signs in through ProConnect only (a new one), or
                        keeps its password (an existing one). --oidc-subject binds it
                        beforehand to the agent's ProConnect `sub` (issuer: RELAIS_OIDC_ISSUER
                        unless given); else their first ProConnect sign-in binds it
                        through a verified e-mail address.
    disable USER_ID     closes the account: no sign-in any more, every session ended now
    enable USER_ID      reopens it
    list                every account: role, site or department, e-mail, ProConnect, closed

The database is `DATABASE_URL`, the schema the service's (RELAIS_REFERRAL_DB_SCHEMA);
the service's migrations are applied first, so accounts can be opened before its
first start."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from collections.abc import Sequence

import asyncpg

from relais_kit import passwords
from relais_kit.db import create_pool, migrate
from relais_kit.sessions import SESSIONS_MIGRATIONS
from relais_referral.app import MIGRATIONS
from relais_referral.service_layer import accounts
from relais_referral.settings import ReferralSettings


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m relais_referral.accounts", description=__doc__,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = top.add_subparsers(dest="command", required=True)
    add = commands.add_parser("add", help="open or update an account")
    add.add_argument("user_id")
    add.add_argument("--role", required=True, choices=("adviser", "supervisor", "ops"))
    add.add_argument("--name", required=True, help="the name shown in the pages and the timeline")
    add.add_argument("--site", help="an adviser's home site (site_id)")
    add.add_argument("--department", help="a supervisor's department (47, 2A, 974…)")
    add.add_argument("--email", help="their work address (ProConnect's first sign-in finds the account by it)")
    add.add_argument("--password-stdin", action="store_true",
                     help="read the password from standard input (asked for on a terminal)")
    add.add_argument("--oidc-subject", help="the agent's `sub` at the identity provider")
    add.add_argument("--oidc-issuer", help="the identity provider (default: RELAIS_OIDC_ISSUER)")
    for name in ("disable", "enable"):
        commands.add_parser(name).add_argument("user_id")
    commands.add_parser("list", help="every account")
    return top


def _password() -> str:
    password = getpass.getpass("Password: ") if sys.stdin.isatty() else sys.stdin.readline().rstrip("\n")
    if len(password) < 12:
        raise accounts.InvalidAccount({"password": "12 characters at least"})
    return password


async def _add(conn: asyncpg.Connection, args: argparse.Namespace, settings: ReferralSettings) -> str:
    issuer = (args.oidc_issuer or settings.oidc_issuer.strip() or None) if args.oidc_subject else None
    if args.oidc_subject and issuer is None:
        raise accounts.InvalidAccount({"oidc_issuer": "--oidc-issuer or RELAIS_OIDC_ISSUER is needed"})
    existing = await accounts.get(conn, args.user_id)
    account = accounts.Account(  # what is not given stays as it was
        args.user_id, args.role, args.name, args.site, args.department,
        args.email if args.email is not None else (existing.email if existing else None),
        issuer or (existing.oidc_issuer if existing else None),
        args.oidc_subject or (existing.oidc_subject if existing else None))
    if problems := account.problems():  # before asking for a password
        raise accounts.InvalidAccount(problems)
    password_hash = passwords.hash_now(_password()) if args.password_stdin else None
    ended = await accounts.save(conn, account, password_hash, keep_password=password_hash is None)
    done = "updated" if existing else "opened"
    return f"{args.user_id}: {done}" + (f"; {ended} session(s) ended" if ended else "")


async def _disable(conn: asyncpg.Connection, user_id: str) -> str:
    ended = await accounts.disable(conn, user_id)
    if ended is None:
        raise accounts.InvalidAccount({"user_id": f"no account {user_id!r}"})
    return f"{user_id}: closed; {ended} session(s) ended"


async def _enable(conn: asyncpg.Connection, user_id: str) -> str:
    if not await accounts.enable(conn, user_id):
        raise accounts.InvalidAccount({"user_id": f"no account {user_id!r}"})
    return f"{user_id}: reopened"


async def _list(conn: asyncpg.Connection) -> str:
    lines = ["user_id\trole\tsite/department\temail\tproconnect\tclosed"]
    for a in await accounts.everyone(conn):
        lines.append("\t".join((a.user_id, a.role, a.site_id or a.department or "-", a.email or "-",
                                "bound" if a.oidc_subject else "-",
                                a.disabled_at.isoformat(timespec="minutes") if a.disabled_at else "-")))
    return "\n".join(lines)


async def run(args: argparse.Namespace, settings: ReferralSettings) -> str:
    pool = await create_pool(settings.database_url, settings.db_schema, min_size=1, max_size=1)
    try:
        await migrate(pool, SESSIONS_MIGRATIONS, MIGRATIONS)
        async with pool.acquire() as conn, conn.transaction():
            if args.command == "add":
                return await _add(conn, args, settings)
            if args.command == "disable":
                return await _disable(conn, args.user_id)
            if args.command == "enable":
                return await _enable(conn, args.user_id)
            return await _list(conn)
    finally:
        await pool.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        print(asyncio.run(run(args, ReferralSettings())))
    except accounts.InvalidAccount as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
