"""Signing in with ProConnect (OpenID Connect) against a fake provider on a loopback port
(tests/integration/fake_oidc.py): the referral service in-process on the real broker
and PostgreSQL, a browser played by httpx (cookies kept, redirects followed by hand).

A known agent (e-mail of a local account, any case) signs in and lands on today's
page; an unknown one gets the French page saying their account is not open; a
tampered state, a missing attempt cookie, a wrong nonce, a foreign signature are
refused and sign no one in. The agent is the provider's (issuer, `sub`): their first
sign-in binds the account of their verified e-mail, later ones find it by `sub` alone;
an unverified address binds nothing, an account bound to another agent or closed is
refused, and ops may bind a `sub` beforehand."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlsplit

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI

from relais_kit.auth import REFERRAL_ISSUER, User, issue_token
from relais_kit.tokenkeys import TokenKeySet, new_key
from relais_kit.tokens import FixedKeys, TokenSigner
from relais_referral import accounts as accounts_command
from relais_referral.adapters import oidc
from relais_referral.entrypoints.ui.proconnect import config_of
from relais_referral.service_layer import accounts
from relais_referral.settings import ReferralSettings
from tests.integration.fake_oidc import CLIENT_ID, CLIENT_SECRET, FakeOidc
from tests.referral_app import referral_api

pytestmark = pytest.mark.asyncio(loop_scope="module")

BASE = "http://relais.test"
AGENT_EMAIL = "sophie.conseillere@laposte.example.fr"


@pytest.fixture(scope="module")
def provider() -> Iterator[FakeOidc]:
    with FakeOidc() as fake:
        yield fake


@pytest.fixture(autouse=True)
def fresh_provider(provider: FakeOidc) -> None:
    """Each test starts from the provider's defaults."""
    provider.email, provider.email_in_id_token, provider.userinfo_as_jwt = AGENT_EMAIL, False, True
    provider.subject, provider.email_verified = None, True
    provider.wrong_nonce = provider.foreign_key = False
    provider.algorithm = "RS256"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def app(module_database_url: str, kafka_bootstrap: str, provider: FakeOidc) -> AsyncIterator[FastAPI]:
    async with referral_api(module_database_url, kafka_bootstrap, RELAIS_OIDC_ISSUER=provider.issuer,
                            RELAIS_OIDC_CLIENT_ID=CLIENT_ID, RELAIS_OIDC_CLIENT_SECRET=CLIENT_SECRET,
                            RELAIS_OIDC_REDIRECT_URL=f"{BASE}/connexion/proconnect/retour") as api:
        application: FastAPI = api.app  # type: ignore[attr-defined]
        async with application.state.runtime.pool.acquire() as conn:
            adviser = await accounts.get(conn, "demo-adviser")
            assert adviser is not None
            await accounts.save(conn, replace(adviser, email=AGENT_EMAIL), keep_password=True)
        yield application


