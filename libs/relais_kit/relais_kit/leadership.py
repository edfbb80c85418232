"""One instance at a time for the jobs that must not run twice per schema (the outbox
relay: the per-referral order of a topic depends on one publisher), with several
instances of a service running.

How: a PostgreSQL session-level advisory lock, taken with `pg_try_advisory_lock` on a
connection of its own (never a pooled one: a pool resets a connection it takes back,
and with it the lock). The lock lives as long as that session does; an instance that
dies or is cut off loses it when PostgreSQL drops the session, which the keepalive
settings below bound to about `SERVER_DETECTS_S` (without them a vanished peer keeps
its session, and the lock, for hours). The others poll for it every `poll_s` seconds.

Fencing. The holder must not act once its lock may have passed to another instance.
Before each piece of work it calls `Lease.keep()`: if its last proof of holding the
lock (a round trip on the lock's session, reading `pg_locks`) is older than
`lease_s`, it proves it again, and a proof that fails or takes longer than `lease_s`
ends the lease (`LeadershipLost`). Since `lease_s` is shorter than the time
PostgreSQL takes to drop a silent session, a former holder has stopped before anyone
else can take the lock. What cannot be fenced from here: a record already handed to
the Kafka producer before the lease ended may still reach the broker afterwards (a
transactional producer would fence it; the embedded broker has none). It is then a
repeat of an event the new holder published in the same order, and consumers drop
it by its `ce_id`: the first occurrence of every event keeps the outbox order."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from relais_kit.db import CONNECTION_LOST, KEEPALIVE_SETTINGS
from relais_kit.logs import log

# The least time before PostgreSQL drops a silent session (db.KEEPALIVE_SETTINGS).
SERVER_DETECTS_S = float(KEEPALIVE_SETTINGS["tcp_keepalives_idle"])
LEASE_S = 2.0
POLL_S = 1.0

# The key of a job's lock: the same expression the relay always used, so that
# instances of an older version and of this one exclude each other.
KEY_SQL = "hashtext(current_schema() || '.' || $1)"
HELD_SQL = (
    "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
    f" AND granted AND objsubid = 1 AND ((classid::bigint << 32) | objid::bigint) = {KEY_SQL})")

Connect = Callable[[], Awaitable[asyncpg.Connection]]
Release = Callable[[asyncpg.Connection], Awaitable[Any]]
Clock = Callable[[], float]


class LeadershipLost(Exception):
    """The lock could not be proven held in time: stop acting, start over."""


async def _close(conn: asyncpg.Connection) -> None:
    try:
        await asyncio.wait_for(conn.close(), 2.0)
    except Exception:
        conn.terminate()


class Lease:
    """The lock of one job, held on `conn` (use it for the job's own queries too: it
    is that session's liveness that counts)."""

    def __init__(self, job: str, conn: asyncpg.Connection, *, lease_s: float, clock: Clock) -> None:
        self.job = job
        self.conn = conn
        self._lease_s = lease_s
        self._clock = clock
        self._proven_at = clock()
        self.lost = False

    def fresh(self) -> bool:
        return not self.lost and self._clock() - self._proven_at < self._lease_s

    async def prove(self) -> None:
        """A round trip on the lock's session that finds the lock held; the lease then
        runs from the moment the question was asked."""
        asked = self._clock()
        try:
            held = await asyncio.wait_for(self.conn.fetchval(HELD_SQL, self.job), self._lease_s)
        except (TimeoutError, *CONNECTION_LOST) as exc:  # type: ignore[misc]
            self.lost = True
            raise LeadershipLost(f"{self.job}: the lock's session did not answer ({type(exc).__name__})") from exc
        if not held:
            self.lost = True
            raise LeadershipLost(f"{self.job}: the lock is no longer held by this session")
        self._proven_at = asked

    async def keep(self) -> None:
        """Call before each piece of work: proves the lock again when the last proof
        is older than half the lease; raises LeadershipLost when it cannot."""
        if self.lost:
            raise LeadershipLost(f"{self.job}: lease already lost")
        if self._clock() - self._proven_at >= self._lease_s / 2:
            await self.prove()


class Leadership:
    """`lease = await leadership.acquire(stopping)` waits until this instance holds the
    lock of `job` in the connection's schema (None if `stopping()` turns true
    meanwhile); `await leadership.release(lease)` lets it go."""

    def __init__(self, job: str, connect: Connect, release: Release | None = None, *,
                 lease_s: float = LEASE_S, poll_s: float = POLL_S, clock: Clock = time.monotonic) -> None:
        if lease_s >= SERVER_DETECTS_S:
            raise ValueError(f"lease_s ({lease_s}) must be shorter than the time PostgreSQL takes to drop a "
                             f"silent session ({SERVER_DETECTS_S} s), else two holders could overlap")
        self.job = job
        self._connect = connect
        self._release = release or _close
        self._lease_s = lease_s
        self._poll_s = poll_s
        self._clock = clock
        self.acquired = 0  # times this instance became the holder

    @classmethod
    def dedicated(cls, job: str, dsn: str, schema: str, **options: Any) -> Leadership:
        """The lock on a connection of its own, with the keepalive settings."""
        async def connect() -> asyncpg.Connection:
            return await asyncpg.connect(dsn, timeout=10, server_settings={
                "search_path": schema, "application_name": f"relais-{schema}-{job}", **KEEPALIVE_SETTINGS})
        return cls(job, connect, **options)

    @classmethod
    def on_pool(cls, job: str, pool: asyncpg.Pool, **options: Any) -> Leadership:
        """The lock on a connection taken from `pool` for as long as it is held (the
        pool's reset on release unlocks it)."""
        async def connect() -> asyncpg.Connection:
            return await pool.acquire()

        async def release(conn: asyncpg.Connection) -> None:
            try:
                await asyncio.wait_for(pool.release(conn), 2.0)
            except Exception:
                conn.terminate()
        return cls(job, connect, release, **options)

    async def acquire(self, stopping: Callable[[], bool] = lambda: False) -> Lease | None:
        conn: asyncpg.Connection | None = None
        delay = self._poll_s
        try:
            while not stopping():
                try:
                    if conn is None:
                        conn = await self._connect()
                    if await asyncio.wait_for(conn.fetchval(f"SELECT pg_try_advisory_lock({KEY_SQL})", self.job),
                                              10.0):
                        lease, conn = Lease(self.job, conn, lease_s=self._lease_s, clock=self._clock), None
                        self.acquired += 1
                        log.info("leadership_acquired", job=self.job)
                        return lease
                    delay = self._poll_s
                except (TimeoutError, *CONNECTION_LOST) as exc:  # type: ignore[misc]
                    log.warning("leadership_unreachable", job=self.job, error=repr(exc))
                    if conn is not None:
                        conn.terminate()
                        conn = None
                    delay = min(delay * 2, 5.0)
                await asyncio.sleep(delay)
            return None
        finally:
            if conn is not None:
                await self._release(conn)

    async def release(self, lease: Lease) -> None:
        """Unlocks (when the session still answers) and lets the connection go."""
        if not lease.lost:
            with contextlib.suppress(TimeoutError, *CONNECTION_LOST):
                await asyncio.wait_for(lease.conn.execute(f"SELECT pg_advisory_unlock({KEY_SQL})", self.job), 2.0)
        lease.lost = True
        await self._release(lease.conn)
        log.info("leadership_released", job=self.job)
