"""What an attacker tried on the referral service (issue #9), against the service
in-process on the real broker and PostgreSQL: sign-in throttled per account and per
address before any password is hashed (API and pages share the count); bodies over the
limit refused with 413 before they are read; sign-out, token revocation, closing an
account or changing its role or site end every copy of a session at once; a token
must name a live session of its account and a known role; visit pages are audited and
journaled; bad numbers in queries are never a 500; the live feed stops with the
session; production serves no API map and sends HSTS; API answers are not cached."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from asyncio.subprocess import PIPE
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import jwt
import pytest
import pytest_asyncio
from fastapi import FastAPI
from joserfc.jwk import ECKey

from relais_kit import passwords, sealing, tokenkeys
from relais_kit.auth import User, api_audience, issue_token
from relais_kit.envelope import now
from relais_kit.settings import REPO_ROOT
from relais_kit.topics import load_topics
from relais_referral import accounts as accounts_command
from relais_referral.app import create_app
from relais_referral.service_layer import accounts, live
from relais_referral.settings import ReferralSettings
from tests.referral_app import VISIT, browser, csrf, refer, referral_api, served, sign_in_pages

pytestmark = pytest.mark.asyncio(loop_scope="module")
PER_ACCOUNT, PER_ADDRESS = 3, 8
SITE_ID = VISIT["site_id"]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def api(module_database_url: str, kafka_bootstrap: str) -> AsyncIterator[httpx.AsyncClient]:
    async with referral_api(module_database_url, kafka_bootstrap,
                            RELAIS_SIGNIN_LIMIT_PER_ACCOUNT=f"{PER_ACCOUNT} per minute",
                            RELAIS_SIGNIN_LIMIT_PER_ADDRESS=f"{PER_ADDRESS} per minute") as client:
        yield client


def app_of(api: httpx.AsyncClient) -> FastAPI:
    return api.app  # type: ignore[attr-defined,no-any-return]


def pool(api: httpx.AsyncClient) -> asyncpg.Pool:
    return app_of(api).state.runtime.pool  # type: ignore[no-any-return]


async def adviser(api: httpx.AsyncClient, user_id: str, site_id: str = SITE_ID) -> None:
    async with pool(api).acquire() as conn:
        await accounts.add_account(conn, user_id, "demo", "adviser", site_id, f"Conseiller {user_id}")


async def token(api: httpx.AsyncClient, user: str, address: str, password: str = "demo") -> httpx.Response:
    async with browser(app_of(api), address) as client:
        return await client.post("/api/v1/auth/token", data={"username": user, "password": password})


def bearer(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


async def opens(api: httpx.AsyncClient, headers: dict[str, str]) -> int:
    """What an API read answers with these credentials: 404 (signed in, no such
    referral) or 401."""
    return (await api.get(f"/api/v1/referrals/{uuid.uuid4()}", headers=headers)).status_code


async def signed_in(client: httpx.AsyncClient) -> bool:
    return (await client.get("/aujourdhui")).status_code == 200


# -- sign-in throttling ----------------------------------------------------------------------

async def test_parallel_wrong_passwords_are_throttled_before_any_hashing(
        api: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch) -> None:
    await adviser(api, "targeted")
    checked = 0
    verify = passwords.verify

    async def counted(password_hash: str | None, password: str) -> bool:
        nonlocal checked
        checked += 1
        return await verify(password_hash, password)

    monkeypatch.setattr(passwords, "verify", counted)
    answers = await asyncio.gather(*(token(api, "targeted", "10.9.1.1", f"guess-{n}") for n in range(60)))
    assert sorted(a.status_code for a in answers) == [401] * PER_ACCOUNT + [429] * (60 - PER_ACCOUNT)
    assert checked == PER_ACCOUNT  # the others were refused before any hashing
    for refused in (a for a in answers if a.status_code == 429):
        assert 1 <= int(refused.headers["Retry-After"]) <= 60
        assert "this account" in refused.json()["detail"]
    # The account stays closed to its right password, and from anywhere, for the window.
    assert (await token(api, "targeted", "10.9.1.2")).status_code == 429
    # Another account from another address is not concerned.
    assert (await token(api, "demo-adviser", "10.9.1.3", "wrong")).status_code == 401
    assert (await token(api, "demo-adviser", "10.9.1.3")).status_code == 200


async def test_a_successful_sign_in_clears_its_accounts_count(api: httpx.AsyncClient) -> None:
    await adviser(api, "forgetful")
    for _ in range(PER_ACCOUNT - 1):
        assert (await token(api, "forgetful", "10.9.2.1", "wrong")).status_code == 401
    assert (await token(api, "forgetful", "10.9.2.1")).status_code == 200
    answers = [(await token(api, "forgetful", "10.9.2.1", "wrong")).status_code for _ in range(PER_ACCOUNT + 1)]
    assert answers == [401] * PER_ACCOUNT + [429]


async def test_one_address_trying_many_accounts_is_throttled(api: httpx.AsyncClient) -> None:
    answers = await asyncio.gather(*(token(api, f"nobody-{n}", "10.9.3.1", "x") for n in range(PER_ADDRESS + 5)))
    assert sorted(a.status_code for a in answers) == [401] * PER_ADDRESS + [429] * 5
    assert all("this address" in a.json()["detail"] for a in answers if a.status_code == 429)
    assert (await token(api, "demo-adviser", "10.9.3.2")).status_code == 200  # another address


async def test_the_sign_in_page_shares_the_count_and_says_so_in_french(api: httpx.AsyncClient) -> None:
    await adviser(api, "pages-target")
    for _ in range(PER_ACCOUNT):
        assert (await token(api, "pages-target", "10.9.4.1", "wrong")).status_code == 401
    async with browser(app_of(api), "10.9.4.2") as web:
        page = await sign_in_pages(web, "pages-target", "demo")
        assert page.status_code == 429 and 1 <= int(page.headers["Retry-After"]) <= 60
        assert "Trop de tentatives de connexion pour cet identifiant. Réessayez dans" in page.text
        assert not await signed_in(web)


# -- bodies ------------------------------------------------------------------------------------

async def test_a_body_over_the_limit_is_refused_before_it_is_read(api: httpx.AsyncClient) -> None:
    limit = app_of(api).state.settings.max_body_bytes
    big = json.dumps({**VISIT, "padding": "x" * (limit + 1)}).encode()

    async def chunked() -> AsyncIterator[bytes]:
        for start in range(0, len(big), 64 * 1024):
            yield big[start:start + 64 * 1024]

    async with browser(app_of(api), "10.9.5.1") as anonymous:
        declared = await anonymous.post("/api/v1/visits", content=big, headers={"Content-Type": "application/json"})
        assert declared.status_code == 413 and declared.json()["errors"][0]["field"] == "(body)"
        streamed = await anonymous.post("/api/v1/visits", content=chunked(),
                                        headers={"Content-Type": "application/json"})
        assert streamed.status_code == 413
        form = await anonymous.post("/connexion", data={"user_id": "demo-adviser", "password": "x" * (limit + 1)})
        assert form.status_code == 413
    async with browser(app_of(api), "10.9.5.2") as web:
        await sign_in_pages(web, "demo-adviser")
        token_field = csrf(await web.get("/visites/nouvelle"))
        visit = await web.post("/visites/nouvelle", data={"csrf_token": token_field, "given_name": "x" * (limit + 1)})
        assert visit.status_code == 413
        fitting = await web.post("/visites/nouvelle", data={"csrf_token": token_field, "given_name": "Anne",
                                                            "family_name": "Roux", "contact_channel": "none"})
        assert fitting.status_code == 303


# -- sessions and tokens -----------------------------------------------------------------------

async def test_signing_out_ends_every_copy_of_the_session(api: httpx.AsyncClient) -> None:
    async with browser(app_of(api), "10.9.6.1") as web:
        assert (await sign_in_pages(web, "demo-adviser")).status_code == 303
        copied = dict(web.cookies)
        out = await web.post("/deconnexion", data={"csrf_token": csrf(await web.get("/aujourdhui"))})
        assert out.status_code == 303
    async with browser(app_of(api), "10.9.6.2") as thief:
        thief.cookies.update(copied)
        page = await thief.get("/aujourdhui")
        assert page.status_code == 303 and page.headers["location"].startswith("/connexion")


async def test_a_revoked_token_opens_nothing(api: httpx.AsyncClient) -> None:
    signed = await token(api, "demo-adviser", "10.9.7.1")
    assert signed.json()["expires_in"] == 3600
    headers = bearer(signed)
    assert await opens(api, headers) == 404
    assert (await api.post("/api/v1/auth/revoke", headers=headers)).status_code == 204
    assert await opens(api, headers) == 401
    assert (await api.post("/api/v1/auth/revoke", headers=headers)).status_code == 401
    assert await opens(api, bearer(await token(api, "demo-adviser", "10.9.7.1"))) == 404  # a new one works


async def test_a_token_needs_a_live_session_of_its_account_and_a_role(api: httpx.AsyncClient) -> None:
    signer = app_of(api).state.token_signer  # the issuer's own keys, as if stolen
    ghost = User("ghost", "adviser", SITE_ID, "Personne", session_id="made-up-session")
    assert await opens(api, {"Authorization": f"Bearer {issue_token(ghost, signer)}"}) == 401
    unbound = User("demo-adviser", "adviser", SITE_ID, "Sophie Conseillère")  # as tokens were: no session
    assert await opens(api, {"Authorization": f"Bearer {issue_token(unbound, signer)}"}) == 401
    real = jwt.decode(bearer(await token(api, "demo-adviser", "10.9.8.1"))["Authorization"][7:],
                      options={"verify_signature": False})
    claims_only = {k: v for k, v in real.items() if k not in ("iss", "aud", "iat", "exp")}

    def signed(claims: dict[str, Any]) -> str:
        return str(signer.sign(claims, audience=real["aud"], expires_at=now() + timedelta(minutes=5)))
    for claims in ({k: v for k, v in claims_only.items() if k != "role"}, {**claims_only, "role": "superuser"}):
        assert await opens(api, {"Authorization": f"Bearer {signed(claims)}"}) == 401
    assert await opens(api, {"Authorization": f"Bearer {signed(claims_only)}"}) == 404


async def command(api: httpx.AsyncClient, *argv: str) -> str:
    """`python -m relais_referral.accounts …` on the service's database and schema."""
    return await accounts_command.run(accounts_command.parser().parse_args(argv), app_of(api).state.settings)


