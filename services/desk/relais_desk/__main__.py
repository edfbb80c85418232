"""`python -m relais_desk`: the desk of RELAIS_DESK_OPERATOR on RELAIS_HOST:RELAIS_DESK_PORT.
`python -m relais_desk add-expert <user_id> "<display name>"`: creates or resets an
expert account (the password is read from the terminal, or from stdin when piped)."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys

import uvicorn

from relais_desk.app import MIGRATIONS, create_app
from relais_desk.service_layer.accounts import add_expert
from relais_desk.settings import DeskSettings
from relais_kit.db import create_pool, migrate


async def _add_expert(settings: DeskSettings, user_id: str, display_name: str, password: str) -> None:
    pool = await create_pool(settings.database_url, settings.schema_name, max_size=1)
    try:
        await migrate(pool, MIGRATIONS)
        async with pool.acquire() as conn:
            await add_expert(conn, user_id, password, display_name)
    finally:
        await pool.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m relais_desk", description=__doc__)
    commands = parser.add_subparsers(dest="command")
    adding = commands.add_parser("add-expert", help="create or reset an expert account of this desk")
    adding.add_argument("user_id")
    adding.add_argument("display_name")
    args = parser.parse_args(argv)
    settings = DeskSettings()  # type: ignore[call-arg]  # from the environment
    if args.command == "add-expert":
        password = getpass.getpass("Mot de passe : ") if sys.stdin.isatty() else sys.stdin.readline().rstrip("\n")
        if len(password) < 12:
            parser.error("the password needs 12 characters at least")
        asyncio.run(_add_expert(settings, args.user_id, args.display_name, password))
        print(f"expert {args.user_id} ready on the desk of {settings.operator}")
        return
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_config=None)


if __name__ == "__main__":
    main()
