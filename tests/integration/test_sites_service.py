"""The sites service against a real PostgreSQL and a real broker: the API, the
outbox, and what lands on the `sites` topic."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRecord
from fastapi import FastAPI

from relais_kit.auth import User, issue_token
from relais_kit.contract import load_contract
from relais_kit.runtime import until_ready
from relais_kit.settings import REPO_ROOT
from relais_sites.app import create_app
from relais_sites.entrypoints.demo import load_demo_sites
from relais_sites.settings import load_settings

SECRET = "test-secret-for-the-sites-service"
UPSERTED = "fr.franceservices.site.upserted.v1"
RETIRED = "fr.franceservices.site.retired.v1"


def bearer(role: str) -> dict[str, str]:
    token = issue_token(User(f"{role}-1", role, None, f"Test {role}"), SECRET)
    return {"Authorization": f"Bearer {token}"}


OPS, SUPERVISOR, ADVISER = bearer("ops"), bearer("supervisor"), bearer("adviser")


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, database_url: str, kafka_bootstrap: str) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    monkeypatch.setenv("RELAIS_JWT_SECRET", SECRET)
    monkeypatch.setenv("RELAIS_DEMO_DATA", "0")


@asynccontextmanager
async def running(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app):
        await until_ready(app)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://sites") as client:
            yield client


@pytest.fixture
async def client(env: None) -> AsyncIterator[httpx.AsyncClient]:
    async with running(create_app(load_settings())) as client:
        yield client


def a_site(site_id: str, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "site_id": site_id,
        "name": "France Services Nérac (bureau de poste)",
        "kind": "post_office",
        "address": {"street": "1 place de la mairie", "postcode": "47600", "city": "Nérac"},
        "department": "47",
        "operators": ["la-poste", "caf", "ants", "dgfip", "cnam", "france-travail"],
        "schedule": [{"weekday": 1, "opens": "09:00", "closes": "12:00"}],
    }
    body.update(changes)
    return body


def new_id(prefix: str = "test") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def read_sites_topic(bootstrap: str, done: Callable[[list[ConsumerRecord]], bool],
                           within_s: float = 20.0) -> list[ConsumerRecord]:
    """Reads `sites` from the start in a fresh group until `done(records)` or the deadline."""
    consumer = AIOKafkaConsumer("sites", bootstrap_servers=bootstrap, group_id=f"test-{uuid.uuid4()}",
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    records: list[ConsumerRecord] = []
    try:
        deadline = time.monotonic() + within_s
        while not done(records) and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for batch in batches.values():
                records.extend(batch)
    finally:
        await consumer.stop()
    return records


def headers_of(record: ConsumerRecord) -> dict[str, str]:
    return {k: v.decode() for k, v in record.headers}


def of_type(records: list[ConsumerRecord], type_: str, site_id: str) -> list[ConsumerRecord]:
    return [r for r in records if r.key == site_id.encode() and headers_of(r)["ce_type"] == type_]


async def test_upsert_is_published_once_and_listed(client: httpx.AsyncClient, kafka_bootstrap: str) -> None:
    site_id = new_id()
    created = await client.post("/api/v1/sites", json=a_site(site_id), headers=OPS)
    assert created.status_code == 201, created.text
    assert created.headers["location"] == f"/api/v1/sites/{site_id}"
    assert created.json()["retired_at"] is None

    again = await client.post("/api/v1/sites", json=a_site(site_id), headers=SUPERVISOR)
    assert again.status_code == 200
    assert again.json()["updated_at"] == created.json()["updated_at"]

    listed = await client.get("/api/v1/sites", headers=ADVISER)
    assert listed.status_code == 200
    assert site_id in [s["site_id"] for s in listed.json()["sites"]]
    one = await client.get(f"/api/v1/sites/{site_id}", headers=ADVISER)
    assert one.status_code == 200 and one.json()["address"]["city"] == "Nérac"

    records = await read_sites_topic(kafka_bootstrap, lambda rs: bool(of_type(rs, UPSERTED, site_id)))
    [record] = of_type(records, UPSERTED, site_id)
    headers = headers_of(record)
    contract = load_contract(REPO_ROOT / "schemas")
    assert headers["ce_specversion"] == "1.0"
    assert headers["ce_type"] == UPSERTED
    assert headers["ce_subject"] == site_id
    assert headers["ce_source"] == "/relais/sites"
    assert headers["ce_dataschema"] == contract.schema_id(UPSERTED)
    assert headers["content-type"] == "application/json"
    assert headers["ce_partitionkey"] == site_id
    data = json.loads(record.value)
    contract.check(UPSERTED, data)
    assert data["site_id"] == site_id and data["operators"][0] == "la-poste"

    # The unchanged second POST published nothing; the outbox says so as well.
    assert await outbox_count(client, site_id) == 1


async def test_an_update_publishes_a_new_version(client: httpx.AsyncClient, kafka_bootstrap: str) -> None:
    site_id = new_id()
    assert (await client.post("/api/v1/sites", json=a_site(site_id), headers=OPS)).status_code == 201
    renamed = await client.post("/api/v1/sites", json=a_site(site_id, name="France Services Nérac"),
                                headers=OPS)
    assert renamed.status_code == 200 and renamed.json()["name"] == "France Services Nérac"
    records = await read_sites_topic(kafka_bootstrap, lambda rs: len(of_type(rs, UPSERTED, site_id)) >= 2)
    names = [json.loads(r.value)["name"] for r in of_type(records, UPSERTED, site_id)]
    assert names == ["France Services Nérac (bureau de poste)", "France Services Nérac"]


async def test_retire_publishes_site_retired(client: httpx.AsyncClient, kafka_bootstrap: str) -> None:
    site_id = new_id()
    assert (await client.post("/api/v1/sites", json=a_site(site_id), headers=OPS)).status_code == 201
    retired = await client.delete(f"/api/v1/sites/{site_id}", headers=OPS)
    assert retired.status_code == 200 and retired.json()["retired_at"] is not None
    again = await client.delete(f"/api/v1/sites/{site_id}", headers=OPS)
    assert again.status_code == 200 and again.json()["retired_at"] == retired.json()["retired_at"]

    listed = (await client.get("/api/v1/sites", headers=ADVISER)).json()["sites"]
    assert site_id not in [s["site_id"] for s in listed]
    with_retired = await client.get("/api/v1/sites", params={"include_retired": "true"}, headers=ADVISER)
    assert site_id in [s["site_id"] for s in with_retired.json()["sites"]]

    records = await read_sites_topic(kafka_bootstrap, lambda rs: bool(of_type(rs, RETIRED, site_id)))
    [record] = of_type(records, RETIRED, site_id)
    headers = headers_of(record)
    assert headers["ce_subject"] == site_id and headers["content-type"] == "application/json"
    data = json.loads(record.value)
    load_contract(REPO_ROOT / "schemas").check(RETIRED, data)
    assert data["site_id"] == site_id
    assert await outbox_count(client, site_id) == 2


async def test_unknown_site(client: httpx.AsyncClient) -> None:
    assert (await client.get("/api/v1/sites/nowhere-at-all", headers=ADVISER)).status_code == 404
    assert (await client.delete("/api/v1/sites/nowhere-at-all", headers=OPS)).status_code == 404


@pytest.mark.parametrize(("change", "field"), [
    ({"name": None}, "name"),
    ({"operators": ["la-poste", "pole-emploi"]}, "operators.1"),
    ({"kind": "kiosk"}, "kind"),
    ({"address": {"postcode": "4760", "city": "Nérac"}}, "address.postcode"),
    ({"schedule": [{"weekday": 9, "opens": "09:00", "closes": "12:00"}]}, "schedule.0.weekday"),
    ({"schedule": [{"weekday": 1, "opens": "12:00", "closes": "09:00"}]}, "schedule.0.closes"),
    ({"kind": "mobile_permanence"}, "parent_site_id"),
    ({"colour": "blue"}, "colour"),
])
async def test_invalid_bodies_name_the_field(client: httpx.AsyncClient, change: dict[str, Any],
                                             field: str) -> None:
    body = a_site(new_id(), **change)
    body = {k: v for k, v in body.items() if v is not None}
    response = await client.post("/api/v1/sites", json=body, headers=OPS)
    assert response.status_code == 422, response.text
    assert field in [e["field"] for e in response.json()["errors"]], response.text
    assert field in response.json()["detail"]


async def test_permanences_depend_on_an_active_fixed_site(client: httpx.AsyncClient) -> None:
    parent = new_id("poste")
    child = a_site(new_id("mairie"), kind="mobile_permanence", parent_site_id=parent,
                   schedule=[{"weekday": 2, "opens": "09:00", "closes": "12:00", "place": "Mairie"}])
    orphan = await client.post("/api/v1/sites", json=child, headers=OPS)
    assert orphan.status_code == 422 and orphan.json()["errors"][0]["field"] == "parent_site_id"

    assert (await client.post("/api/v1/sites", json=a_site(parent), headers=OPS)).status_code == 201
    assert (await client.post("/api/v1/sites", json=child, headers=OPS)).status_code == 201
    children = await client.get("/api/v1/sites", params={"parent_site_id": parent}, headers=ADVISER)
    assert [s["site_id"] for s in children.json()["sites"]] == [child["site_id"]]

    blocked = await client.delete(f"/api/v1/sites/{parent}", headers=OPS)
    assert blocked.status_code == 409 and child["site_id"] in blocked.json()["detail"]
    as_bus = a_site(parent, kind="bus",
                    schedule=[{"weekday": 1, "opens": "09:00", "closes": "12:00", "place": "Place"}])
    refused = await client.post("/api/v1/sites", json=as_bus, headers=OPS)
    assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == "kind"

    assert (await client.delete(f"/api/v1/sites/{child['site_id']}", headers=OPS)).status_code == 200
    assert (await client.delete(f"/api/v1/sites/{parent}", headers=OPS)).status_code == 200
    revived_child = await client.post("/api/v1/sites", json=child, headers=OPS)
    assert revived_child.status_code == 422 and "retired" in revived_child.json()["detail"]


async def test_filters(client: httpx.AsyncClient) -> None:
    msa_only = new_id()
    bus = new_id("bus")
    await client.post("/api/v1/sites", json=a_site(msa_only, operators=["msa"], department="33",
                                                   address={"postcode": "33127", "city": "Martignas"}),
                      headers=OPS)
    await client.post("/api/v1/sites", json=a_site(bus, kind="bus", schedule=[
        {"weekday": 3, "opens": "09:30", "closes": "12:30", "place": "Monflanquin"}]), headers=OPS)

    async def ids(**params: str) -> set[str]:
        response = await client.get("/api/v1/sites", params=params, headers=ADVISER)
        assert response.status_code == 200, response.text
        return {s["site_id"] for s in response.json()["sites"]}

    assert await ids(operator="msa") == {msa_only}
    assert await ids(operator="caf", kind="bus", department="47") == {bus}
    assert await ids(department="33") == {msa_only}
    bad = await client.get("/api/v1/sites", params={"operator": "pole-emploi"}, headers=ADVISER)
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "operator"


async def test_auth(client: httpx.AsyncClient) -> None:
    body = a_site(new_id())
    assert (await client.post("/api/v1/sites", json=body)).status_code == 401
    assert (await client.get("/api/v1/sites")).status_code == 401
    other_secret = "another-secret-that-is-long-enough-for-hs256"
    forged = {"Authorization": "Bearer " + issue_token(User("x", "ops", None, "x"), other_secret)}
    assert (await client.post("/api/v1/sites", json=body, headers=forged)).status_code == 401
    assert (await client.post("/api/v1/sites", json=body, headers=ADVISER)).status_code == 403
    assert (await client.delete(f"/api/v1/sites/{body['site_id']}", headers=ADVISER)).status_code == 403


async def test_health_and_openapi(client: httpx.AsyncClient) -> None:
    health = await client.get("/healthz")
    assert health.status_code == 200 and health.json()["database"] == "ok"
    doc = (await client.get("/openapi.json")).json()
    assert {"/api/v1/sites", "/api/v1/sites/{site_id}"} <= set(doc["paths"])
    assert "201" in doc["paths"]["/api/v1/sites"]["post"]["responses"]
    assert "SiteBody" in doc["components"]["schemas"]


async def test_demo_seeding_twice_publishes_each_site_once(
        env: None, monkeypatch: pytest.MonkeyPatch, database_url: str, kafka_bootstrap: str) -> None:
    monkeypatch.setenv("RELAIS_DEMO_DATA", "1")
    demo_ids = {s.site_id for s in load_demo_sites(REPO_ROOT / "deploy" / "demo" / "sites.yaml")}
    for _ in range(2):
        async with running(create_app(load_settings())) as client:
            listed = (await client.get("/api/v1/sites", headers=ADVISER)).json()
            assert {s["site_id"] for s in listed["sites"]} == demo_ids

    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("SELECT subject, event_type FROM sites.outbox")
    finally:
        await conn.close()
    assert sorted(r["subject"] for r in rows) == sorted(demo_ids)
    assert {r["event_type"] for r in rows} == {UPSERTED}

    records = await read_sites_topic(
        kafka_bootstrap, lambda rs: demo_ids <= {r.key.decode() for r in rs})
    # At-least-once: a record may be delivered twice, but each site has one event.
    published = {(r.key.decode(), dict(r.headers)["ce_id"]) for r in records if r.key.decode() in demo_ids}
    assert sorted(site for site, _ in published) == sorted(demo_ids)


async def outbox_count(client: httpx.AsyncClient, site_id: str) -> int:
    transport = client._transport
    assert isinstance(transport, httpx.ASGITransport)
    app: Any = transport.app
    async with app.state.runtime.pool.acquire() as conn:
        return int(await conn.fetchval("SELECT count(*) FROM outbox WHERE subject = $1", site_id))