async def test_closing_an_account_ends_all_of_its_sessions_and_sign_ins(api: httpx.AsyncClient) -> None:
    await adviser(api, "leaving")
    headers = bearer(await token(api, "leaving", "10.9.9.1"))
    async with browser(app_of(api), "10.9.9.2") as web:
        assert (await sign_in_pages(web, "leaving")).status_code == 303
        assert await command(api, "disable", "leaving") == "leaving: closed; 2 session(s) ended"
        assert await opens(api, headers) == 401
        assert not await signed_in(web)
        refused = await sign_in_pages(web, "leaving")
        assert refused.status_code == 401 and "Identifiant ou mot de passe incorrect." in refused.text
    assert (await token(api, "leaving", "10.9.9.3")).status_code == 401
    assert "leaving\tadviser\tagen-leon-blum-poste\t-\t-\t20" in await command(api, "list")
    assert await command(api, "enable", "leaving") == "leaving: reopened"
    assert await opens(api, bearer(await token(api, "leaving", "10.9.9.3"))) == 404


async def test_a_change_of_role_or_site_ends_the_accounts_sessions(api: httpx.AsyncClient) -> None:
    await adviser(api, "moving")
    headers = bearer(await token(api, "moving", "10.9.10.1"))
    said = await command(api, "add", "moving", "--role", "adviser", "--site", SITE_ID, "--name", "Nouveau nom")
    assert said == "moving: updated" and await opens(api, headers) == 404  # a name is no power
    said = await command(api, "add", "moving", "--role", "adviser", "--site", "villeneuve-poste", "--name", "N")
    assert said == "moving: updated; 1 session(s) ended" and await opens(api, headers) == 401
    promoted = bearer(await token(api, "moving", "10.9.10.1"))  # the password was kept
    said = await command(api, "add", "moving", "--role", "supervisor", "--department", "47", "--name", "N")
    assert said == "moving: updated; 1 session(s) ended" and await opens(api, promoted) == 401
    fresh = bearer(await token(api, "moving", "10.9.10.1"))["Authorization"][7:]
    claims = app_of(api).state.token_signer.verify(fresh, audience=api_audience("referral"))
    assert (claims["role"], claims["department"], "site_id" in claims) == ("supervisor", "47", False)


