"""The sites service against a real PostgreSQL and a real broker: the API, the
outbox, what lands on the `sites` topic, and who may write the registry."""

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
import pytest_asyncio
from aiokafka import AIOKafkaConsumer, ConsumerRecord
from fastapi import FastAPI

from relais_kit.auth import REFERRAL_ISSUER, User, issue_token
from relais_kit.contract import load_contract
from relais_kit.runtime import until_ready
from relais_kit.settings import REPO_ROOT
from relais_kit.tokenkeys import TokenKeySet, new_key
from relais_kit.tokens import FixedKeys, TokenSigner
from relais_sites.app import create_app
from relais_sites.entrypoints.demo import load_demo_sites
from relais_sites.settings import SitesSettings, load_settings
from tests.tokens_support import JWKS_URL, bearer_for

UPSERTED = "fr.franceservices.site.upserted.v1"
RETIRED = "fr.franceservices.site.retired.v1"


def bearer(role: str, *, site_id: str | None = None, department: str | None = None) -> dict[str, str]:
    user = User(f"{role}-{department or site_id or 1}", role, site_id, f"Test {role}", department=department)
    return bearer_for(user)


OPS = bearer("ops")
ADVISER = bearer("adviser", site_id="martignas-sur-jalle-poste")
SUPERVISOR = bearer("supervisor", department="47")  # the Lot-et-Garonne, where a_site() is
SUPERVISOR_33 = bearer("supervisor", department="33")  # the Gironde
SUPERVISOR_NOWHERE = bearer("supervisor")  # an account naming no department


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, database_url: str, kafka_bootstrap: str) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    monkeypatch.setenv("RELAIS_TOKEN_JWKS_URL", JWKS_URL)
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
    created = await client.post("/api/v1/sites", json=a_site(site_id), headers=SUPERVISOR)
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
    assert (await client.post("/api/v1/sites", json=a_site(site_id), headers=SUPERVISOR)).status_code == 201
    renamed = await client.post("/api/v1/sites", json=a_site(site_id, name="France Services Nérac"),
                                headers=SUPERVISOR)
    assert renamed.status_code == 200 and renamed.json()["name"] == "France Services Nérac"
    records = await read_sites_topic(kafka_bootstrap, lambda rs: len(of_type(rs, UPSERTED, site_id)) >= 2)
    names = [json.loads(r.value)["name"] for r in of_type(records, UPSERTED, site_id)]
    assert names == ["France Services Nérac (bureau de poste)", "France Services Nérac"]


async def test_retire_publishes_site_retired(client: httpx.AsyncClient, kafka_bootstrap: str) -> None:
    site_id = new_id()
    assert (await client.post("/api/v1/sites", json=a_site(site_id), headers=SUPERVISOR)).status_code == 201
    retired = await client.delete(f"/api/v1/sites/{site_id}", headers=SUPERVISOR)
    assert retired.status_code == 200 and retired.json()["retired_at"] is not None
    again = await client.delete(f"/api/v1/sites/{site_id}", headers=SUPERVISOR)
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
    assert (await client.delete("/api/v1/sites/nowhere-at-all", headers=SUPERVISOR)).status_code == 404


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
    response = await client.post("/api/v1/sites", json=body, headers=SUPERVISOR)
    assert response.status_code == 422, response.text
    assert field in [e["field"] for e in response.json()["errors"]], response.text
    assert field in response.json()["detail"]


async def test_permanences_depend_on_an_active_fixed_site(client: httpx.AsyncClient) -> None:
    parent = new_id("poste")
    child = a_site(new_id("mairie"), kind="mobile_permanence", parent_site_id=parent,
                   schedule=[{"weekday": 2, "opens": "09:00", "closes": "12:00", "place": "Mairie"}])
    orphan = await client.post("/api/v1/sites", json=child, headers=SUPERVISOR)
    assert orphan.status_code == 422 and orphan.json()["errors"][0]["field"] == "parent_site_id"

    assert (await client.post("/api/v1/sites", json=a_site(parent), headers=SUPERVISOR)).status_code == 201
    assert (await client.post("/api/v1/sites", json=child, headers=SUPERVISOR)).status_code == 201
    children = await client.get("/api/v1/sites", params={"parent_site_id": parent}, headers=ADVISER)
    assert [s["site_id"] for s in children.json()["sites"]] == [child["site_id"]]

    blocked = await client.delete(f"/api/v1/sites/{parent}", headers=SUPERVISOR)
    assert blocked.status_code == 409 and child["site_id"] in blocked.json()["detail"]
    as_bus = a_site(parent, kind="bus",
                    schedule=[{"weekday": 1, "opens": "09:00", "closes": "12:00", "place": "Place"}])
    refused = await client.post("/api/v1/sites", json=as_bus, headers=SUPERVISOR)
    assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == "kind"

    assert (await client.delete(f"/api/v1/sites/{child['site_id']}", headers=SUPERVISOR)).status_code == 200
    assert (await client.delete(f"/api/v1/sites/{parent}", headers=SUPERVISOR)).status_code == 200
    revived_child = await client.post("/api/v1/sites", json=child, headers=SUPERVISOR)
    assert revived_child.status_code == 422 and "retired" in revived_child.json()["detail"]


