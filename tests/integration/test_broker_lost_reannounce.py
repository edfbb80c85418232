"""After the broker is lost, what the outbox window no longer holds is announced again:
the kit's `on_lost` hooks (awaited once per loss, by the repairing instance, inside the
repair's transaction), and the sites service's use of them (the whole registry on the
compacted `sites` topic again, every site, retired ones as retired). Against the real
PostgreSQL and an embedded broker of the test's own, killed and started again empty."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer, ConsumerRecord

from relais_kit.auth import User
from relais_kit.db import create_pool, migrate
from relais_kit.recovery import BrokerWatch, State
from relais_kit.runtime import Runtime, until_ready
from relais_kit.settings import REPO_ROOT
from relais_kit.topics import create_topics, load_topics
from relais_sites.app import create_app
from relais_sites.settings import load_settings
from tests.support import LosableBroker as Broker
from tests.support import eventually
from tests.tokens_support import JWKS_URL, bearer_for

TOPICS = load_topics(REPO_ROOT / "deploy" / "topics.yaml")
UPSERTED = "fr.franceservices.site.upserted.v1"
RETIRED = "fr.franceservices.site.retired.v1"
SUPERVISOR = bearer_for(User("supervisor-47", "supervisor", None, "Test supervisor", department="47"))


# --- the kit: on_lost hooks ------------------------------------------------------------

SCHEMA = "kit_broker_lost_hook"


@pytest_asyncio.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    p = await create_pool(database_url, SCHEMA)
    await migrate(p)
    async with p.acquire() as conn:
        await conn.execute("CREATE TABLE hook_calls (id serial PRIMARY KEY, in_repair boolean NOT NULL)")
        await conn.execute(
            "INSERT INTO outbox (topic, record_key, event_id, event_type, subject, occurred_at, data, published_at)"
            " VALUES ('sites', 'a-site', 'evt-1', 'fr.franceservices.site.retired.v1', 'a-site', now(),"
            " '{}'::jsonb, now())")
    yield p
    await p.close()


class Hook:
    """Records each call in the repair's own transaction; fails once when asked."""

    def __init__(self, fail_once: bool = False) -> None:
        self.calls = 0
        self.fail_once = fail_once

    async def __call__(self, conn: asyncpg.Connection) -> None:
        self.calls += 1
        # The re-publication happened in this very transaction, not committed yet.
        in_repair = await conn.fetchval("SELECT count(*) = 1 FROM outbox WHERE published_at IS NULL")
        await conn.execute("INSERT INTO hook_calls (in_repair) VALUES ($1)", in_repair)
        if self.fail_once:
            self.fail_once = False
            raise RuntimeError("the hook failed")


def watch(pool: asyncpg.Pool, broker: Broker, hook: Hook) -> BrokerWatch:
    async def restarted() -> None:
        return None

    return BrokerWatch(pool, bootstrap=broker.bootstrap, schema=SCHEMA, topics=TOPICS,
                       topics_in_use=lambda: [], on_new_broker=restarted, outbox_days=30, on_lost=[hook])


async def test_on_lost_hooks_run_once_per_loss_by_the_repairing_instance_in_its_transaction(
        pool: asyncpg.Pool, broker: Broker) -> None:
    hook_a, hook_b = Hook(), Hook()
    a, b = watch(pool, broker, hook_a), watch(pool, broker, hook_b)
    # A first meeting (no earlier broker) and an intact broker lost nothing: no call.
    assert (await a.check()).state is State.NEW  # type: ignore[union-attr]
    assert (await b.check()).state is State.INTACT  # type: ignore[union-attr]
    assert hook_a.calls == hook_b.calls == 0

    broker.lose()
    await asyncio.gather(a.check(), b.check())
    assert hook_a.calls + hook_b.calls == 1
    assert [r["in_repair"] for r in await pool.fetch("SELECT in_repair FROM hook_calls")] == [True]
    await asyncio.gather(a.check(), b.check())  # the broker is intact again: no more calls
    assert hook_a.calls + hook_b.calls == 1


async def test_a_failing_hook_undoes_the_repair_which_is_tried_again(pool: asyncpg.Pool, broker: Broker) -> None:
    hook = Hook(fail_once=True)
    a = watch(pool, broker, hook)
    await a.check()
    broker.lose()
    with pytest.raises(RuntimeError, match="the hook failed"):
        await a.check()
    # Nothing of the repair stayed: no re-publication recorded, no hook row, no marker.
    assert await pool.fetchval("SELECT count(*) FROM republish_runs") == 0
    assert await pool.fetchval("SELECT count(*) FROM hook_calls") == 0
    assert await pool.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL") == 0
    found = await a.check()
    assert found is not None and found.state is State.LOST
    assert hook.calls == 2
    assert await pool.fetchval("SELECT count(*) FROM hook_calls") == 1
    assert await pool.fetchval("SELECT count(*) FROM republish_runs") == 1


# --- the sites service: the whole registry announced again -----------------------------


def a_site(site_id: str, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "site_id": site_id,
        "name": "France Services Nérac (bureau de poste)",
        "kind": "post_office",
        "address": {"street": "1 place de la mairie", "postcode": "47600", "city": "Nérac"},
        "department": "47",
        "operators": ["la-poste", "caf", "ants"],
        "schedule": [{"weekday": 1, "opens": "09:00", "closes": "12:00"}],
    }
    body.update(changes)
    return body