async def test_the_accounts_command_opens_an_account_with_a_password_from_stdin(api: httpx.AsyncClient) -> None:
    env = {**os.environ, "DATABASE_URL": app_of(api).state.settings.database_url,
           "PYTHONPATH": os.pathsep.join(str(REPO_ROOT / p) for p in ("libs/relais_kit", "services/referral", "."))}
    argv = ["-m", "relais_referral.accounts", "add", "new-adviser", "--role", "adviser", "--site", SITE_ID,
            "--name", "Nina Nouvelle", "--email", "nina@laposte.example.fr", "--password-stdin"]
    for password, code, said in (("short", 2, b"error: password: 12 characters at least"),
                                 ("a-password-of-ours", 0, b"new-adviser: opened")):
        process = await asyncio.create_subprocess_exec(sys.executable, *argv, env=env, stdin=PIPE, stdout=PIPE,
                                                       stderr=PIPE)
        out, err = await process.communicate(f"{password}\n".encode())
        assert process.returncode == code and said in out + err, (out, err)
    assert await opens(api, bearer(await token(api, "new-adviser", "10.9.15.1", "a-password-of-ours"))) == 404


async def test_production_refuses_the_demo_accounts(api: httpx.AsyncClient) -> None:
    assert await accounts.authenticate(pool(api), "demo-adviser", "demo", production=True) is None
    found = await accounts.authenticate(pool(api), "demo-adviser", "demo", production=False)
    assert found is not None and found.site_id == SITE_ID