async def test_filters(client: httpx.AsyncClient) -> None:
    msa_only = new_id()
    bus = new_id("bus")
    await client.post("/api/v1/sites", json=a_site(msa_only, operators=["msa"], department="33",
                                                   address={"postcode": "33127", "city": "Martignas"}),
                      headers=SUPERVISOR_33)
    await client.post("/api/v1/sites", json=a_site(bus, kind="bus", schedule=[
        {"weekday": 3, "opens": "09:30", "closes": "12:30", "place": "Monflanquin"}]), headers=SUPERVISOR)

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
    stranger = TokenSigner(FixedKeys(TokenKeySet.of(new_key())), REFERRAL_ISSUER)  # not the issuer's keys
    forged = {"Authorization": "Bearer " + issue_token(User("x", "ops", None, "x"), stranger)}
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
    refusal = doc["paths"]["/api/v1/sites/{site_id}"]["delete"]["responses"]["403"]["description"]
    assert "supervisor" in refusal and "their own department" in refusal and "ops" in refusal


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


# Who may write the registry, on the demo registry started once for these tests: Agen and
# its permanences in the Lot-et-Garonne (47), Martignas in the Gironde (33), Vigny and its
# permanence in the Val-d'Oise (95). None of these tests changes a demo site.
in_module_loop = pytest.mark.asyncio(loop_scope="module")
MARTIGNAS, AGEN, VIGNY = "martignas-sur-jalle-poste", "agen-leon-blum-poste", "vigny-poste"
VIGNY_MAIRIE, PONT_DU_CASSE = "vigny-mairie", "pont-du-casse-mairie"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def registry(module_database_url: str, kafka_bootstrap: str) -> AsyncIterator[httpx.AsyncClient]:
    settings = SitesSettings(  # type: ignore[call-arg]
        DATABASE_URL=module_database_url, KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap, RELAIS_TOKEN_JWKS_URL=JWKS_URL,
        RELAIS_DEMO_DATA=True)
    async with running(create_app(settings)) as client:
        yield client


def a_permanence(site_id: str, parent_site_id: str, department: str = "47") -> dict[str, Any]:
    return a_site(site_id, kind="mobile_permanence", parent_site_id=parent_site_id, department=department,
                  address={"postcode": f"{department}000", "city": "Mairie"},
                  schedule=[{"weekday": 2, "opens": "09:00", "closes": "12:00", "place": "Mairie"}])


def refused(response: httpx.Response, detail: str) -> None:
    assert response.status_code == 403, response.text
    assert response.json()["detail"] == detail


async def unchanged_martignas(registry: httpx.AsyncClient) -> None:
    martignas = (await registry.get(f"/api/v1/sites/{MARTIGNAS}", headers=ADVISER)).json()
    assert (martignas["kind"], martignas["department"]) == ("post_office", "33")
    assert martignas["parent_site_id"] is None and martignas["retired_at"] is None


@in_module_loop
async def test_the_47_supervisor_cannot_take_martignas_under_agen(registry: httpx.AsyncClient) -> None:
    """The probe: Martignas (33) described as a permanence of Agen, even as a site of the 47."""
    refused(await registry.post("/api/v1/sites", json=a_permanence(MARTIGNAS, AGEN), headers=SUPERVISOR),
            f"site {MARTIGNAS} belongs to department 33; your scope is 47")
    refused(await registry.post("/api/v1/sites", json=a_permanence(MARTIGNAS, AGEN, "33"),
                                headers=SUPERVISOR),
            f"site {MARTIGNAS} belongs to department 33; your scope is 47")
    await unchanged_martignas(registry)


@in_module_loop
async def test_the_47_supervisor_cannot_retire_vigny_or_martignas(registry: httpx.AsyncClient) -> None:
    for site_id, department in ((VIGNY_MAIRIE, "95"), (VIGNY, "95"), (MARTIGNAS, "33")):
        refused(await registry.delete(f"/api/v1/sites/{site_id}", headers=SUPERVISOR),
                f"site {site_id} belongs to department {department}; your scope is 47")
    listed = (await registry.get("/api/v1/sites", headers=ADVISER)).json()["sites"]
    assert {VIGNY_MAIRIE, VIGNY, MARTIGNAS} <= {s["site_id"] for s in listed}


@in_module_loop
async def test_the_47_supervisor_cannot_hang_a_47_permanence_on_a_33_site(registry: httpx.AsyncClient) -> None:
    site_id = new_id("mairie")
    refused(await registry.post("/api/v1/sites", json=a_permanence(site_id, MARTIGNAS), headers=SUPERVISOR),
            f"parent site {MARTIGNAS} belongs to department 33; your scope is 47")
    assert (await registry.get(f"/api/v1/sites/{site_id}", headers=ADVISER)).status_code == 404


