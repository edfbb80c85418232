"""Personal data at rest on a real PostgreSQL: server-side sessions, the sealed outbox,
re-sealing after a key rotation (and of values stored before sealing existed), and the
retention job of the kit."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import pytest_asyncio

from relais_kit import datakeys, outbox, resealing, sessions
from relais_kit.db import create_pool, migrate
from relais_kit.envelope import CloudEvent, event_type
from relais_kit.resealing import CLEAR, SealedColumn, key_usage, reseal_all, reseal_batch
from relais_kit.retention import Periods, check_periods, kit_steps, longest_redelivery, run_once
from relais_kit.settings import REPO_ROOT
from relais_kit.topics import TopicsFile, TopicSpec, load_topics
from relais_kit.vault import FileKeyRing, Vault, key_id_of, new_key_set, write_key_file

SCHEMA = "kit_at_rest"
DAY = timedelta(days=1)
CITIZEN = {"citizen": {"name": "Élodie Dupont", "email": "elodie.dupont@example.fr",
                       "address": "12 rue des Lilas, 47000 Agen"}}
CLEAR_WORDS = ("Dupont", "elodie.dupont", "rue des Lilas")
NAMES = SealedColumn("citizens", "name")


@pytest_asyncio.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(database_url, SCHEMA)
    await migrate(pool, sessions.SESSIONS_MIGRATIONS)
    async with pool.acquire() as conn:
        await conn.execute("CREATE TABLE citizens (id bigint PRIMARY KEY, name text)")
    yield pool
    await pool.close()


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    path = tmp_path / "keys.json"
    write_key_file(path, new_key_set())
    return path


@pytest.fixture
def vault(keys: Path) -> Vault:
    return Vault(FileKeyRing(keys, recheck_s=0))


def answered(referral: str) -> CloudEvent:
    return CloudEvent(type=event_type("referral.answered"), source="/relais/tests", subject=referral,
                      data={"referral_id": referral, **CITIZEN})


# --- sessions -------------------------------------------------------------------------


async def test_a_session_lives_until_it_ends_and_only_for_its_account(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        sid = await sessions.open_session(conn, "sophie", "ui", timedelta(hours=10))
        assert await sessions.is_alive(conn, sid, "sophie")
        assert not await sessions.is_alive(conn, sid, "marc"), "a session id names one account"
        assert not await sessions.is_alive(conn, sid + "x", "sophie")
        stored = await conn.fetchval("SELECT string_agg(s::text, ' ') FROM sessions s")
        assert sid not in stored, "only a hash of the id is kept"
        await sessions.end_session(conn, sid)
        assert not await sessions.is_alive(conn, sid, "sophie")
        await sessions.end_session(conn, sid)  # ending it twice is harmless


async def test_closing_an_account_ends_all_its_sessions_and_no_other(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        browser = await sessions.open_session(conn, "sophie", "ui", timedelta(hours=10))
        script = await sessions.open_session(conn, "sophie", "api", timedelta(hours=1))
        other = await sessions.open_session(conn, "marc", "ui", timedelta(hours=10))
        assert await sessions.end_sessions_of(conn, "sophie") == 2
        assert not await sessions.is_alive(conn, browser, "sophie")
        assert not await sessions.is_alive(conn, script, "sophie")
        assert await sessions.is_alive(conn, other, "marc")
        assert await sessions.end_sessions_of(conn, "sophie") == 0
        with pytest.raises(asyncpg.CheckViolationError):
            await sessions.open_session(conn, "marc", "cli", timedelta(hours=1))


async def test_an_expired_session_is_dead_and_pruned(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        expired = await sessions.open_session(conn, "marc", "ui", timedelta(hours=10))
        live = await sessions.open_session(conn, "sophie", "ui", timedelta(hours=10))
        await conn.execute("UPDATE sessions SET expires_at = now() - interval '1 second' WHERE user_id = 'marc'")
        assert not await sessions.is_alive(conn, expired, "marc")
        assert await sessions.is_alive(conn, live, "sophie")
        assert await sessions.prune_expired(conn) == 1
        assert [r["user_id"] for r in await conn.fetch("SELECT user_id FROM sessions")] == ["sophie"]
        assert await sessions.prune_expired(conn) == 0


# --- the sealed outbox and re-sealing -----------------------------------------------------


async def rows_text(conn: asyncpg.Connection, table: str) -> str:
    return await conn.fetchval(f"SELECT coalesce(string_agg(t::text, ' '), '') FROM {table} t")


async def test_the_outbox_keeps_event_data_sealed_and_gives_it_back(pool: asyncpg.Pool, vault: Vault) -> None:
    event = answered("r-1")
    async with pool.acquire() as conn:
        await outbox.record(conn, "referrals", event, vault)
        everything = await rows_text(conn, "outbox")
        assert not any(word in everything for word in CLEAR_WORDS)
        row = await conn.fetchrow("SELECT * FROM outbox WHERE event_id = $1", event.id)
    assert key_id_of(row["data"]) == vault.current_key_id()
    back = outbox.event_of(row, "/relais/tests", vault)
    assert (back.id, back.type, back.subject, back.data) == (event.id, event.type, "r-1", event.data)


async def insert_clear_outbox_row(conn: asyncpg.Connection, event: CloudEvent) -> None:
    """A row as written before encryption at rest: the data in clear."""
    await conn.execute(
        "INSERT INTO outbox (topic, record_key, event_id, event_type, subject, occurred_at, data)"
        " VALUES ('referrals', $1, $2, $3, $1, now(), $4)",
        event.subject, event.id, event.type, json.dumps(event.data))


async def test_a_clear_outbox_row_is_readable_then_resealed(pool: asyncpg.Pool, vault: Vault) -> None:
    legacy, recent = answered("r-old"), answered("r-new")
    async with pool.acquire() as conn:
        await insert_clear_outbox_row(conn, legacy)
        await outbox.record(conn, "referrals", recent, vault)
        row = await conn.fetchrow("SELECT * FROM outbox WHERE event_id = $1", legacy.id)
        assert outbox.event_of(row, "/relais/tests", vault).data == legacy.data
        assert (await key_usage(conn, [outbox.SEALED_DATA]))["outbox.data"] == Counter(
            {CLEAR: 1, vault.current_key_id(): 1})

    assert await reseal_all(pool, vault, [outbox.SEALED_DATA]) == 1

    async with pool.acquire() as conn:
        assert (await key_usage(conn, [outbox.SEALED_DATA]))["outbox.data"] == Counter(
            {vault.current_key_id(): 2})
        everything = await rows_text(conn, "outbox")
        assert not any(word in everything for word in CLEAR_WORDS)
        for event in (legacy, recent):
            row = await conn.fetchrow("SELECT * FROM outbox WHERE event_id = $1", event.id)
            assert outbox.event_of(row, "/relais/tests", vault).data == event.data
    assert await reseal_all(pool, vault, [outbox.SEALED_DATA]) == 0, "nothing left to do"


async def test_after_a_rotation_every_value_moves_to_the_new_key(pool: asyncpg.Pool, keys: Path, vault: Vault,
                                                                 database_url: str) -> None:
    count = resealing.BATCH + 50  # more than one batch
    old = vault.current_key_id()
    async with pool.acquire() as conn:
        await conn.executemany("INSERT INTO citizens (id, name) VALUES ($1, $2)",
                               [(i, vault.seal(f"Citoyen {i}", NAMES.context(i))) for i in range(count)])
        await conn.execute("INSERT INTO citizens (id, name) VALUES (-1, NULL)")  # nothing to seal
        for i in range(3):
            await outbox.record(conn, "referrals", answered(f"r-{i}"), vault)

    datakeys.cmd_rotate(keys)
    new = vault.current_key_id()
    assert new != old
    async with pool.acquire() as conn:
        before = await key_usage(conn, [NAMES, outbox.SEALED_DATA])
    assert before == {"citizens.name": Counter({old: count}), "outbox.data": Counter({old: 3})}

    assert await reseal_all(pool, vault, [NAMES, outbox.SEALED_DATA]) == count + 3

    async with pool.acquire() as conn:
        after = await key_usage(conn, [NAMES, outbox.SEALED_DATA])
        assert after == {"citizens.name": Counter({new: count}), "outbox.data": Counter({new: 3})}
        assert await datakeys.sealed_columns(conn, SCHEMA) == {
            "citizens.name": Counter({new: count}), "outbox.data": Counter({new: 3})}
    assert (await datakeys.cmd_status(database_url, SCHEMA)).splitlines() == [
        f"{SCHEMA}.citizens.name\t{new}={count}", f"{SCHEMA}.outbox.data\t{new}=3"]
    async with pool.acquire() as conn:
        datakeys.cmd_retire(keys, old)  # safe now: nothing is sealed with it
        names = {r["id"]: vault.open(r["name"], NAMES.context(r["id"]))
                 for r in await conn.fetch("SELECT id, name FROM citizens WHERE name IS NOT NULL")}
        assert names == {i: f"Citoyen {i}" for i in range(count)}
        for row in await conn.fetch("SELECT * FROM outbox"):
            assert outbox.event_of(row, "/relais/tests", vault).data["citizen"] == CITIZEN["citizen"]


Meanwhile = Callable[[Any], Awaitable[None]]


class WriterInBetween:
    """A connection on which, just before the re-sealer's first UPDATE, the service
    writes that UPDATE's row on another connection (as a concurrent request would)."""

    def __init__(self, conn: asyncpg.Connection, meanwhile: Meanwhile) -> None:
        self._conn = conn
        self._meanwhile: Meanwhile | None = meanwhile

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        return await self._conn.fetch(query, *args)

    async def execute(self, query: str, *args: Any) -> str:
        if query.startswith("UPDATE") and self._meanwhile is not None:
            meanwhile, self._meanwhile = self._meanwhile, None
            await meanwhile(args[0])
        return await self._conn.execute(query, *args)


