"""The outbox relay on a real PostgreSQL and the real broker."""

import asyncio
import json

from relais_kit import kafka, outbox
from relais_kit.contract import load_contract
from relais_kit.db import create_pool, migrate
from relais_kit.settings import REPO_ROOT
from relais_kit.vault import FileKeyRing, Vault
from tests.support import TopicReader, headers

CONTRACT = load_contract(REPO_ROOT / "schemas")


def retired(i: int):
    return CONTRACT.event("site.retired", source="/relais/tests", subject=f"site-{i % 3}",
                          data={"site_id": f"site-{i % 3}",
                                "retired_at": f"2026-11-20T10:{i // 60:02d}:{i % 60:02d}+01:00"})


async def test_relay_publishes_in_order_once_committed_and_after_a_restart(database_url, kafka_bootstrap, tmp_path):
    vault = Vault(FileKeyRing.create(tmp_path / "keys.json"))
    pool = await create_pool(database_url, "kit_test")
    await migrate(pool)
    producer = kafka.producer(kafka_bootstrap)
    await producer.start()
    try:
        async with pool.acquire() as conn:
            async with conn.transaction():
                for i in range(30):
                    await outbox.record(conn, "sites", retired(i), vault)
            rolled_back = conn.transaction()
            await rolled_back.start()
            await outbox.record(conn, "sites", retired(99), vault)
            await rolled_back.rollback()
        relay = outbox.OutboxRelay(pool, producer, source="/relais/tests", vault=vault)
        first = asyncio.create_task(relay.run())
        async with TopicReader(kafka_bootstrap, "sites") as reader:
            await reader.until(lambda rs: len(rs) >= 30, what="30 events")
            first.cancel()
            async with pool.acquire() as conn:
                assert await conn.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL") == 0
                for i in range(30, 40):
                    await outbox.record(conn, "sites", retired(i), vault)
            # A new relay (a restart) publishes what was recorded while none ran.
            second = asyncio.create_task(outbox.OutboxRelay(pool, producer, source="/relais/tests", vault=vault).run())
            records = await reader.until(lambda rs: len(rs) >= 40, what="40 events")
            second.cancel()
        times = {}
        for r in records:
            times.setdefault(r.key, []).append(json.loads(r.value)["retired_at"])
            assert headers(r)["ce_source"] == "/relais/tests"
        assert all(t == sorted(t) for t in times.values()), "per-key order kept"
        assert len(records) == 40, "the rolled-back event was never published"
        # Each row keeps where the broker put its record (a referral's journey: relais_kit.ops_api).
        stored = await pool.fetch("SELECT event_id, topic, published_partition, published_offset FROM outbox")
        assert {r["event_id"]: (r["topic"], r["published_partition"], r["published_offset"]) for r in stored} == {
            headers(r)["ce_id"]: (r.topic, r.partition, r.offset) for r in records}
    finally:
        await producer.stop()
        await pool.close()
