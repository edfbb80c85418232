"""An issuer's public keys, fetched from its JWKS (`https://…/.well-known/jwks.json`, or
`file:///…` for a JWKS mounted beside the service) by the services that verify its
tokens.

Cached: fetched again when older than `max_age_s` (so a retired key stops being
accepted within that time), and when a token names a `kid` the cache does not know (a
new key after a rotation) — but at most once every `min_refresh_s`, whatever the
tokens say: a flood of forged `kid`s costs the issuer one request per interval (every
second while none is known yet, the issuer starting). If the
issuer cannot be reached, the keys already known stay in use; with none known, the
request gets a 503 (`KeysUnavailable`)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from jwt import PyJWTError
from jwt.algorithms import ECAlgorithm

from relais_kit.logs import log
from relais_kit.tokenkeys import ALGORITHM, CURVE
from relais_kit.tokens import MAX_KID, KeysUnavailable, TokenSigner

WELL_KNOWN = "/.well-known/jwks.json"
MAX_DOCUMENT_BYTES = 64 * 1024
MAX_KEYS = 20
HTTP_TIMEOUT_S = 5.0

Fetch = Callable[[], Awaitable[bytes]]


class JwksError(ValueError):
    """A JWKS document that cannot be used."""


def publish(app: FastAPI, signer: TokenSigner) -> None:
    """`GET /.well-known/jwks.json`: the issuer's public keys (cacheable one minute)."""

    @app.get(WELL_KNOWN, include_in_schema=False)
    async def jwks() -> JSONResponse:
        return JSONResponse(signer.jwks(), headers={"Cache-Control": "public, max-age=60"})


def parse_jwks(document: bytes) -> dict[str, ec.EllipticCurvePublicKey]:
    """The usable keys of a JWKS (public EC P-256 signing keys with a kid); others are
    skipped — a private key published by mistake too."""
    if len(document) > MAX_DOCUMENT_BYTES:
        raise JwksError(f"the JWKS is larger than {MAX_DOCUMENT_BYTES} bytes")
    try:
        raw = json.loads(document)
    except ValueError as exc:
        raise JwksError("the JWKS is not JSON") from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("keys"), list):
        raise JwksError("the JWKS has no \"keys\" list")
    keys: dict[str, ec.EllipticCurvePublicKey] = {}
    for jwk in raw["keys"][:MAX_KEYS]:
        if not isinstance(jwk, dict) or jwk.get("kty") != "EC" or jwk.get("crv") != CURVE or "d" in jwk:
            continue
        kid = jwk.get("kid")
        if not isinstance(kid, str) or not kid or len(kid) > MAX_KID or jwk.get("alg", ALGORITHM) != ALGORITHM \
                or jwk.get("use", "sig") != "sig":
            continue
        try:
            key = ECAlgorithm.from_jwk(jwk)
        except (PyJWTError, TypeError, ValueError) as exc:
            log.warning("jwks_key_skipped", kid=kid, reason=exc.__class__.__name__)
            continue
        if isinstance(key, ec.EllipticCurvePublicKey):
            keys[kid] = key
    if not keys:
        raise JwksError("the JWKS has no usable ES256 key")
    return keys


def fetcher(url: str, *, http: Callable[[], httpx.AsyncClient] | None = None) -> Fetch:
    """How to fetch the JWKS at `url` (https://, http:// in dev and test, file://)."""
    parts = urlsplit(url)
    if parts.scheme == "file":
        path = Path(unquote(parts.path))

        async def read_file() -> bytes:
            return await asyncio.to_thread(path.read_bytes)
        return read_file
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"a JWKS URL is https://, http:// or file:// (got {url!r})")
    client = http or (lambda: httpx.AsyncClient(timeout=HTTP_TIMEOUT_S, follow_redirects=False))

    async def get() -> bytes:
        async with client() as session:
            response = await session.get(url, headers={"Accept": "application/json"})
        if response.status_code != 200:
            raise JwksError(f"the issuer answered HTTP {response.status_code}")
        return response.content
    return get


class RemoteKeys:
    """`PublicKeys` from an issuer's JWKS, cached (see the module)."""

    def __init__(self, fetch: Fetch, *, where: str, max_age_s: float = 300.0, min_refresh_s: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._fetch = fetch
        self.where = where
        self.max_age_s = max_age_s
        self.min_refresh_s = min_refresh_s
        self._clock = clock
        self._keys: dict[str, ec.EllipticCurvePublicKey] = {}
        self._fetched_at: float | None = None  # when the keys were last fetched
        self._attempted_at: float | None = None  # when a fetch was last tried
        self._lock = asyncio.Lock()
        self.fetches = 0  # how many times the issuer was asked (tests, metrics)

    @classmethod
    def at(cls, url: str, **options: Any) -> RemoteKeys:
        return cls(fetcher(url), where=url, **options)

    async def key(self, kid: str) -> ec.EllipticCurvePublicKey | None:
        stale = self._fetched_at is None or self._clock() - self._fetched_at >= self.max_age_s
        if stale or kid not in self._keys:
            await self._refresh()
        if self._fetched_at is None:
            raise KeysUnavailable(f"the token issuer's keys could not be fetched from {self.where}")
        return self._keys.get(kid)

    async def _refresh(self) -> None:
        async with self._lock:  # concurrent requests wait for one fetch
            # Once every `min_refresh_s`; every second while no key is known yet (the
            # issuer starting), still never more.
            interval = self.min_refresh_s if self._fetched_at is not None else min(1.0, self.min_refresh_s)
            if self._attempted_at is not None and self._clock() - self._attempted_at < interval:
                return  # asked recently: the keys we have are the answer
            self._attempted_at = self._clock()
            self.fetches += 1
            try:
                keys = parse_jwks(await self._fetch())
            except (OSError, httpx.HTTPError, JwksError) as exc:
                log.warning("jwks_unavailable", url=self.where, reason=str(exc) or exc.__class__.__name__,
                            keeping=len(self._keys))
                return
            if set(keys) != set(self._keys):
                log.info("jwks_refreshed", url=self.where, kids=sorted(keys))
            self._keys = keys
            self._fetched_at = self._attempted_at
