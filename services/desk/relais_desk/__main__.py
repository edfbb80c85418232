"""`python -m relais_desk`: the desk of RELAIS_DESK_OPERATOR on RELAIS_HOST:RELAIS_DESK_PORT.
`python -m relais_desk add-expert <user_id> "<display name>"`: creates or resets an
expert account (the password is read from the terminal, or from stdin when piped; a
reset ends the account's sessions).
`python -m relais_desk disable-expert <user_id>`: closes the account: no more sign-in,
and every session of it ends at once. `enable-expert <user_id>` opens it again."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg
import uvicorn

from relais_desk.app import MIGRATIONS, create_app
from relais_desk.service_layer import accounts
from relais_desk.settings import DeskSettings
from relais_kit import passwords
from relais_kit.db import create_pool, migrate
from relais_kit.sessions import SESSIONS_MIGRATIONS

T = TypeVar("T")


async def on_accounts(settings: DeskSettings, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
    """`work` on the desk's schema (migrated first: the command may run before the desk)."""
    pool = await create_pool(settings.database_url, settings.schema_name, max_size=1)
    try:
        await migrate(pool, SESSIONS_MIGRATIONS, MIGRATIONS)
        async with pool.acquire() as conn:
            return await work(conn)
    finally:
        await pool.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m relais_desk", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command")
    adding = commands.add_parser("add-expert", help="create or reset an expert account of this desk")
    adding.add_argument("user_id")
    adding.add_argument("display_name")
    closing = commands.add_parser("disable-expert", help="close an expert account and end its sessions at once")
    closing.add_argument("user_id")
    opening = commands.add_parser("enable-expert", help="open a closed expert account again")
    opening.add_argument("user_id")
    args = parser.parse_args(argv)
    settings = DeskSettings()  # type: ignore[call-arg]  # from the environment
    desk = f"the desk of {settings.operator}"
    if args.command == "add-expert":
        password = getpass.getpass("Mot de passe : ") if sys.stdin.isatty() else sys.stdin.readline().rstrip("\n")
        if len(password) < 12:
            parser.error("the password needs 12 characters at least")
        hashed = passwords.hash_now(password)
        asyncio.run(on_accounts(settings, lambda c: accounts.add_expert(c, args.user_id, hashed, args.display_name)))
        print(f"expert {args.user_id} ready on {desk}")
    elif args.command in ("disable-expert", "enable-expert"):
        try:
            if args.command == "disable-expert":
                ended = asyncio.run(on_accounts(settings, lambda c: accounts.disable_expert(c, args.user_id)))
                print(f"expert {args.user_id} disabled on {desk}; {ended} session(s) ended")
            else:
                asyncio.run(on_accounts(settings, lambda c: accounts.enable_expert(c, args.user_id)))
                print(f"expert {args.user_id} enabled on {desk}")
        except accounts.NoSuchExpert:
            sys.exit(f"no expert {args.user_id!r} on {desk}")
    else:
        uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_config=None)


if __name__ == "__main__":
    main()
