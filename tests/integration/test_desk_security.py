"""The operator desk's defences, in-process against the real broker and a real
PostgreSQL, one desk for the module: sign-in throttled per account and per address
(429 with Retry-After before any password is checked) and its passwords checked off
the event loop; an expert's account closed by `python -m relais_desk disable-expert`
ends every session of it at once; a case closed for longer than the retention period
loses its personal data, and the retention run is recorded."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import argon2
import asyncpg
import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI
from markupsafe import escape

from relais_desk.adapters import store
from relais_desk.app import create_app
from relais_desk.service_layer import accounts
from relais_desk.settings import DeskSettings
from relais_kit import passwords, resealing, retention
from relais_kit.runtime import Runtime, until_ready
from relais_kit.settings import REPO_ROOT
from tests.integration.test_desk_service import INBOX, OPERATOR, csrf_of, send_routed, stamp
from tests.support import eventually, produce, seal_for

pytestmark = pytest.mark.asyncio(loop_scope="module")
PASSWORD = "un mot de passe assez long"
RETENTION_DAYS = 180
CHEAP = argon2.PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def desk(module_database_url: str, kafka_bootstrap: str) -> AsyncIterator[FastAPI]:
    settings = DeskSettings(DATABASE_URL=module_database_url, KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap,
                            RELAIS_DESK_OPERATOR=OPERATOR, RELAIS_DEMO_DATA=True, RELAIS_ENV="dev",
                            RELAIS_DESK_RETENTION_DAYS=RETENTION_DAYS)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        await until_ready(app)
        yield app


def runtime(app: FastAPI) -> Runtime:
    found: Runtime = app.state.runtime
    return found


@asynccontextmanager
async def browser(app: FastAPI, address: str = "127.0.0.1") -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, client=(address, 50123))
    async with httpx.AsyncClient(transport=transport, base_url="http://desk.test") as client:
        yield client


async def try_sign_in(client: httpx.AsyncClient, user: str, password: str, csrf: str | None = None) -> httpx.Response:
    """From the sign-in form (fetched unless its `csrf` token is given)."""
    token = csrf or csrf_of(await client.get("/connexion"))
    return await client.post("/connexion", data={"username": user, "password": password, "csrf_token": token})


async def new_expert(app: FastAPI, user: str, *, cheap: bool = False) -> None:
    """`cheap`: a hash whose check costs a millisecond (its cost is in the hash), for
    tests that try many passwords; else the platform's."""
    hashed = CHEAP.hash(PASSWORD) if cheap else passwords.hash_now(PASSWORD)
    async with runtime(app).pool.acquire() as conn:
        await accounts.add_expert(conn, user, hashed, f"Expert {user}")


async def test_sign_in_is_throttled_before_any_password_check_and_checks_off_the_event_loop(
        desk: FastAPI, monkeypatch: pytest.MonkeyPatch) -> None:
    for user in ("c.throttle", "c.one", "c.two", "c.three"):
        await new_expert(desk, user, cheap=True)
    loop_thread = threading.get_ident()
    checked_on: list[int] = []
    verify = argon2.PasswordHasher.verify

    def recording(self: argon2.PasswordHasher, hash: str | bytes, password: str | bytes) -> bool:
        checked_on.append(threading.get_ident())
        return verify(self, hash, password)

    monkeypatch.setattr(argon2.PasswordHasher, "verify", recording)

    async with browser(desk, "10.0.0.1") as client:
        for _ in range(9):
            assert (await try_sign_in(client, "c.throttle", "pas le bon")).status_code == 401
        # The 10th attempt is allowed, and a success clears the account's count.
        assert (await try_sign_in(client, "c.throttle", PASSWORD)).status_code == 303
    async with browser(desk, "10.0.0.1") as client:
        for _ in range(10):
            assert (await try_sign_in(client, "c.throttle", "pas le bon")).status_code == 401
        checks = len(checked_on)
        refused = await try_sign_in(client, "C.Throttle", PASSWORD)  # even the right one, however spelt
        assert refused.status_code == 429
        assert 0 < int(refused.headers["retry-after"]) <= 300
        assert "Trop de tentatives de connexion" in refused.text and "réessayez dans" in refused.text
        assert len(checked_on) == checks  # refused before any password check

    # Per address: 30 attempts a minute, whatever the accounts (10 each: none over its own limit).
    async with browser(desk, "10.0.0.2") as client:
        csrf = csrf_of(await client.get("/connexion"))
        tried = await asyncio.gather(*(try_sign_in(client, user, "devine", csrf)
                                       for user in ("c.one", "c.two", "c.three") for _ in range(10)))
        assert {r.status_code for r in tried} == {401}
        refused = await try_sign_in(client, "demo-expert", "demo", csrf)
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) > 0

    # Another address: unaffected; an unknown account is checked the same way.
    async with browser(desk, "10.0.0.3") as client:
        assert (await try_sign_in(client, "personne", "devine")).status_code == 401
        assert (await try_sign_in(client, "demo-expert", "demo")).status_code == 303
    # Every password was checked on a worker thread, never on the event loop's.
    assert len(checked_on) == 9 + 1 + 10 + 30 + 2
    assert loop_thread not in checked_on