@pytest_asyncio.fixture(loop_scope="module")
async def browser(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A browser of its own (cookie jar) on the referral service."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as client:
        yield client


async def to_provider(browser: httpx.AsyncClient, path: str = "/connexion/proconnect") -> str:
    """Starts a sign-in; returns where the provider sends the browser back (its approval)."""
    start = await browser.get(path)
    assert start.status_code == 303, start.text
    authorize = start.headers["location"]
    query = parse_qs(urlsplit(authorize).query)
    assert query["code_challenge_method"] == ["S256"] and query["client_id"] == [CLIENT_ID]
    assert query["scope"] == ["openid email given_name usual_name uid"]
    assert {"state", "nonce", "code_challenge", "redirect_uri"} <= set(query)
    async with httpx.AsyncClient() as outside:
        approval = await outside.get(authorize)
    assert approval.status_code == 302, approval.text
    back = approval.headers["location"]
    assert back.startswith(f"{BASE}/connexion/proconnect/retour?")
    return back


async def signed_in(browser: httpx.AsyncClient) -> bool:
    today = await browser.get("/aujourdhui")
    return today.status_code == 200


async def test_the_sign_in_page_offers_proconnect(browser: httpx.AsyncClient) -> None:
    page = await browser.get("/connexion")
    assert page.status_code == 200
    assert "/connexion/proconnect" in page.text and "ProConnect" in page.text


async def test_a_known_agent_signs_in_with_proconnect(browser: httpx.AsyncClient, provider: FakeOidc) -> None:
    provider.email = AGENT_EMAIL.upper()  # addresses are compared without case
    back = await to_provider(browser, "/connexion/proconnect?suite=/demandes")
    done = await browser.get(back)
    assert done.status_code == 303, done.text
    assert done.headers["location"] == "/demandes"  # back where the agent was going
    assert "relais_proconnect" not in browser.cookies  # the attempt is forgotten
    today = await browser.get("/aujourdhui")
    assert today.status_code == 200
    assert "Sophie Conseillère" in today.text
    # Signing out of Relais signs out of ProConnect too, then comes back to /connexion.
    token = re.search(r'name="csrf_token" value="([^"]+)"', today.text)
    assert token is not None
    out = await browser.post("/deconnexion", data={"csrf_token": token.group(1)})
    assert out.status_code == 303 and out.headers["location"].startswith(f"{provider.issuer}/session/end?")
    assert parse_qs(urlsplit(out.headers["location"]).query)["post_logout_redirect_uri"] == [f"{BASE}/connexion"]
    assert not await signed_in(browser)


async def test_the_email_may_come_in_the_id_token_signed_es256(browser: httpx.AsyncClient,
                                                                provider: FakeOidc) -> None:
    provider.email_in_id_token, provider.algorithm = True, "ES256"
    done = await browser.get(await to_provider(browser))
    assert done.status_code == 303 and done.headers["location"] == "/aujourdhui", done.text
    assert await signed_in(browser)


async def test_userinfo_as_plain_json_is_read_too(browser: httpx.AsyncClient, provider: FakeOidc) -> None:
    provider.userinfo_as_jwt = False
    done = await browser.get(await to_provider(browser))
    assert done.status_code == 303, done.text
    assert await signed_in(browser)


async def test_an_unknown_agent_is_told_their_account_is_not_open(browser: httpx.AsyncClient,
                                                                   provider: FakeOidc) -> None:
    provider.email = "inconnu@example.gouv.fr"
    page = await browser.get(await to_provider(browser))
    assert page.status_code == 403
    assert "Votre compte n'est pas encore ouvert dans Relais" in page.text.replace("&#39;", "'")
    assert "inconnu@example.gouv.fr" in page.text
    assert not await signed_in(browser)


async def test_a_tampered_state_is_refused(browser: httpx.AsyncClient) -> None:
    back = await to_provider(browser)
    parts = urlsplit(back)
    query = parse_qs(parts.query)
    tampered = f"{BASE}{parts.path}?code={query['code'][0]}&state=forged-{query['state'][0][:10]}"
    page = await browser.get(tampered)
    assert page.status_code == 403
    assert "Connexion refusée" in page.text
    assert not await signed_in(browser)


async def test_a_callback_without_the_attempt_cookie_is_refused(app: FastAPI, provider: FakeOidc) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as starter:
        back = await to_provider(starter)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as other:
        page = await other.get(back)  # another browser: a login CSRF attempt
        assert page.status_code == 400
        assert "Connexion expirée" in page.text
        assert not await signed_in(other)


async def test_a_wrong_nonce_is_refused(browser: httpx.AsyncClient, provider: FakeOidc) -> None:
    provider.wrong_nonce = True
    page = await browser.get(await to_provider(browser))
    assert page.status_code == 403
    assert "Connexion refusée" in page.text
    assert not await signed_in(browser)


async def test_a_foreign_signature_is_refused(browser: httpx.AsyncClient, provider: FakeOidc) -> None:
    provider.foreign_key = True
    page = await browser.get(await to_provider(browser))
    assert page.status_code == 403
    assert "Connexion refusée" in page.text
    assert not await signed_in(browser)


async def test_the_code_is_useless_a_second_time(browser: httpx.AsyncClient) -> None:
    back = await to_provider(browser)
    assert (await browser.get(back)).status_code == 303
    await browser.post("/deconnexion", data={"csrf_token": _csrf(await browser.get("/aujourdhui"))})
    replay = await browser.get(back)  # the attempt cookie is gone, and the provider spent the code
    assert replay.status_code in (400, 403)
    assert not await signed_in(browser)


async def agent(app: FastAPI, user_id: str, email: str) -> None:
    """An adviser account with this work address, not bound to any agent yet."""
    async with app.state.runtime.pool.acquire() as conn:
        await accounts.add_account(conn, user_id, "a-long-password", "adviser", "agen-leon-blum-poste",
                                   f"Agent {user_id}", email=email)


async def binding(app: FastAPI, user_id: str) -> tuple[Any, Any]:
    async with app.state.runtime.pool.acquire() as conn:
        row = await conn.fetchrow("SELECT oidc_issuer, oidc_subject FROM accounts WHERE user_id = $1", user_id)
    return row["oidc_issuer"], row["oidc_subject"]


async def test_the_first_sign_in_binds_the_agent_and_later_ones_need_no_email(
        app: FastAPI, browser: httpx.AsyncClient, provider: FakeOidc) -> None:
    await agent(app, "agent-bound", "lea.martin@laposte.example.fr")
    provider.email, provider.subject = "Lea.Martin@laposte.example.fr", "sub-lea"
    assert (await browser.get(await to_provider(browser))).status_code == 303
    assert await binding(app, "agent-bound") == (provider.issuer, "sub-lea")
    await browser.post("/deconnexion", data={"csrf_token": _csrf(await browser.get("/aujourdhui"))})
    # The provider now gives another address, even an unverified one: the `sub` decides.
    provider.email, provider.email_verified = "lea.martin@ailleurs.example.fr", False
    assert (await browser.get(await to_provider(browser))).status_code == 303
    assert "Agent agent-bound" in (await browser.get("/aujourdhui")).text


async def test_an_account_bound_to_another_agent_is_refused(app: FastAPI, browser: httpx.AsyncClient,
                                                            provider: FakeOidc) -> None:
    await agent(app, "agent-taken", "paul.roux@caf.example.fr")
    provider.email, provider.subject = "paul.roux@caf.example.fr", "sub-paul"
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as first:
        assert (await first.get(await to_provider(first))).status_code == 303
    provider.subject = "sub-someone-else"  # the same address, at another agent of the provider
    page = await browser.get(await to_provider(browser))
    assert page.status_code == 403 and "Compte rattaché à une autre identité" in page.text
    assert not await signed_in(browser)
    assert await binding(app, "agent-taken") == (provider.issuer, "sub-paul")


@pytest.mark.parametrize(("verified", "provider_vouches", "binds"), [
    (False, False, False), (None, False, False), (False, True, False), (None, True, True)])
async def test_only_a_verified_email_binds_an_account(app: FastAPI, browser: httpx.AsyncClient,
                                                      provider: FakeOidc, verified: bool | None,
                                                      provider_vouches: bool, binds: bool) -> None:
    """`email_verified` false, or absent, binds nothing — unless the provider is known to
    release verified addresses only (RELAIS_OIDC_EMAILS_VERIFIED) and does not say false."""
    user_id = f"agent-{verified}-{provider_vouches}".lower()
    await agent(app, user_id, f"{user_id}@impots.example.fr")
    provider.email, provider.subject, provider.email_verified = f"{user_id}@impots.example.fr", user_id, verified
    settings = app.state.settings
    app.state.settings = settings.model_copy(update={"oidc_emails_verified": provider_vouches})
    try:
        page = await browser.get(await to_provider(browser))
    finally:
        app.state.settings = settings
    if binds:
        assert page.status_code == 303 and await signed_in(browser)
        assert await binding(app, user_id) == (provider.issuer, user_id)
    else:
        assert page.status_code == 403 and "Adresse électronique non vérifiée" in page.text
        assert not await signed_in(browser)
        assert await binding(app, user_id) == (None, None)


async def test_a_closed_account_is_refused_and_its_sessions_end(app: FastAPI, browser: httpx.AsyncClient,
                                                                provider: FakeOidc) -> None:
    await agent(app, "agent-leaving", "jean.petit@ants.example.fr")
    provider.email, provider.subject = "jean.petit@ants.example.fr", "sub-jean"
    assert (await browser.get(await to_provider(browser))).status_code == 303
    assert await signed_in(browser)
    async with app.state.runtime.pool.acquire() as conn, conn.transaction():
        assert await accounts.disable(conn, "agent-leaving") == 1
    assert not await signed_in(browser)  # the session ended with the account
    page = await browser.get(await to_provider(browser))
    assert page.status_code == 403 and "Compte fermé" in page.text
    assert not await signed_in(browser)


async def test_ops_may_bind_an_agent_beforehand(app: FastAPI, browser: httpx.AsyncClient, provider: FakeOidc) -> None:
    command = accounts_command.parser().parse_args([
        "add", "agent-prebound", "--role", "adviser", "--site", "agen-leon-blum-poste", "--name", "Agent Lié",
        "--oidc-subject", "sub-prebound", "--oidc-issuer", provider.issuer])
    said = await accounts_command.run(command, app.state.settings)  # DATABASE_URL: the app's
    assert said == "agent-prebound: opened"
    # No account has this address, and the provider does not vouch for it: the `sub` is enough.
    provider.email, provider.subject, provider.email_verified = "personne@example.fr", "sub-prebound", False
    assert (await browser.get(await to_provider(browser))).status_code == 303
    assert "Agent Lié" in (await browser.get("/aujourdhui")).text


def _csrf(page: httpx.Response) -> str:
    marker = 'name="csrf_token" value="'
    start = page.text.index(marker) + len(marker)
    return page.text[start:page.text.index('"', start)]


# -- without the service --------------------------------------------------------------------

async def test_proconnect_is_off_without_an_issuer_and_checked_with_one() -> None:
    assert config_of(ReferralSettings()) is None
    with pytest.raises(ValueError, match="RELAIS_OIDC_CLIENT_ID"):
        ReferralSettings(RELAIS_OIDC_ISSUER="https://proconnect.example/api/v2")
    config = config_of(ReferralSettings(RELAIS_OIDC_ISSUER="https://proconnect.example/api/v2",
                                        RELAIS_OIDC_CLIENT_ID="c", RELAIS_OIDC_CLIENT_SECRET="s",
                                        RELAIS_OIDC_REDIRECT_URL="https://relais.example/connexion/proconnect/retour"))
    assert config is not None and config.scopes.split()[0] == "openid"


async def test_the_attempt_cookie_cannot_be_forged_nor_kept() -> None:
    key = TokenSigner(FixedKeys(TokenKeySet.of(new_key("k1"))), REFERRAL_ISSUER)
    other = TokenSigner(FixedKeys(TokenKeySet.of(new_key("k1"))), REFERRAL_ISSUER)
    attempt = oidc.new_transaction("/demandes")
    assert oidc.unseal(oidc.seal(attempt, key), key) == attempt
    assert oidc.unseal(oidc.seal(attempt, other), key) is None
    assert oidc.unseal(oidc.seal(attempt, key, at=0), key) is None  # older than ten minutes
    bearer = issue_token(User("u", "ops", None, "U"), key)  # signed by the same keys, for the APIs
    assert oidc.unseal(bearer, key) is None
    assert len(attempt.code_challenge) == 43 and "=" not in attempt.code_challenge


async def test_the_client_names_why_it_refuses(provider: FakeOidc) -> None:
    client = oidc.OidcClient(oidc.OidcConfig(provider.issuer, CLIENT_ID, CLIENT_SECRET, f"{BASE}/retour"))
    for setting, reason in (("", "state_mismatch"), ("wrong_nonce", "nonce_mismatch"),
                            ("foreign_key", "token_signature_invalid")):
        attempt, url = await client.begin()
        async with httpx.AsyncClient() as outside:
            params = dict(parse_qsl(urlsplit((await outside.get(url)).headers["location"]).query))
        if setting:
            setattr(provider, setting, True)
        else:
            params["state"] = "forged"
        with pytest.raises(oidc.OidcError) as refused:
            await client.complete(attempt, params)
        assert refused.value.reason == reason
        if setting:
            setattr(provider, setting, False)
    attempt, url = await client.begin()
    async with httpx.AsyncClient() as outside:
        params = dict(parse_qsl(urlsplit((await outside.get(url)).headers["location"]).query))
    identity = await client.complete(attempt, params)
    assert (identity.email, identity.display_name, identity.uid) == (AGENT_EMAIL, "Anne Agent", "42")
    logout = await client.end_session_url(identity.id_token or "", f"{BASE}/connexion")
    assert logout is not None and logout.startswith(f"{provider.issuer}/session/end?")
    query = parse_qs(urlsplit(logout).query)
    assert query["id_token_hint"] == [identity.id_token] and query["post_logout_redirect_uri"] == [f"{BASE}/connexion"]