async def read_sites(bootstrap: str, done: Any, within_s: float = 30.0) -> list[ConsumerRecord]:
    """`sites` from its start, in a fresh group, until `done(records)` or the deadline."""
    consumer = AIOKafkaConsumer("sites", bootstrap_servers=bootstrap, group_id=f"test-{uuid.uuid4()}",
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    records: list[ConsumerRecord] = []
    try:
        deadline = time.monotonic() + within_s
        while not done(records) and time.monotonic() < deadline:
            for batch in (await consumer.getmany(timeout_ms=500)).values():
                records.extend(batch)
    finally:
        await consumer.stop()
    return records


def last_per_site(records: list[ConsumerRecord]) -> dict[str, tuple[str, dict[str, Any]]]:
    """What a compacted topic keeps: the last event of each key (its type and data)."""
    last: dict[str, tuple[str, dict[str, Any]]] = {}
    for record in records:
        last[record.key.decode()] = (dict(record.headers)["ce_type"].decode(), json.loads(record.value))
    return last


async def test_the_sites_service_announces_its_whole_registry_again_after_a_broker_loss(
        broker: Broker, database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    await create_topics(broker.bootstrap, TOPICS, replication_factor=1)
    for name, value in (("DATABASE_URL", database_url), ("KAFKA_BOOTSTRAP_SERVERS", broker.bootstrap),
                        ("RELAIS_TOKEN_JWKS_URL", JWKS_URL), ("RELAIS_DEMO_DATA", "0"),
                        ("RELAIS_BROKER_CHECK_S", "0.2")):
        monkeypatch.setenv(name, value)
    tag = uuid.uuid4().hex[:8]
    old, kept, recent, gone, child = (f"{name}-{tag}" for name in ("old", "kept", "recent", "gone", "child"))
    app = create_app(load_settings())
    async with app.router.lifespan_context(app):
        await until_ready(app)
        runtime: Runtime = app.state.runtime
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sites") as client:
            for site_id in (old, kept, recent, gone):
                created = await client.post("/api/v1/sites", json=a_site(site_id), headers=SUPERVISOR)
                assert created.status_code == 201, created.text
            created = await client.post("/api/v1/sites", headers=SUPERVISOR, json=a_site(
                child, kind="mobile_permanence", parent_site_id=old, name="Permanence de Moncrabeau",
                schedule=[{"weekday": 3, "opens": "09:00", "closes": "12:00", "place": "Mairie de Moncrabeau"}]))
            assert created.status_code == 201, created.text
            renamed = await client.post("/api/v1/sites", headers=SUPERVISOR,
                                        json=a_site(kept, name="France Services Nérac (mairie)"))
            assert renamed.status_code == 200, renamed.text
            assert (await client.delete(f"/api/v1/sites/{gone}", headers=SUPERVISOR)).status_code == 200
            registry = {s["site_id"]: s for s in (await client.get(
                "/api/v1/sites", params={"include_retired": "true"}, headers=SUPERVISOR)).json()["sites"]}
        everything = {old, kept, recent, gone, child}
        assert everything <= set(registry)

        async def published_and_marked() -> bool:
            async with runtime.pool.acquire() as conn:
                return bool(await conn.fetchval(
                    "SELECT NOT EXISTS (SELECT 1 FROM outbox WHERE published_at IS NULL)"
                    " AND EXISTS (SELECT 1 FROM broker_marker WHERE marker <> 0)"))

        await eventually(published_and_marked, what="every change published and the marker left")
        before = last_per_site(await read_sites(broker.bootstrap, lambda rs: len(rs) >= 7))
        # Beyond the window: the retention job has purged the events of `old`, `child`
        # and `gone`; those of `kept` were published 40 days ago. Only `recent` is in it.
        async with runtime.pool.acquire() as conn:
            await conn.execute("DELETE FROM outbox WHERE subject = ANY($1::text[])", [old, child, gone])
            await conn.execute("UPDATE outbox SET published_at = now() - interval '40 days'"
                               " WHERE subject = $1", kept)
            rows_before = await conn.fetchval("SELECT count(*) FROM outbox")

        broker.lose()

        async def repaired() -> bool:
            async with runtime.pool.acquire() as conn:
                return bool(await conn.fetchval("SELECT count(*) FROM republish_runs") == 1)

        await eventually(repaired, what="the broker loss noticed and repaired")
        after = await read_sites(broker.bootstrap, lambda rs: everything <= set(last_per_site(rs))
                                 and len(rs) >= len(everything) + 1)
        # Everything is on the new broker again, each site's last event its current state,
        # the very data of the first announcement (a consumer that had it changes nothing).
        last = last_per_site(after)
        for site_id in (old, kept, recent, child):
            assert last[site_id] == (UPSERTED, before[site_id][1]), site_id
            assert last[site_id][1]["name"] == registry[site_id]["name"]
        assert last[child][1]["parent_site_id"] == old
        assert last[kept][1]["name"] == "France Services Nérac (mairie)"
        # A retired site stays retired: announced as retired, never upserted again.
        assert last[gone] == (RETIRED, before[gone][1])
        assert not [r for r in after if r.key.decode() == gone and dict(r.headers)["ce_type"] == UPSERTED.encode()]
        # `recent`: re-published from the window, then announced again, in that order.
        assert [dict(r.headers)["ce_type"] for r in after if r.key.decode() == recent] == [UPSERTED.encode()] * 2

        # Exactly once: one announcement per site, and none more once the broker is intact.
        async with runtime.pool.acquire() as conn:
            announced = await conn.fetchval("SELECT count(*) FROM outbox") - rows_before
        assert announced == len(registry)
        assert runtime.broker_watch is not None
        assert (await runtime.broker_watch.check()).state is State.INTACT  # type: ignore[union-attr]
        async with runtime.pool.acquire() as conn:
            assert await conn.fetchval("SELECT count(*) FROM outbox") - rows_before == announced