# -- the audit of visit pages ----------------------------------------------------------------

async def test_visit_pages_are_audited_and_journaled_within_scope(api: httpx.AsyncClient) -> None:
    visit_id = (await api.post("/api/v1/visits", json=VISIT)).json()["visit_id"]
    async with browser(app_of(api), "10.9.11.1") as web:
        await sign_in_pages(web, "demo-adviser")
        assert (await web.get(f"/visites/{visit_id}")).status_code == 200
        assert (await web.get(f"/visites/{visit_id}/orienter")).status_code == 200
    await adviser(api, "elsewhere", "martignas-sur-jalle-poste")
    async with browser(app_of(api), "10.9.11.2") as other:
        await sign_in_pages(other, "elsewhere")
        assert (await other.get(f"/visites/{visit_id}")).status_code == 404
    async with pool(api).acquire() as conn:
        rows = await conn.fetch("SELECT user_id, action, channel, referral_id FROM audit WHERE visit_id = $1"
                                " ORDER BY id", visit_id)
        assert [tuple(r) for r in rows] == [("demo-adviser", "view_visit", "ui", None)] * 2
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute("INSERT INTO audit (user_id, role, action, channel)"
                               " VALUES ('x', 'adviser', 'view', 'ui')")
        await accounts.add_account(conn, "gironde-supervisor", "demo", "supervisor", None, "Gironde", "33")
    shown = f'data-action="view_visit" data-channel="ui" data-referral="" data-user="demo-adviser" ' \
            f'data-visit="{visit_id}"'
    for user, sees in (("demo-supervisor", True), ("demo-ops", True), ("gironde-supervisor", False)):
        async with browser(app_of(api), "10.9.11.3") as reader:
            await sign_in_pages(reader, user)
            journal = await reader.get("/journal?utilisateur=demo-adviser")
            assert journal.status_code == 200
            assert (shown in journal.text) is sees, user


