"""The retention job of the referral service end to end, on a real PostgreSQL and the
real broker, run at chosen moments (`at=`): a visit solved on the spot is erased 90
days after it closed, a closed referral 180 days after with its visit, an open one only
once untouched for 730 days; what the statistics need stays; every erasure is asked of
the other services on `privacy` in the same transaction, and every run is recorded."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import asyncpg
import httpx
import pytest
import pytest_asyncio

from relais_kit import retention
from relais_kit.envelope import now
from relais_referral.adapters import store
from tests.referral_app import (
    citizen_visit,
    csrf,
    open_visit,
    operator_says,
    privacy_command,
    refer_visit,
    referral_api,
    signed_in,
    status_is,
)
from tests.support import TopicReader, eventually, of_type

pytestmark = pytest.mark.asyncio(loop_scope="module")
QUESTION = "Pouvez-vous joindre le relevé de la Banque Ignace ?"
TO_CITIZEN = "Madame Oudinot, votre dossier est complet."


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def api(module_database_url: str, kafka_bootstrap: str) -> AsyncIterator[httpx.AsyncClient]:
    # The kit's own step would prune every published outbox row at these dates: kept
    # here, to see the service delete those of the erased referrals and visits.
    async with referral_api(module_database_url, kafka_bootstrap, RELAIS_RETENTION_OUTBOX_DAYS=10000) as client:
        yield client


def pool(api: httpx.AsyncClient) -> asyncpg.Pool:
    return api.app.state.runtime.pool  # type: ignore[attr-defined, no-any-return]


async def run_at(api: httpx.AsyncClient, days: int) -> dict[str, int]:
    runtime = api.app.state.runtime  # type: ignore[attr-defined]
    counts = await retention.run_once(runtime.pool, runtime.retention_steps, trigger="command",
                                      at=now() + timedelta(days=days))
    assert counts is not None
    return {k: v for k, v in counts.items() if k in ("referrals_anonymised", "visits_anonymised")}


async def answered_and_closed(api: httpx.AsyncClient, bootstrap: str, visit_id: str) -> str:
    referral_id = await refer_visit(api, visit_id, summary="Madame Oudinot attend sa prime depuis trois mois.")
    await operator_says(bootstrap, "operator.info_requested", referral_id, question=QUESTION)
    await eventually(lambda: status_is(api, referral_id, "info_requested"), what="info_requested")
    assert (await api.post(f"/api/v1/referrals/{referral_id}/info", json={"message": "Relevé joint."})).is_success
    await operator_says(bootstrap, "operator.answered", referral_id, outcome="resolved",
                        message_to_citizen=TO_CITIZEN, message_to_adviser="Prime versée.")
    await eventually(lambda: status_is(api, referral_id, "answered"), what="answered")
    assert (await api.post(f"/api/v1/referrals/{referral_id}/close", json={"outcome": "resolved"})).is_success
    return referral_id


async def test_personal_data_lives_as_long_as_its_purpose(api: httpx.AsyncClient, kafka_bootstrap: str) -> None:
    closed_visit = await open_visit(api, citizen_visit("Hortense", "Oudinot", birth_date="1950-03-04",
                                                       email="hortense.oudinot@example.org"))
    closed = await answered_and_closed(api, kafka_bootstrap, closed_visit)
    open_one_visit = await open_visit(api, citizen_visit("Ignace", "Vautrin", birth_date="1961-05-06",
                                                         phone="06 55 44 33 22", channel="sms"))
    open_one = await refer_visit(api, open_one_visit)
    solved = await open_visit(api, citizen_visit("Léonie", "Marchal", channel="none"))
    await solve_on_the_spot(api, solved)
    await outbox_published(api)

    assert await run_at(api, 1) == {"referrals_anonymised": 0, "visits_anonymised": 0}  # closed yesterday
    assert await holding(api, closed, closed_visit, open_one, open_one_visit, solved) == [True] * 5

    assert await run_at(api, 91) == {"referrals_anonymised": 0, "visits_anonymised": 1}
    assert await holding(api, closed, closed_visit, open_one, open_one_visit, solved) == [True] * 4 + [False]
    assert await published_rows(api, solved) == 0  # its visit.opened and visit.closed are gone from the outbox

    before = await published_rows(api, closed, closed_visit)
    assert before > 0
    assert await run_at(api, 181) == {"referrals_anonymised": 1, "visits_anonymised": 1}
    assert await holding(api, closed, closed_visit, open_one, open_one_visit) == [False, False, True, True]
    assert await published_rows(api, closed, closed_visit) == 0

    body = (await api.get(f"/api/v1/referrals/{closed}")).json()  # what the statistics need stays
    assert body["status"] == "closed" and body["operator"] == "caf" and body["procedure"] == "caf.prime-activite"
    assert [e["event"] for e in body["timeline"]] == [
        "requested", "routed", "info_requested", "info_provided", "answered", "closed"]
    assert [e["detail"] for e in body["timeline"]][-2:] == [{"outcome": "resolved"}, {"outcome": "resolved"}]
    assert "due_at" in body["timeline"][1]["detail"] and body["timeline"][2]["detail"] == {}
    async with signed_in(api) as web:  # the pages still open, without the data
        referral_page = await web.get(f"/demandes/{closed}")
        visit_page = await web.get(f"/visites/{closed_visit}")
    assert referral_page.status_code == 200 and visit_page.status_code == 200
    for page in (referral_page.text, visit_page.text):
        assert "Oudinot" not in page and "Banque Ignace" not in page
        assert "données personnelles effacées" in page.lower()

    requests = await erasure_requests(kafka_bootstrap, lambda rs: any(closed in r["referral_ids"] and r["visit_ids"]
                                                                      for r in rs))
    for_closed = [r for r in requests if closed in r["referral_ids"]]
    assert sorted((r["reason"], r["visit_ids"]) for r in for_closed) == [("retention", []),
                                                                         ("retention", [closed_visit])]
    assert any(r["visit_ids"] == [solved] and r["referral_ids"] == [] for r in requests)
    assert not any(open_one in r["referral_ids"] for r in requests)

    async with pool(api).acquire() as conn:
        run = await conn.fetchrow("SELECT * FROM retention_runs ORDER BY id DESC LIMIT 1")
    assert run["trigger"] == "command" and run["started_at"] > now() + timedelta(days=180)
    assert json.loads(run["counts"])["referrals_anonymised"] == 1

    assert (await run_at(api, 731))["referrals_anonymised"] == 1  # the open one, untouched for two years
    assert await holding(api, open_one, open_one_visit) == [False, False]
    await erasure_requests(kafka_bootstrap, lambda rs: any(open_one in r["referral_ids"] and r["visit_ids"] == []
                                                           for r in rs))
    # The operator answers at last: recorded, with no one to notify and no words kept.
    await operator_says(kafka_bootstrap, "operator.answered", open_one, outcome="resolved",
                        message_to_citizen=TO_CITIZEN, message_to_adviser="Enfin traité.")
    answered = await eventually(lambda: status_is(api, open_one, "answered"), what="answered")
    assert answered["timeline"][-1]["detail"] == {"outcome": "resolved"}
    async with TopicReader(kafka_bootstrap, "referrals") as reader:
        records = await reader.until(lambda rs: any(r.key == open_one.encode()
                                                    for r in of_type(rs, "referral.answered")),
                                     what="referral.answered")
    event = json.loads(next(r.value for r in of_type(records, "referral.answered") if r.key == open_one.encode()))
    assert event["recipient"] == {"display_name": "Madame, Monsieur", "channel": "none"}
    assert "status_link" not in event  # nobody to send it to, and it opens nothing any more
    async with pool(api).acquire() as conn:  # the code made at routing is no longer kept
        assert await conn.fetchval("SELECT code FROM status_links WHERE referral_id = $1", open_one) is None


async def test_the_retention_command_runs_the_job_once_and_is_recorded(api: httpx.AsyncClient) -> None:
    code, out = await privacy_command(api, "retention", "--now", "--by", "ops.retention")
    assert code == 0
    assert dict(line.split("\t") for line in out.splitlines()).keys() == {
        "outbox_published", "processed_events", "sessions_expired", "referrals_anonymised", "visits_anonymised"}
    async with pool(api).acquire() as conn:
        recorded = await conn.fetchrow("SELECT * FROM privacy_requests WHERE requested_by = 'ops.retention'")
        run = await conn.fetchrow("SELECT * FROM retention_runs ORDER BY id DESC LIMIT 1")
    assert recorded["kind"] == "retention" and recorded["selector"] == "all"
    assert json.loads(recorded["counts"]) == json.loads(run["counts"]) and run["trigger"] == "command"


# --- helpers ---------------------------------------------------------------------------

async def holding(api: httpx.AsyncClient, *ids: str) -> list[bool]:
    """For each referral or visit: does it still hold personal data?"""
    vault = api.app.state.context.vault  # type: ignore[attr-defined]
    found = []
    async with pool(api).acquire() as conn:
        for id_ in ids:
            referral = await store.get_referral(conn, vault, id_)
            if referral is not None:
                found.append(referral.summary is not None and referral.anonymised_at is None)
                continue
            visit = await store.get_visit(conn, vault, id_)
            assert visit is not None
            indexed = await conn.fetchval("SELECT identity_index IS NOT NULL FROM visits WHERE visit_id = $1", id_)
            assert indexed is (visit.citizen is not None)
            found.append(visit.citizen is not None and visit.anonymised_at is None)
    return found


async def published_rows(api: httpx.AsyncClient, *keys: str) -> int:
    async with pool(api).acquire() as conn:
        count: int = await conn.fetchval(
            "SELECT count(*) FROM outbox WHERE record_key = ANY($1::text[]) AND published_at IS NOT NULL", list(keys))
    return count


async def outbox_published(api: httpx.AsyncClient) -> None:
    async def done() -> bool:
        async with pool(api).acquire() as conn:
            return not await conn.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL")
    await eventually(done, what="the outbox published")


async def erasure_requests(bootstrap: str, done: Any) -> list[dict[str, Any]]:
    async with TopicReader(bootstrap, "privacy") as reader:
        records = await reader.until(
            lambda rs: done([json.loads(r.value) for r in of_type(rs, "personal_data.erasure_requested")]),
            what="personal_data.erasure_requested")
    return [json.loads(r.value) for r in of_type(records, "personal_data.erasure_requested")]


async def solve_on_the_spot(api: httpx.AsyncClient, visit_id: str) -> None:
    async with signed_in(api) as web:
        page = await web.get(f"/visites/{visit_id}")
        done = await web.post(f"/visites/{visit_id}/resolu", data={"csrf_token": csrf(page), "confirmation": "oui"})
        assert done.status_code == 303, done.text
