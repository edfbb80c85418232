"""The data keys of encryption at rest, for ops (`python -m relais_kit.datakeys`):

    new     --keys FILE             a key file with one key (refused if FILE exists)
    rotate  --keys FILE             a new key, made current; the old ones stay to open
                                    what they sealed (services take it up within seconds
                                    and re-seal their data under it in the background)
    status  --schema S              for each sealed column of schema S: how many values
                                    each key sealed, and how many are still in clear
    retire  --keys FILE KEY_ID      drops an old key — only once `status` shows no value
                                    under it in any schema using the file (else that
                                    data is lost)

The database is `DATABASE_URL`."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import asyncpg

from relais_kit.resealing import CLEAR
from relais_kit.settings import PlatformSettings
from relais_kit.vault import PREFIX, FileKeyRing, VaultError, new_key_id, new_key_set, write_key_file


def cmd_new(path: Path) -> str:
    if path.exists():
        raise VaultError(f"{path} exists: use rotate to add a key to it")
    path.parent.mkdir(parents=True, exist_ok=True)
    keys = new_key_set()
    write_key_file(path, keys)
    return f"{path}: new key file, current key {keys.current_id}"


def cmd_rotate(path: Path) -> str:
    keys = FileKeyRing(path).key_set
    kid = new_key_id()
    fresh = replace(keys, current_id=kid, keys={**keys.keys, kid: new_key_set().keys.popitem()[1]})
    write_key_file(path, fresh)
    return (f"{path}: current key is now {kid} (kept: {', '.join(sorted(keys.keys))}). Services re-seal "
            "their data under it within a minute; `status` shows the progress.")


def cmd_retire(path: Path, key_id: str) -> str:
    keys = FileKeyRing(path).key_set
    if key_id not in keys.keys:
        raise VaultError(f"{path} has no key {key_id!r}")
    if key_id == keys.current_id:
        raise VaultError(f"{key_id} is the current key: rotate first")
    write_key_file(path, replace(keys, keys={k: v for k, v in keys.keys.items() if k != key_id}))
    return f"{path}: key {key_id} removed"


async def sealed_columns(conn: asyncpg.Connection, schema: str) -> dict[str, Counter[str]]:
    """Every text column of `schema` holding at least one sealed value, with a count of
    values per key and of values in clear."""
    columns = await conn.fetch(
        "SELECT table_name, column_name FROM information_schema.columns"
        " WHERE table_schema = $1 AND data_type = 'text' ORDER BY table_name, column_name", schema)
    found: dict[str, Counter[str]] = {}
    for c in columns:
        table, column = f'"{schema}"."{c["table_name"]}"', f'"{c["column_name"]}"'
        rows = await conn.fetch(
            f"SELECT CASE WHEN left({column}, {len(PREFIX) + 1}) = '{PREFIX}:'"
            f" THEN split_part({column}, ':', 2) ELSE '{CLEAR}' END AS key_id, count(*) AS n"
            f" FROM {table} WHERE {column} IS NOT NULL GROUP BY 1")
        counts = Counter({r["key_id"]: int(r["n"]) for r in rows})
        if set(counts) - {CLEAR}:
            found[f"{c['table_name']}.{c['column_name']}"] = counts
    return found


async def cmd_status(dsn: str, schema: str) -> str:
    conn = await asyncpg.connect(dsn)
    try:
        found = await sealed_columns(conn, schema)
    finally:
        await conn.close()
    if not found:
        return f"schema {schema}: no sealed column (yet)"
    return "\n".join(f"{schema}.{name}\t" + "\t".join(f"{kid}={n}" for kid, n in sorted(counts.items()))
                     for name, counts in found.items())


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m relais_kit.datakeys", description=__doc__,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = top.add_subparsers(dest="command", required=True)
    for name in ("new", "rotate", "retire"):
        command = commands.add_parser(name)
        command.add_argument("--keys", type=Path, required=True, help="the key file")
        if name == "retire":
            command.add_argument("key_id")
    status = commands.add_parser("status")
    status.add_argument("--schema", required=True, help="a service's schema: referral, notifications, desk_<code>…")
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.command == "new":
            print(cmd_new(args.keys))
        elif args.command == "rotate":
            print(cmd_rotate(args.keys))
        elif args.command == "retire":
            print(cmd_retire(args.keys, args.key_id))
        else:
            print(asyncio.run(cmd_status(PlatformSettings().database_url, args.schema)))
    except VaultError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
