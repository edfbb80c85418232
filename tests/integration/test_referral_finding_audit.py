"""Finding a citizen by name (issue #12 item 5), on the real database: the index holds
no name, every name search is audited without the words typed, a row written before
the index existed is indexed at start-up, and an erased visit is found no more."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import pytest_asyncio

from relais_kit.envelope import now
from relais_referral.adapters import privacy_store, store
from tests.referral_app import refer, referral_api

pytestmark = pytest.mark.asyncio(loop_scope="module")
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def api(module_database_url: str, kafka_bootstrap: str) -> AsyncIterator[httpx.AsyncClient]:
    async with referral_api(module_database_url, kafka_bootstrap) as client:
        yield client


def pool(api: httpx.AsyncClient) -> Any:
    return api.app.state.runtime.pool  # type: ignore[attr-defined]


@asynccontextmanager
async def web(api: httpx.AsyncClient, user: str) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=api.app)  # type: ignore[attr-defined]
    async with httpx.AsyncClient(transport=transport, base_url="http://referral") as client:
        page = await client.get("/connexion")
        token = CSRF.search(page.text)
        assert token
        signed = await client.post("/connexion", data={"csrf_token": token.group(1), "user_id": user,
                                                       "password": "demo"})
        assert signed.status_code == 303, signed.text
        yield client


def listed(page: httpx.Response) -> set[str]:
    assert page.status_code == 200, page.text[:300]
    return set(re.findall(r'<tr data-referral="([^"]+)"', page.text))


async def test_name_searches_are_audited_and_the_index_holds_no_name(api: httpx.AsyncClient) -> None:
    referral_id = await refer(api)  # Michel Cordier (tests/referral_app.py)
    async with pool(api).acquire() as conn:
        visit_id = str(await conn.fetchval("SELECT visit_id FROM referrals WHERE referral_id = $1", referral_id))
        index = await conn.fetchval("SELECT name_index FROM visits WHERE visit_id = $1", visit_id)
        assert index and not any("cord" in h or "michel" in h for h in index)
        before = await conn.fetchval("SELECT coalesce(max(id), 0) FROM search_audit")
    async with web(api, "demo-adviser") as adviser:
        assert referral_id in listed(await adviser.get("/demandes?recherche=cordier+mich"))
    async with pool(api).acquire() as conn:
        rows = await conn.fetch("SELECT * FROM search_audit WHERE id > $1 ORDER BY id", before)
    assert [(r["user_id"], r["kind"], r["channel"]) for r in rows] == [("demo-adviser", "name", "ui")]
    assert rows[0]["results"] >= 1 and rows[0]["query_hash"] and "cordier" not in rows[0]["query_hash"]
    assert set(dict(rows[0])) == {"id", "at", "user_id", "role", "kind", "query_hash", "results", "channel"}


async def test_rows_from_before_the_index_are_indexed_and_erased_ones_found_no_more(api: httpx.AsyncClient) -> None:
    referral_id = await refer(api)
    vault = api.app.state.context.vault  # type: ignore[attr-defined]
    async with pool(api).acquire() as conn:
        await conn.execute("UPDATE visits SET name_index = NULL"
                           " WHERE visit_id = (SELECT visit_id FROM referrals WHERE referral_id = $1)", referral_id)
        await conn.execute("UPDATE referrals SET operator_reference_index = NULL WHERE referral_id = $1", referral_id)
        assert await store.index_missing(conn, vault) >= 1
        assert await store.index_missing(conn, vault) == 0  # idempotent
    async with web(api, "demo-adviser") as adviser:
        assert referral_id in listed(await adviser.get("/demandes?recherche=Cordier"))
    async with pool(api).acquire() as conn:
        visit_id = str(await conn.fetchval("SELECT visit_id FROM referrals WHERE referral_id = $1", referral_id))
        assert await privacy_store.anonymise_visits(conn, [visit_id], now()) == [visit_id]
        assert await conn.fetchval("SELECT name_index FROM visits WHERE visit_id = $1", visit_id) is None
    async with web(api, "demo-adviser") as adviser:
        assert referral_id not in listed(await adviser.get("/demandes?recherche=Cordier"))