# -- numbers in queries ------------------------------------------------------------------------

async def test_bad_numbers_in_queries_fall_back_never_a_500(api: httpx.AsyncClient) -> None:
    async with browser(app_of(api), "10.9.12.1") as ops:
        await sign_in_pages(ops, "demo-ops")
        for url in ("/demandes?page=²", "/demandes?page=٣", "/journal?page=²", "/journal?page=" + "9" * 40,
                    "/statistiques?periode=²", "/statistiques?periode=٧"):
            page = await ops.get(url)
            assert page.status_code == 200, url
        assert 'value="30" checked' in (await ops.get("/statistiques?periode=²")).text
        assert (await ops.get("/journal?date=²/11/2026")).status_code == 422


async def test_the_live_feed_reads_a_bad_position_as_none_and_ends_with_the_session(
        api: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(live, "HEARTBEAT_S", 0.3)
    referral_id = await refer(api)
    async with browser(app_of(api), "10.9.13.1") as web:
        await sign_in_pages(web, "demo-adviser")
        cookies = "; ".join(f"{k}={v}" for k, v in web.cookies.items())
        async with served(app_of(api)) as base, httpx.AsyncClient(base_url=base, timeout=30) as sse, \
                sse.stream("GET", f"/demandes/{referral_id}/flux?depuis=²",
                           headers={"Cookie": cookies, "Last-Event-ID": "²".encode()}) as feed:
            assert feed.status_code == 200
            lines = feed.aiter_lines()
            assert await anext(lines) == "retry: 5000"
            assert await asyncio.wait_for(_until(lines, "event: chronologie"), 30)  # from the start: 0
            await web.post("/deconnexion", data={"csrf_token": csrf(await web.get("/aujourdhui"))})
            assert await asyncio.wait_for(_until(lines, "event: fin"), 30)


async def _until(lines: AsyncIterator[str], wanted: str) -> bool:
    async for line in lines:
        if line == wanted:
            return True
    return False


# -- headers and the API map -------------------------------------------------------------------

async def test_api_answers_are_not_cached_and_the_map_is_served_outside_production(api: httpx.AsyncClient) -> None:
    referral_id = await refer(api)
    answer = await api.get(f"/api/v1/referrals/{referral_id}")
    assert answer.status_code == 200 and answer.headers["cache-control"] == "no-store"
    assert (await token(api, "demo-adviser", "10.9.14.1")).headers["cache-control"] == "no-store"
    docs = await api.get("/docs")
    assert docs.status_code == 200 and "strict-transport-security" not in docs.headers


async def test_production_serves_no_api_map_and_sends_hsts(tmp_path: Path) -> None:
    keys = tmp_path / "operator-keys"
    keys.mkdir()
    for operator in load_topics(REPO_ROOT / "deploy" / "topics.yaml").operators:
        key = ECKey.generate_key("P-256", parameters={"kid": f"{operator}-2027"}, private=True)
        sealing.public_key_path(keys, operator).write_text(json.dumps(key.as_dict(private=False)))
    tokenkeys.cmd_new(tmp_path / "token-keys.json")
    app = create_app(ReferralSettings(RELAIS_ENV="production",
                                      RELAIS_TOKEN_KEYS_FILE=str(tmp_path / "token-keys.json"),
                                      RELAIS_DATA_KEYS_FILE=str(tmp_path / "data-keys.json"),
                                      RELAIS_OPERATOR_KEYS_DIR=str(keys),
                                      RELAIS_PUBLIC_URL="https://relais.example"))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://relais.example") as web:
        for path in ("/docs", "/redoc", "/openapi.json"):
            response = await web.get(path)
            assert response.status_code == 404, path
            assert response.headers["strict-transport-security"].startswith("max-age=")
        page = await web.get("/connexion")
        assert page.status_code == 200 and "strict-transport-security" in page.headers
        assert "demo-adviser" not in page.text  # no demo notice