class PoolWithWriter:
    """A pool whose first connection handed out is a WriterInBetween."""

    def __init__(self, pool: asyncpg.Pool, meanwhile: Meanwhile) -> None:
        self._pool = pool
        self._meanwhile: Meanwhile | None = meanwhile

    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[Any]:
        async with self._pool.acquire() as conn:
            meanwhile, self._meanwhile = self._meanwhile, None
            yield WriterInBetween(conn, meanwhile) if meanwhile else conn


async def test_a_row_written_meanwhile_is_not_overwritten(pool: asyncpg.Pool, vault: Vault) -> None:
    async with pool.acquire() as conn:
        await conn.executemany("INSERT INTO citizens (id, name) VALUES ($1, $2)",
                               [(1, "Élodie Dupont"), (2, "Marc Petit")])
    renamed: list[int] = []

    async def rename(row_id: int) -> None:
        renamed.append(row_id)
        async with pool.acquire() as other:
            await other.execute("UPDATE citizens SET name = $2 WHERE id = $1", row_id,
                                vault.seal("Nouveau Nom", NAMES.context(row_id)))

    async with pool.acquire() as conn:
        done = await reseal_batch(WriterInBetween(conn, rename), vault, NAMES)  # type: ignore[arg-type]
        assert done == 1, "the row renamed meanwhile was left to its writer"
        names = {r["id"]: vault.open(r["name"], NAMES.context(r["id"]))
                 for r in await conn.fetch("SELECT id, name FROM citizens")}
    assert names == {**{1: "Élodie Dupont", 2: "Marc Petit"}, renamed[0]: "Nouveau Nom"}


