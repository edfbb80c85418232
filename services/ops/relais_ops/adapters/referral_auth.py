"""The referral service's token API, as the console's sign-in uses it: a username and a
password for an access token (OAuth2 password form), and its revocation at sign-out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import httpx

from relais_kit.auth import TOKEN_URL

REVOKE_URL = "/api/v1/auth/revoke"


class SignInRefused(Exception):
    """Unknown account or wrong password."""


@dataclass
class SignInThrottled(Exception):
    """Too many attempts: retry after that many seconds."""

    retry_after_s: int


class AuthUnavailable(Exception):
    """The referral service does not answer (or answers nonsense)."""


class TokenIssuer(Protocol):
    async def token(self, username: str, password: str) -> str: ...

    async def revoke(self, token: str) -> None: ...


class ReferralAuth:
    def __init__(self, base_url: str, *, timeout_s: float = 5.0,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.transport = transport

    def _client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.base_url, timeout=self.timeout_s, transport=self.transport)

    async def token(self, username: str, password: str) -> str:
        try:
            async with self._client() as client:
                response = await client.post(TOKEN_URL, data={"username": username, "password": password})
        except httpx.HTTPError as exc:
            raise AuthUnavailable(f"{type(exc).__name__}: {exc}") from exc
        if response.status_code == 401:
            raise SignInRefused()
        if response.status_code == 429:
            try:
                retry = int(response.headers.get("Retry-After", "60"))
            except ValueError:
                retry = 60
            raise SignInThrottled(retry)
        if response.status_code != 200:
            raise AuthUnavailable(f"the token API answered {response.status_code}")
        try:
            token = response.json()["access_token"]
        except (ValueError, KeyError, TypeError) as exc:
            raise AuthUnavailable("the token API's answer has no access_token") from exc
        if not isinstance(token, str) or not token:
            raise AuthUnavailable("the token API's answer has no access_token")
        return token

    async def revoke(self, token: str) -> None:
        """Ends the token's session at the referral service (best effort: it expires
        within the hour anyway)."""
        try:
            async with self._client() as client:
                await client.post(REVOKE_URL, headers={"Authorization": f"Bearer {token}"})
        except httpx.HTTPError:
            return
