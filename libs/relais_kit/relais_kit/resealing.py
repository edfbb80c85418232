"""The columns a service keeps sealed (`relais_kit.vault`), and the loop that rewrites
their values under the current key: after a key rotation, and for values stored before
encryption at rest existed. It works in small batches, each row updated only if it did
not change meanwhile, so it runs beside the service's own writes without locking them."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from relais_kit.logs import log
from relais_kit.vault import PREFIX, Vault, VaultError, key_id_of

BATCH = 200
CLEAR = "(clear)"


@dataclass(frozen=True)
class SealedColumn:
    """`table.column` holds sealed text; `row_id` identifies a row for updates, and
    `bound_to` (default: `row_id`) is the column whose value the seal is bound to."""

    table: str
    column: str
    row_id: str = "id"
    bound_to: str | None = None

    @property
    def name(self) -> str:
        return f"{self.table}.{self.column}"

    def context(self, bound_value: object) -> str:
        """The associated data of a value of this column in the row bound to `bound_value`."""
        return f"{self.name}:{bound_value}"


async def reseal_batch(conn: asyncpg.Connection, vault: Vault, column: SealedColumn, limit: int = BATCH) -> int:
    """Re-seals up to `limit` values not under the current key; returns how many."""
    current = f"{PREFIX}:{vault.current_key_id()}:"
    bound = column.bound_to or column.row_id
    rows = await conn.fetch(
        f"SELECT {column.row_id} AS rid, {bound}::text AS bound, {column.column} AS value"
        f" FROM {column.table} WHERE {column.column} IS NOT NULL"
        f" AND left({column.column}, {len(current)}) <> $1 LIMIT $2", current, limit)
    done = 0
    for row in rows:
        context = column.context(row["bound"])
        try:
            fresh = vault.seal(vault.open(row["value"], context), context)
        except VaultError as exc:
            log.error("reseal_unreadable", column=column.name, error=str(exc))
            continue
        status = await conn.execute(
            f"UPDATE {column.table} SET {column.column} = $2 WHERE {column.row_id} = $1 AND {column.column} = $3",
            row["rid"], fresh, row["value"])
        done += status.endswith(" 1")
    return done


async def reseal_all(pool: asyncpg.Pool, vault: Vault, columns: Sequence[SealedColumn]) -> int:
    total = 0
    for column in columns:
        while True:
            async with pool.acquire() as conn:
                done = await reseal_batch(conn, vault, column)
            total += done
            # Not `done < BATCH`: a row its service rewrote meanwhile is skipped, and the
            # rows after it must still be re-sealed. A batch with no progress (nothing left,
            # or only values that do not open) ends the pass.
            if done == 0:
                break
    return total


async def key_usage(conn: asyncpg.Connection, columns: Sequence[SealedColumn]) -> dict[str, Counter[str]]:
    """For each column, how many values each key sealed (`(clear)`: not sealed yet)."""
    usage: dict[str, Counter[str]] = {}
    for column in columns:
        rows = await conn.fetch(f"SELECT {column.column} AS value FROM {column.table}"
                                f" WHERE {column.column} IS NOT NULL")
        usage[column.name] = Counter(key_id_of(r["value"]) or CLEAR for r in rows)
    return usage


class Resealer:
    """Re-seals at start, then whenever the current key changes (looked at every
    `poll_s` seconds: nearly free at rest)."""

    def __init__(self, pool: asyncpg.Pool, vault: Vault, columns: Sequence[SealedColumn],
                 poll_s: float = 30.0) -> None:
        self._pool = pool
        self._vault = vault
        self._columns = tuple(columns)
        self._poll_s = poll_s
        self.resealed = 0

    async def run(self) -> None:
        done_for: str | None = None
        while True:
            current = self._vault.current_key_id()
            if current != done_for:
                count = await reseal_all(self._pool, self._vault, self._columns)
                self.resealed += count
                if count:
                    log.info("resealed", count=count, key_id=current)
                done_for = current
            await asyncio.sleep(self._poll_s)