async def test_a_closed_account_cannot_sign_in_and_its_sessions_end_at_once(
        desk: FastAPI, module_database_url: str) -> None:
    await new_expert(desk, "c.martin", cheap=True)
    async with browser(desk) as first, browser(desk) as second:
        for client in (first, second):
            assert (await try_sign_in(client, "c.martin", PASSWORD)).status_code == 303
            assert (await client.get("/dossiers")).status_code == 200

        closed = await desk_command(module_database_url, "disable-expert", "c.martin")
        assert "c.martin disabled" in closed and "2 session(s) ended" in closed
        for client in (first, second):
            ended = await client.get("/dossiers")
            assert ended.status_code == 303 and ended.headers["location"] == "/connexion"
        refused = await try_sign_in(first, "c.martin", PASSWORD)
        assert refused.status_code == 401 and "Identifiant ou mot de passe incorrect" in refused.text
        async with runtime(desk).pool.acquire() as conn:
            assert await conn.fetchval("SELECT count(*) FROM sessions WHERE user_id = 'c.martin'") == 0
            assert await conn.fetchval("SELECT disabled_at IS NOT NULL FROM experts WHERE user_id = 'c.martin'")

        assert "c.martin enabled" in await desk_command(module_database_url, "enable-expert", "c.martin")
        assert (await try_sign_in(first, "c.martin", PASSWORD)).status_code == 303
        assert (await first.get("/dossiers")).status_code == 200

        # A session opened by a sign-in that raced the closing opens nothing either.
        async with runtime(desk).pool.acquire() as conn:
            await conn.execute("UPDATE experts SET disabled_at = now() WHERE user_id = 'c.martin'")
            with pytest.raises(accounts.NoSuchExpert):
                await accounts.disable_expert(conn, "nobody")
        assert (await first.get("/dossiers")).status_code == 303


async def desk_command(database_url: str, *args: str) -> str:
    """`python -m relais_desk …` as ops run it; its output."""
    env = {**os.environ, "DATABASE_URL": database_url, "RELAIS_DESK_OPERATOR": OPERATOR, "RELAIS_ENV": "dev",
           "PYTHONPATH": os.pathsep.join(str(REPO_ROOT / p) for p in ("libs/relais_kit", "services/desk"))}
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "relais_desk", *args, env=env,
                                                   stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()[-2000:]
    return out.decode()


async def test_a_closed_case_loses_its_personal_data_after_the_retention_period(
        desk: FastAPI, kafka_bootstrap: str) -> None:
    answered, cancelled, still_open = (str(uuid.uuid4()) for _ in range(3))
    summary = f"Expulsion locative, audience prochaine {uuid.uuid4().hex[:6]}"
    info = f"Le bail est joint {uuid.uuid4().hex[:6]}"
    to_citizen = f"Votre aide juridictionnelle est accordée {uuid.uuid4().hex[:6]}."
    pool = runtime(desk).pool
    for referral_id in (answered, cancelled, still_open):
        await send_routed(kafka_bootstrap, referral_id, summary, "Lefebvre")
    await produce(kafka_bootstrap, INBOX, "referral.cancelled",
                  {"referral_id": cancelled, "operator": OPERATOR, "cancelled_at": stamp(datetime.now(UTC)),
                   "reason": "La personne a trouvé une autre solution."}, subject=cancelled, source="/relais/referral")
    await eventually(lambda: status_is(pool, cancelled, "cancelled"), what="the cancellation")
    await eventually(lambda: status_is(pool, answered, "new"), what="the case to answer")

    async with browser(desk, "10.0.0.9") as client:
        assert (await try_sign_in(client, "demo-expert", "demo")).status_code == 303
        csrf = csrf_of(await client.get("/dossiers"))
        assert (await client.post(f"/dossiers/{answered}/accuser-reception",
                                  data={"case_reference": "JUS-2026-7788", "csrf_token": csrf})).status_code == 303
        await produce(kafka_bootstrap, INBOX, "referral.info_provided", info_provided(answered, info),
                      subject=answered, source="/relais/referral")
        await eventually(lambda: status_is(pool, answered, "info_received"), what="the information")
        assert (await client.post(f"/dossiers/{answered}/repondre", data={
            "outcome": "resolved", "message_to_citizen": to_citizen, "message_to_adviser": "Dossier complet.",
            "csrf_token": csrf})).status_code == 303

        closed_at = datetime.now(UTC)
        steps = runtime(desk).retention_steps
        early = await retention.run_once(pool, steps, trigger="command",
                                         at=closed_at + timedelta(days=RETENTION_DAYS - 1))
        assert early is not None
        assert (await personal_data_of(pool, answered))["case"] is not None  # not yet

        at = closed_at + timedelta(days=RETENTION_DAYS, minutes=5)
        counts = await retention.run_once(pool, steps, trigger="command", at=at)
        # answered: routed, acknowledged, information, answer; cancelled: routed, cancelled.
        assert counts is not None and counts["desk_closed_cases"] >= 2 and counts["desk_case_events"] >= 6
        for referral_id in (answered, cancelled):
            held = await personal_data_of(pool, referral_id)
            assert (held["case"], held["reference"], held["erased_at"], held["entries"]) == (None, None, at, [])
            assert held["entries_left"] > 0  # the timeline's kinds and times stay
        kept = await personal_data_of(pool, still_open)
        assert kept["case"] is not None and kept["erased_at"] is None
        async with pool.acquire() as conn:
            run = await conn.fetchrow("SELECT trigger, counts FROM retention_runs WHERE started_at = $1", at)
        assert run["trigger"] == "command" and json.loads(run["counts"]) == counts

        page = await client.get(f"/dossiers/{answered}")
        assert page.status_code == 200 and "Répondu" in page.text
        assert "ont été effacées le" in page.text and f"{RETENTION_DAYS} jours après la clôture" in page.text
        for text in (summary, "Lefebvre", info, to_citizen, "JUS-2026-7788"):
            assert str(escape(text)) not in page.text

    # What arrives for an erased case afterwards is not kept.
    await produce(kafka_bootstrap, INBOX, "referral.info_provided", info_provided(answered, info),
                  subject=answered, source="/relais/referral")

    async def late_entry() -> list[Any] | None:
        async with pool.acquire() as conn:
            rows = await conn.fetch("SELECT personal_data FROM case_events WHERE referral_id = $1"
                                    " AND kind = 'info_provided' ORDER BY id", answered)
        return list(rows) if len(rows) == 2 else None
    rows = await eventually(late_entry, what="the late information")
    assert [r["personal_data"] for r in rows] == [None, None]