async def test_a_row_written_meanwhile_does_not_stop_the_resealing_of_the_others(pool: asyncpg.Pool,
                                                                                 vault: Vault) -> None:
    count = resealing.BATCH + 50
    async with pool.acquire() as conn:
        await conn.executemany("INSERT INTO citizens (id, name) VALUES ($1, $2)",
                               [(i, f"Citoyen {i}") for i in range(count)])

    async def rename(row_id: int) -> None:
        async with pool.acquire() as other:
            await other.execute("UPDATE citizens SET name = $2 WHERE id = $1", row_id,
                                vault.seal("Citoyen renommé", NAMES.context(row_id)))

    resealed = await reseal_all(PoolWithWriter(pool, rename), vault, [NAMES])  # type: ignore[arg-type]
    assert resealed == count - 1
    async with pool.acquire() as conn:
        assert (await key_usage(conn, [NAMES]))["citizens.name"] == Counter({vault.current_key_id(): count})


async def test_a_value_that_does_not_open_is_left_and_does_not_stall_the_others(pool: asyncpg.Pool,
                                                                                 vault: Vault, tmp_path: Path) -> None:
    foreign = tmp_path / "another-service.json"
    write_key_file(foreign, new_key_set())
    unreadable = Vault(FileKeyRing(foreign)).seal("Élodie Dupont", NAMES.context(0))
    async with pool.acquire() as conn:
        await conn.executemany("INSERT INTO citizens (id, name) VALUES ($1, $2)",
                               [(0, unreadable), *((i, f"Citoyen {i}") for i in range(1, 4))])
    assert await reseal_all(pool, vault, [NAMES]) == 3
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT name FROM citizens WHERE id = 0") == unreadable
        assert (await key_usage(conn, [NAMES]))["citizens.name"][vault.current_key_id()] == 3


# --- retention ---------------------------------------------------------------------------

PERIODS = Periods(outbox=30 * DAY, processed_events=100 * DAY)


async def outbox_row(conn: asyncpg.Connection, name: str, published_at: datetime | None) -> None:
    await conn.execute(
        "INSERT INTO outbox (topic, record_key, event_id, event_type, subject, occurred_at, data, published_at)"
        " VALUES ('referrals', 'r', $1, 't', 'r', now(), '{}', $2)", name, published_at)


