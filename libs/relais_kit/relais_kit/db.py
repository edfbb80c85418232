"""PostgreSQL plumbing: one schema per service inside the configured database, and
versioned SQL migrations applied in order, each in its own transaction."""

from __future__ import annotations

import re
from pathlib import Path

import asyncpg

from relais_kit.logs import log

KIT_MIGRATIONS = Path(__file__).parent / "migrations"
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

class DatabaseAccessError(RuntimeError):
    """The configured role may not use the service's schema (the message says why)."""


# PostgreSQL out of reach or restarting: worth waiting for, never a bug.
DATABASE_AWAY: tuple[type[Exception], ...] = (
    OSError, TimeoutError, asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError, asyncpg.TooManyConnectionsError)
# ... and, for work in flight, the connection it held broken by that restart.
CONNECTION_LOST: tuple[type[Exception], ...] = (*DATABASE_AWAY, asyncpg.InterfaceError)
# Per-session settings that make PostgreSQL drop the session of a peer gone silent
# (its host cut off) within seconds, not the kernel's two hours: its row locks and
# advisory locks (relais_kit.leadership) go with it. Ignored on Unix sockets.
KEEPALIVE_SETTINGS = {
    "tcp_keepalives_idle": "4",
    "tcp_keepalives_interval": "1",
    "tcp_keepalives_count": "3",
    "tcp_user_timeout": "7000",  # ms, for data sent and not acknowledged
}


async def create_pool(dsn: str, schema: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    if not _SCHEMA_NAME.match(schema):
        raise ValueError(f"schema name {schema!r} is not a plain identifier")
    conn = await asyncpg.connect(dsn)
    try:
        owner = await _schema_owner(conn, schema)
    finally:
        await conn.close()
    settings = {"search_path": schema, "application_name": f"relais-{schema}", **KEEPALIVE_SETTINGS}
    if owner is not None:
        # An administrator (an ops command run with the admin's URL) acts as the
        # schema's owner: what it creates stays the service's own.
        settings["role"] = owner
    pool = await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size, server_settings=settings)
    assert pool is not None
    return pool


async def _schema_owner(conn: asyncpg.Connection, schema: str) -> str | None:
    """Creates the schema when missing (a role without CREATE on the database gets an
    error saying how to fix it) and checks this connection may use it; returns its
    owner when this connection is someone else who may act as the owner."""
    row = await conn.fetchrow(
        "SELECT n.nspowner::regrole::text AS owner, current_user AS me,"
        " has_schema_privilege(n.oid, 'USAGE') AS usage, has_schema_privilege(n.oid, 'CREATE') AS create,"
        " pg_has_role(n.nspowner, 'MEMBER') AS member FROM pg_namespace n WHERE n.nspname = $1", schema)
    if row is None:
        try:
            await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        except asyncpg.InsufficientPrivilegeError as exc:
            raise DatabaseAccessError(
                f"schema {schema} does not exist and role {await conn.fetchval('SELECT current_user')} may not "
                f"create it: have an administrator run `python -m relais_kit.dbroles create {schema}`") from exc
        return None
    if row["owner"] == row["me"]:
        return None
    if row["member"]:
        return str(row["owner"]).strip('"')
    if not (row["usage"] and row["create"]):
        raise DatabaseAccessError(
            f"role {row['me']} may not use schema {schema} (owned by {row['owner']}): connect with the "
            f"service's own role, or have an administrator run `python -m relais_kit.dbroles create {schema}`")
    return None


async def migrate(pool: asyncpg.Pool, *folders: Path) -> list[str]:
    """Applies `NNN_name.sql` files not yet applied; the kit's own come first."""
    applied: list[str] = []
    # One migrator at a time per schema, even with several instances starting (a
    # CREATE ... IF NOT EXISTS is no guard against another doing the same at once).
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext(current_schema()))")
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " component text NOT NULL, version text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now(),"
            " PRIMARY KEY (component, version))"
        )
        for folder in (KIT_MIGRATIONS, *folders):
            applied += await _apply_folder(conn, folder)
    return applied


async def _apply_folder(conn: asyncpg.Connection, folder: Path) -> list[str]:
    component = folder.parent.name if folder.name == "migrations" else folder.name
    done = {r["version"] for r in await conn.fetch(
        "SELECT version FROM schema_migrations WHERE component = $1", component)}
    applied = []
    for path in sorted(folder.glob("*.sql")):
        if path.stem in done:
            continue
        await conn.execute(path.read_text())
        await conn.execute(
            "INSERT INTO schema_migrations (component, version) VALUES ($1, $2)", component, path.stem)
        log.info("migration_applied", component=component, version=path.stem)
        applied.append(f"{component}/{path.stem}")
    return applied
