"""PostgreSQL plumbing: one schema per service inside the configured database, and
versioned SQL migrations applied in order, each in its own transaction."""

from __future__ import annotations

import re
from pathlib import Path

import asyncpg

from relais_kit.logs import log

KIT_MIGRATIONS = Path(__file__).parent / "migrations"
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

# PostgreSQL out of reach or restarting: worth waiting for, never a bug.
DATABASE_AWAY: tuple[type[Exception], ...] = (
    OSError, TimeoutError, asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError, asyncpg.TooManyConnectionsError)
# ... and, for work in flight, the connection it held broken by that restart.
CONNECTION_LOST: tuple[type[Exception], ...] = (*DATABASE_AWAY, asyncpg.InterfaceError)


async def create_pool(dsn: str, schema: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    if not _SCHEMA_NAME.match(schema):
        raise ValueError(f"schema name {schema!r} is not a plain identifier")
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    finally:
        await conn.close()
    pool = await asyncpg.create_pool(
        dsn, min_size=min_size, max_size=max_size,
        server_settings={"search_path": schema, "application_name": f"relais-{schema}"},
    )
    assert pool is not None
    return pool


async def migrate(pool: asyncpg.Pool, *folders: Path) -> list[str]:
    """Applies `NNN_name.sql` files not yet applied; the kit's own come first."""
    applied: list[str] = []
    async with pool.acquire() as conn:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " component text NOT NULL, version text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now(),"
            " PRIMARY KEY (component, version))"
        )
        # One migrator at a time per schema, even with several instances starting.
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext(current_schema()))")
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