async def status_is(pool: asyncpg.Pool, referral_id: str, status: str) -> bool:
    async with pool.acquire() as conn:
        return bool(await conn.fetchval("SELECT status = $2 FROM cases WHERE referral_id = $1", referral_id, status))


async def test_texts_stored_before_sealing_still_read_and_get_sealed(desk: FastAPI, kafka_bootstrap: str) -> None:
    """A desk upgraded in place: its older texts are in clear until the re-sealing loop
    seals them, and read the same before and after."""
    referral_id = str(uuid.uuid4())
    pool, vault = runtime(desk).pool, runtime(desk).vault
    await send_routed(kafka_bootstrap, referral_id, "Demande d'avant le chiffrement", "Roux")
    await eventually(lambda: status_is(pool, referral_id, "new"), what="the case")
    question = f"Une question d'avant le chiffrement {uuid.uuid4().hex[:6]} ?"
    async with pool.acquire() as conn:
        await conn.execute("INSERT INTO case_events (referral_id, at, kind, actor, detail)"
                           " VALUES ($1, now(), 'request_info', 'demo-expert', $2)",
                           referral_id, json.dumps({"question": question}, ensure_ascii=False))
        await conn.execute("UPDATE cases SET case_reference = 'JUS-AVANT-01' WHERE referral_id = $1", referral_id)

    async with browser(desk, "10.0.0.8") as client:
        assert (await try_sign_in(client, "demo-expert", "demo")).status_code == 303
        before = await client.get(f"/dossiers/{referral_id}")
        assert str(escape(question)) in before.text and "JUS-AVANT-01" in before.text

        await resealing.reseal_all(pool, vault, store.SEALED)
        async with pool.acquire() as conn:
            details = await conn.fetch("SELECT detail FROM case_events WHERE referral_id = $1", referral_id)
            reference = await conn.fetchval("SELECT case_reference FROM cases WHERE referral_id = $1", referral_id)
        assert all(d["detail"].startswith(f"rv1:{vault.current_key_id()}:") for d in details)
        assert reference.startswith("rv1:") and "JUS-AVANT" not in reference
        after = await client.get(f"/dossiers/{referral_id}")
        assert str(escape(question)) in after.text and "JUS-AVANT-01" in after.text


def info_provided(referral_id: str, message: str) -> dict[str, Any]:
    return {"referral_id": referral_id, "operator": OPERATOR, "provided_at": stamp(datetime.now(UTC)),
            "personal_data": seal_for(OPERATOR, {"referral_id": referral_id, "message": message})}


async def personal_data_of(pool: asyncpg.Pool, referral_id: str) -> dict[str, Any]:
    """What the desk still holds of a case's personal data."""
    async with pool.acquire() as conn:
        case = await conn.fetchrow("SELECT personal_data, case_reference, erased_at FROM cases"
                                   " WHERE referral_id = $1", referral_id)
        entries = await conn.fetch("SELECT personal_data, detail FROM case_events WHERE referral_id = $1",
                                   referral_id)
    return {"case": case["personal_data"], "reference": case["case_reference"], "erased_at": case["erased_at"],
            "entries": [e for e in entries if e["personal_data"] is not None or e["detail"] is not None],
            "entries_left": len(entries)}