@in_module_loop
async def test_the_47_supervisor_cannot_move_a_47_site_to_the_33(registry: httpx.AsyncClient) -> None:
    site_id = new_id("poste")
    assert (await registry.post("/api/v1/sites", json=a_site(site_id), headers=SUPERVISOR)).status_code == 201
    to_gironde = a_site(site_id, department="33", address={"postcode": "33127", "city": "Martignas-sur-Jalle"})
    refused(await registry.post("/api/v1/sites", json=to_gironde, headers=SUPERVISOR),
            f"site {site_id} would belong to department 33; your scope is 47")
    assert (await registry.get(f"/api/v1/sites/{site_id}", headers=ADVISER)).json()["department"] == "47"


@in_module_loop
async def test_ops_are_read_only(registry: httpx.AsyncClient) -> None:
    read_only = "ops have read-only access: they may not change the registry"
    refused(await registry.post("/api/v1/sites", json=a_site(new_id()), headers=OPS), read_only)
    refused(await registry.delete(f"/api/v1/sites/{PONT_DU_CASSE}", headers=OPS), read_only)
    refused(await registry.delete("/api/v1/sites/nowhere-at-all", headers=OPS), read_only)
    assert (await registry.get(f"/api/v1/sites/{PONT_DU_CASSE}", headers=OPS)).json()["retired_at"] is None


@in_module_loop
async def test_advisers_and_supervisors_without_a_department_write_nothing(registry: httpx.AsyncClient) -> None:
    adviser = "role 'adviser' may not change the registry; the supervisor of its department may"
    refused(await registry.post("/api/v1/sites", json=a_site(new_id()), headers=ADVISER), adviser)
    refused(await registry.delete(f"/api/v1/sites/{PONT_DU_CASSE}", headers=ADVISER), adviser)
    nowhere = "your account names no department: you may not change the registry"
    refused(await registry.post("/api/v1/sites", json=a_site(new_id()), headers=SUPERVISOR_NOWHERE), nowhere)
    refused(await registry.delete(f"/api/v1/sites/{PONT_DU_CASSE}", headers=SUPERVISOR_NOWHERE), nowhere)


@in_module_loop
async def test_the_33_supervisor_changes_the_gironde(registry: httpx.AsyncClient) -> None:
    poste, mairie = new_id("poste"), new_id("mairie")
    in_gironde = a_site(poste, department="33", address={"postcode": "33127", "city": "Martignas-sur-Jalle"})
    assert (await registry.post("/api/v1/sites", json=in_gironde, headers=SUPERVISOR_33)).status_code == 201
    permanence = a_permanence(mairie, MARTIGNAS, "33")
    assert (await registry.post("/api/v1/sites", json=permanence, headers=SUPERVISOR_33)).status_code == 201
    moved = await registry.post("/api/v1/sites", json={**permanence, "parent_site_id": poste}, headers=SUPERVISOR_33)
    assert moved.status_code == 200 and moved.json()["parent_site_id"] == poste
    assert (await registry.delete(f"/api/v1/sites/{mairie}", headers=SUPERVISOR_33)).status_code == 200
    assert (await registry.delete(f"/api/v1/sites/{poste}", headers=SUPERVISOR_33)).status_code == 200
    # …and nothing of the Lot-et-Garonne.
    refused(await registry.delete(f"/api/v1/sites/{PONT_DU_CASSE}", headers=SUPERVISOR_33),
            f"site {PONT_DU_CASSE} belongs to department 47; your scope is 33")


@in_module_loop
async def test_a_refused_write_publishes_nothing(registry: httpx.AsyncClient) -> None:
    newcomer = new_id()
    statuses = [
        (await registry.post("/api/v1/sites", json=a_permanence(MARTIGNAS, AGEN), headers=SUPERVISOR)).status_code,
        (await registry.delete(f"/api/v1/sites/{MARTIGNAS}", headers=SUPERVISOR)).status_code,
        (await registry.delete(f"/api/v1/sites/{VIGNY_MAIRIE}", headers=SUPERVISOR)).status_code,
        (await registry.delete(f"/api/v1/sites/{PONT_DU_CASSE}", headers=OPS)).status_code,
        (await registry.post("/api/v1/sites", json=a_site(newcomer), headers=OPS)).status_code,
        (await registry.post("/api/v1/sites", json=a_site(newcomer, department="33"), headers=SUPERVISOR)).status_code,
    ]
    assert statuses == [403] * 6
    # The demo seeding's one upsert each, and nothing for the site never created.
    assert [await outbox_count(registry, s) for s in (MARTIGNAS, VIGNY_MAIRIE, PONT_DU_CASSE)] == [1, 1, 1]
    assert await outbox_count(registry, newcomer) == 0


async def outbox_count(client: httpx.AsyncClient, site_id: str) -> int:
    transport = client._transport
    assert isinstance(transport, httpx.ASGITransport)
    app: Any = transport.app
    async with app.state.runtime.pool.acquire() as conn:
        return int(await conn.fetchval("SELECT count(*) FROM outbox WHERE subject = $1", site_id))