async def test_the_retention_job_prunes_what_is_past_its_time_and_records_its_counts(pool: asyncpg.Pool) -> None:
    at = datetime.now(UTC)
    async with pool.acquire() as conn:
        await outbox_row(conn, "published-31-days-ago", at - 31 * DAY)
        await outbox_row(conn, "published-29-days-ago", at - 29 * DAY)
        await outbox_row(conn, "never-published", None)
        await conn.execute("UPDATE outbox SET created_at = $1", at - 400 * DAY)  # old, but that is not the rule
        await conn.executemany(
            "INSERT INTO processed_events (consumer, event_id, topic, processed_at) VALUES ('c', $1, 'referrals', $2)",
            [("processed-101-days-ago", at - 101 * DAY), ("processed-99-days-ago", at - 99 * DAY)])
        await sessions.open_session(conn, "sophie", "ui", timedelta(hours=1))
        await sessions.open_session(conn, "marc", "ui", timedelta(hours=1))
        await conn.execute("UPDATE sessions SET expires_at = now() - interval '1 minute' WHERE user_id = 'marc'")

    async def anonymise(conn: asyncpg.Connection, when: datetime) -> int:
        assert when == at
        return 7

    counts = await run_once(pool, [*kit_steps(PERIODS), ("referrals_anonymised", anonymise)],
                            trigger="command", at=at)

    expected = {"outbox_published": 1, "processed_events": 1, "sessions_expired": 1, "referrals_anonymised": 7}
    assert counts == expected
    async with pool.acquire() as conn:
        assert {r["event_id"] for r in await conn.fetch("SELECT event_id FROM outbox")} == {
            "published-29-days-ago", "never-published"}
        assert {r["event_id"] for r in await conn.fetch("SELECT event_id FROM processed_events")} == {
            "processed-99-days-ago"}
        assert [r["user_id"] for r in await conn.fetch("SELECT user_id FROM sessions")] == ["sophie"]
        run = await conn.fetchrow("SELECT * FROM retention_runs")
    assert run["trigger"] == "command" and run["started_at"] == at and run["finished_at"] >= at
    assert json.loads(run["counts"]) == expected
    assert await run_once(pool, kit_steps(PERIODS), at=at) == {
        "outbox_published": 0, "processed_events": 0, "sessions_expired": 0}


async def test_a_second_run_while_one_is_running_does_nothing(pool: asyncpg.Pool) -> None:
    started, release = asyncio.Event(), asyncio.Event()

    async def slow(conn: asyncpg.Connection, at: datetime) -> int:
        started.set()
        await release.wait()
        return 1

    first = asyncio.create_task(run_once(pool, [("slow", slow)], trigger="command"))
    await asyncio.wait_for(started.wait(), 10)
    try:
        assert await run_once(pool, kit_steps(PERIODS)) is None
    finally:
        release.set()
    assert await first == {"slow": 1}
    async with pool.acquire() as conn:
        assert [r["trigger"] for r in await conn.fetch("SELECT trigger FROM retention_runs")] == ["command"]
    assert await run_once(pool, kit_steps(PERIODS)) is not None, "the lock was released"


async def test_a_failing_step_changes_nothing_of_its_own_and_releases_the_lock(pool: asyncpg.Pool) -> None:
    async def failing(conn: asyncpg.Connection, at: datetime) -> int:
        await conn.execute("DELETE FROM citizens")
        raise RuntimeError("the step failed")

    async with pool.acquire() as conn:
        await conn.execute("INSERT INTO citizens (id, name) VALUES (1, 'x')")
    with pytest.raises(RuntimeError):
        await run_once(pool, [("failing", failing)])
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM citizens") == 1
        assert await conn.fetchval("SELECT count(*) FROM retention_runs") == 0
    assert await run_once(pool, kit_steps(PERIODS)) is not None


def test_processed_events_must_outlive_every_redelivery() -> None:
    topics = load_topics(REPO_ROOT / "deploy" / "topics.yaml")
    # deploy/topics.yaml: dead letters are kept 90 days (and can be replayed), topics 30.
    assert longest_redelivery(topics) == 90 * DAY
    for days in (30, 89, 90):
        with pytest.raises(ValueError, match=r"RELAIS_RETENTION_PROCESSED_EVENTS_DAYS .*\(90 days"):
            check_periods(Periods(outbox=30 * DAY, processed_events=days * DAY), topics)
    check_periods(Periods(outbox=30 * DAY, processed_events=91 * DAY), topics)
    check_periods(PERIODS, topics)


def test_a_compacted_topic_does_not_count_as_a_redelivery_window() -> None:
    topics = TopicsFile(("caf",), (
        TopicSpec("referrals", 3, 1, {"retention.ms": str(10 * 86_400_000)}),
        TopicSpec("sites", 1, 1, {"cleanup.policy": "compact", "retention.ms": "-1"}),
    ))
    assert longest_redelivery(topics) == 10 * DAY
