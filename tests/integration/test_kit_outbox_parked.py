"""An outbox row that can never be published is parked with its reason instead of
holding up the outbox; the rows of its key wait behind it; ops retry or discard it,
audited. Real PostgreSQL, the real broker."""

import dataclasses
import json

import pytest
from prometheus_client import REGISTRY

from relais_kit import kafka, outbox, parked
from relais_kit.contract import load_contract
from relais_kit.db import create_pool, migrate
from relais_kit.settings import REPO_ROOT
from relais_kit.vault import FileKeyRing, Vault
from tests.support import TopicReader

CONTRACT = load_contract(REPO_ROOT / "schemas")
SCHEMA = "kit_parked"


def retired(site: str, minute: int):
    return CONTRACT.event("site.retired", source="/relais/tests", subject=site,
                          data={"site_id": site, "retired_at": f"2026-11-20T10:{minute:02d}:00+01:00"})


def oversized(site: str, minute: int):
    event = retired(site, minute)  # larger than the producer below accepts (4 KiB)
    return dataclasses.replace(event, data={**event.data, "padding": "x" * 8000})


async def test_a_row_too_large_is_parked_its_key_waits_and_ops_retry_or_discard_it(
        database_url, kafka_bootstrap, tmp_path):
    vault = Vault(FileKeyRing.create(tmp_path / "keys.json"))
    pool = await create_pool(database_url, SCHEMA)
    await migrate(pool)
    small = kafka.producer(kafka_bootstrap, max_request_size=4096)
    large = kafka.producer(kafka_bootstrap)
    await small.start()
    await large.start()
    try:
        async with pool.acquire() as conn:
            for event in (oversized("site-a", 0), retired("site-a", 1), retired("site-b", 2),
                          oversized("site-c", 3), retired("site-c", 4)):
                await outbox.record(conn, "sites", event, vault)
            relay = outbox.OutboxRelay(pool, small, source="/relais/tests", vault=vault)
            relay._schema = SCHEMA  # what its run loop reads from the connection
            async with TopicReader(kafka_bootstrap, "sites") as reader:
                await relay.publish_pending(conn)
                await relay.publish_pending(conn)  # nothing more: the waiting rows stay waiting
                records = await reader.until(lambda rs: len(rs) >= 1, what="site-b's event")
                assert [r.key for r in records] == [b"site-b"], "the rows behind a parked row of their key wait"

                parked_now = await parked.parked_rows(conn)
                assert [(p.topic, p.waiting_behind) for p in parked_now] == [("sites", 1), ("sites", 1)]
                assert all("larger than the broker accepts" in p.reason for p in parked_now)
                assert "xxxx" not in " ".join(p.reason for p in parked_now), "no data in the reason"
                await relay.measure(conn)
                assert REGISTRY.get_sample_value("relais_outbox_parked_rows", {"schema": SCHEMA}) == 2
                assert REGISTRY.get_sample_value("relais_outbox_pending_rows", {"schema": SCHEMA}) == 2

                with pytest.raises(ValueError, match="reason"):
                    await parked.act(conn, "retry", parked_now[0].outbox_id, requested_by="ops", reason=" ")
                # site-a: the limit is raised (here: a relay whose producer takes it), ops retry.
                await parked.act(conn, "retry", parked_now[0].outbox_id, requested_by="ops",
                                 reason="max.message.bytes raised")
                # site-c: given up; the row behind it goes on.
                await parked.act(conn, "discard", parked_now[1].outbox_id, requested_by="ops",
                                 reason="superseded")
                with pytest.raises(parked.NotParked):
                    await parked.act(conn, "discard", parked_now[1].outbox_id, requested_by="ops", reason="twice")

                relay_after = outbox.OutboxRelay(pool, large, source="/relais/tests", vault=vault)
                await relay_after.publish_pending(conn)
                records = await reader.until(lambda rs: len(rs) >= 4, what="the rows released")
            by_key: dict[bytes, list[str]] = {}
            for r in records:
                by_key.setdefault(r.key, []).append(json.loads(r.value)["retired_at"][11:16])
            assert by_key == {b"site-b": ["10:02"], b"site-a": ["10:00", "10:01"], b"site-c": ["10:04"]}
            assert await conn.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL"
                                       " AND discarded_at IS NULL") == 0
            audit = await conn.fetch("SELECT action, requested_by, reason FROM outbox_actions ORDER BY id")
            assert [tuple(a) for a in audit] == [("retry", "ops", "max.message.bytes raised"),
                                                 ("discard", "ops", "superseded")]
    finally:
        await small.stop()
        await large.stop()
        await pool.close()
