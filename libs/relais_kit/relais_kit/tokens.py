"""Signed tokens (JWT, ES256) and how they are checked, whatever they carry (a bearer
token of the APIs, the session cookie of a UI, the transaction of a ProConnect sign-in).

An issuer signs with the current key of its key file (`relais_kit.tokenkeys`), naming
it in the header (`kid`), with `iss` (who signed), `aud` (for whom), `iat` and `exp`.
A verifier accepts a token only when all of this holds: the header says ES256 — no
other algorithm, not `none`, not HS256 (so a public key can never be used as an HMAC
secret) —, its `kid` names a key the issuer publishes, the signature verifies with
it, `iss` is the issuer expected, `aud` names the verifier, and it has not expired."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

import jwt
from cryptography.hazmat.primitives.asymmetric import ec

from relais_kit.envelope import now
from relais_kit.settings import PlatformSettings
from relais_kit.tokenkeys import ALGORITHM, FileTokenKeys, TokenKeySet

MAX_KID = 64
LEEWAY_S = 30  # clocks of two hosts may differ by this much


class TokenRefused(Exception):
    """Why a token is not accepted (said to the client; never quotes the token)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class KeysUnavailable(Exception):
    """The issuer's public keys could not be fetched yet (not the client's fault)."""


class KeySetSource(Protocol):
    """Where an issuer's keys come from (`tokenkeys.FileTokenKeys`, or a fixed set)."""

    @property
    def key_set(self) -> TokenKeySet: ...


class FixedKeys:
    def __init__(self, key_set: TokenKeySet) -> None:
        self.key_set = key_set


def key_id(token: str) -> str:
    """The `kid` of a token's header, once the header is known to say ES256."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise TokenRefused("malformed token") from exc
    if header.get("alg") != ALGORITHM:
        raise TokenRefused(f"only {ALGORITHM} tokens are accepted")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid or len(kid) > MAX_KID:
        raise TokenRefused("the token names no key (kid)")
    return kid


def claims_of(token: str, key: ec.EllipticCurvePublicKey | None, *, issuer: str, audience: str | Sequence[str],
              required: Sequence[str] = ()) -> dict[str, Any]:
    """The claims of a token signed by `key`; `audience`: one of these must be in `aud`."""
    if key is None:
        raise TokenRefused("signed by a key the issuer does not publish")
    try:
        claims: dict[str, Any] = jwt.decode(
            token, key, algorithms=[ALGORITHM], issuer=issuer,
            audience=audience if isinstance(audience, str) else list(audience), leeway=LEEWAY_S,
            options={"require": ["exp", "iat", "iss", "aud", *required]})
    except jwt.InvalidSignatureError as exc:
        raise TokenRefused("bad signature") from exc
    except jwt.ExpiredSignatureError as exc:
        raise TokenRefused("expired") from exc
    except jwt.InvalidAudienceError as exc:
        raise TokenRefused("not meant for this service (aud)") from exc
    except jwt.InvalidIssuerError as exc:
        raise TokenRefused("not signed by the expected issuer (iss)") from exc
    except jwt.PyJWTError as exc:
        raise TokenRefused(str(exc)) from exc
    return claims


class PublicKeys(Protocol):
    """An issuer's public keys, by `kid` (its own key file, or its JWKS fetched)."""

    async def key(self, kid: str) -> ec.EllipticCurvePublicKey | None: ...


async def verify(token: str, keys: PublicKeys, *, issuer: str, audience: str | Sequence[str],
                 required: Sequence[str] = ()) -> dict[str, Any]:
    kid = key_id(token)
    return claims_of(token, await keys.key(kid), issuer=issuer, audience=audience, required=required)


class TokenSigner:
    """An issuer: signs with its current key, verifies its own tokens with all of its
    keys, publishes their public half."""

    def __init__(self, keys: KeySetSource, issuer: str) -> None:
        self.keys = keys
        self.issuer = issuer

    def sign(self, claims: Mapping[str, Any], *, audience: str | Sequence[str], expires_at: datetime,
             issued_at: datetime | None = None) -> str:
        key = self.keys.key_set.current
        payload = {**claims, "iss": self.issuer, "aud": audience if isinstance(audience, str) else list(audience),
                   "iat": issued_at or now(), "exp": expires_at}
        return jwt.encode(payload, key.private, algorithm=ALGORITHM, headers={"kid": key.kid})

    def verify(self, token: str, *, audience: str | Sequence[str], required: Sequence[str] = ()) -> dict[str, Any]:
        """Its own token (a cookie it set, a transaction it started): synchronous."""
        kid = key_id(token)
        return claims_of(token, self.keys.key_set.public(kid), issuer=self.issuer, audience=audience,
                         required=required)

    def jwks(self) -> dict[str, Any]:
        return self.keys.key_set.jwks()

    async def key(self, kid: str) -> ec.EllipticCurvePublicKey | None:
        """As `PublicKeys`: the issuer checks its own tokens without fetching anything."""
        return self.keys.key_set.public(kid)


def signer_from(settings: PlatformSettings, name: str, issuer: str) -> TokenSigner:
    """The issuer's signer over its key file (RELAIS_TOKEN_KEYS_FILE; in dev and test
    `.data/keys/tokens-<name>.json`, created when missing)."""
    path = settings.token_keys_path(name)
    keys = FileTokenKeys(path) if settings.production else FileTokenKeys.create(path)
    return TokenSigner(keys, issuer)
