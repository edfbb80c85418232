"""Bearer tokens (relais_kit.auth): nothing defaults to a role, every claim the platform
relies on round-trips, and the issuer's check of the session refuses an ended one.
(The attacks on the signature itself: tests/unit/test_tokens.py.)"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

import httpx
import jwt
import pytest
from fastapi import Depends, FastAPI, HTTPException

from relais_kit.auth import (
    REFERRAL_ISSUER,
    ROLES,
    TokenVerifier,
    User,
    api_audience,
    current_user,
    issue_token,
    read_token,
    require_role,
)
from relais_kit.envelope import now
from relais_kit.tokenkeys import TokenKeySet, new_key
from relais_kit.tokens import FixedKeys, TokenSigner

SIGNER = TokenSigner(FixedKeys(TokenKeySet.of(new_key("k1"))), REFERRAL_ISSUER)
STRANGER = TokenSigner(FixedKeys(TokenKeySet.of(new_key("k1"))), REFERRAL_ISSUER)  # same kid, other key
VERIFIER = TokenVerifier(SIGNER, audience=api_audience("sites"))


def forged(claims: dict[str, Any]) -> str:
    """Well signed, with whatever claims (the issuer's key in the wrong hands)."""
    return SIGNER.sign(claims, audience=api_audience("sites"), expires_at=now() + timedelta(minutes=5))


async def refusal(token: str) -> HTTPException:
    with pytest.raises(HTTPException) as refused:
        await read_token(token, VERIFIER)
    return refused.value


def test_roles_are_the_three_of_the_platform() -> None:
    assert ROLES == ("adviser", "supervisor", "ops")


@pytest.mark.parametrize("who", [
    User("u-adviser", "adviser", "agen", "Sophie Martin", session_id="s-1"),
    User("u-supervisor", "supervisor", None, "Marc Petit", department="47", session_id="s-2"),
    User("u-ops", "ops", None, "Nina Ops"),
])
async def test_every_claim_round_trips(who: User) -> None:
    assert await read_token(issue_token(who, SIGNER), VERIFIER) == who


@pytest.mark.parametrize(("claims", "reason"), [
    ({"sub": "u1", "name": "Sophie"}, "role"),
    ({"sub": "u1", "role": "admin"}, "unknown role"),
    ({"sub": "u1", "role": "Adviser"}, "unknown role"),
    ({"sub": "u1", "role": ""}, "role"),
    ({"sub": "u1", "role": ["ops"]}, "unknown role"),
    ({"role": "ops"}, "sub"),
    ({"sub": "", "role": "ops"}, "subject"),
])
async def test_a_token_without_a_known_role_or_a_subject_is_refused(claims: dict[str, Any], reason: str) -> None:
    refused = await refusal(forged(claims))
    assert refused.status_code == 401 and reason in str(refused.detail)
    assert refused.headers == {"WWW-Authenticate": "Bearer"}


async def test_a_token_expired_forged_or_unsigned_is_refused() -> None:
    adviser = User("u1", "adviser", "agen", "Sophie")
    assert (await refusal(issue_token(adviser, SIGNER, ttl=timedelta(minutes=-5)))).status_code == 401
    assert (await refusal(issue_token(adviser, STRANGER))).detail == "invalid token: bad signature"
    unsigned = jwt.encode({"sub": "u1", "role": "ops", "exp": now() + timedelta(minutes=5)}, None,
                          algorithm="none")
    assert (await refusal(unsigned)).status_code == 401


class Issuer:
    """A service that issues tokens and checks, at every request, that their session
    is still alive (as the referral service does)."""

    def __init__(self) -> None:
        self.alive: set[str] = set()
        self.checked: list[User] = []
        app = FastAPI()
        app.state.token_verifier = VERIFIER

        @app.get("/api/v1/me")
        async def me(user: Annotated[User, Depends(current_user)]) -> dict[str, str | None]:
            return {"user_id": user.user_id, "session_id": user.session_id}

        @app.get("/api/v1/registry")
        async def registry(user: Annotated[User, Depends(require_role("supervisor"))]) -> dict[str, str]:
            return {"user_id": user.user_id}

        self.app = app

    async def check(self, user: User) -> bool:
        self.checked.append(user)
        return user.session_id in self.alive

    def client(self, token: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://relais.test",
                                 headers={"authorization": f"Bearer {token}"})


ADVISER = User("u1", "adviser", "agen", "Sophie", session_id="s-alive")


async def test_without_a_check_a_well_signed_token_is_enough() -> None:
    issuer = Issuer()
    async with issuer.client(issue_token(ADVISER, SIGNER)) as client:
        answer = await client.get("/api/v1/me")
    assert answer.status_code == 200 and answer.json() == {"user_id": "u1", "session_id": "s-alive"}


async def test_a_token_the_issuers_check_rejects_is_refused() -> None:
    issuer = Issuer()
    issuer.app.state.token_check = issuer.check
    token = issue_token(ADVISER, SIGNER)
    issuer.alive.add("s-alive")
    async with issuer.client(token) as client:
        assert (await client.get("/api/v1/me")).status_code == 200
        issuer.alive.clear()  # signed out
        ended = await client.get("/api/v1/me")
        assert ended.status_code == 401 and "session has ended" in ended.json()["detail"]
        assert ended.headers["www-authenticate"] == "Bearer"
        assert (await client.get("/api/v1/registry")).status_code == 401, "before any role check"
    assert issuer.checked[0] == ADVISER


async def test_a_role_check_answers_403_to_a_live_session_of_another_role() -> None:
    issuer = Issuer()
    issuer.app.state.token_check = issuer.check
    issuer.alive.add("s-alive")
    async with issuer.client(issue_token(ADVISER, SIGNER)) as client:
        assert (await client.get("/api/v1/registry")).status_code == 403
    supervisor = User("u2", "supervisor", None, "Marc", department="47", session_id="s-alive")
    async with issuer.client(issue_token(supervisor, SIGNER)) as client:
        assert (await client.get("/api/v1/registry")).json() == {"user_id": "u2"}
