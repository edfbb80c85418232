"""Tokens only their issuer can mint (relais_kit.tokens, .tokenkeys, .jwks): what an
attacker tries is refused, the JWKS cache cannot be made to hammer the issuer, and keys
rotate with two valid during the change."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import HTTPException

from relais_kit import tokenkeys
from relais_kit.auth import (
    ALL_APIS,
    REFERRAL_ISSUER,
    TokenVerifier,
    User,
    api_audience,
    issue_token,
    read_token,
)
from relais_kit.envelope import now
from relais_kit.jwks import JwksError, RemoteKeys, parse_jwks
from relais_kit.tokenkeys import FileTokenKeys, TokenKeyError, TokenKeySet, new_key
from relais_kit.tokens import FixedKeys, KeysUnavailable, TokenRefused, TokenSigner

OPS = User("u-ops", "ops", None, "Nina Ops")
DESK_ISSUER = "relais-desk:justice"


class Issuer:
    """The referral service as the verifiers see it: a JWKS to fetch, counting fetches."""

    def __init__(self, signer: TokenSigner) -> None:
        self.signer = signer
        self.fetches = 0
        self.down = False

    async def fetch(self) -> bytes:
        self.fetches += 1
        if self.down:
            raise OSError("connection refused")
        return json.dumps(self.signer.jwks()).encode()


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def referral() -> TokenSigner:
    return TokenSigner(FixedKeys(TokenKeySet.of(new_key("r1"))), REFERRAL_ISSUER)


def verifier_of(issuer: Issuer, service: str = "sites", clock: Clock | None = None) -> TokenVerifier:
    keys = RemoteKeys(issuer.fetch, where="test", max_age_s=300, min_refresh_s=10, clock=clock or Clock())
    return TokenVerifier(keys, audience=api_audience(service))


async def refused(token: str, verifier: TokenVerifier) -> str:
    with pytest.raises(HTTPException) as refusal:
        await read_token(token, verifier)
    assert refusal.value.status_code == 401
    return str(refusal.value.detail)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hand_made(header: dict[str, Any], claims: dict[str, Any], secret: bytes | None) -> str:
    """A token built by hand, as an attacker does (PyJWT refuses to HMAC with a public key)."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    signature = b"" if secret is None else hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def ops_claims() -> dict[str, Any]:
    at = int(now().timestamp())
    return {"sub": "u-ops", "role": "ops", "iss": REFERRAL_ISSUER, "aud": list(ALL_APIS), "iat": at,
            "exp": at + 600}


# -- what an attacker tries --------------------------------------------------------------

async def test_the_issuers_own_token_is_accepted(referral: TokenSigner) -> None:
    assert await read_token(issue_token(OPS, referral), verifier_of(Issuer(referral))) == OPS


async def test_hs256_with_the_public_key_as_secret_is_refused(referral: TokenSigner) -> None:
    """Algorithm confusion: the public key is public, an HMAC with it proves nothing."""
    public = referral.keys.key_set.current.public
    pem = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    jwk = json.dumps(referral.jwks()["keys"][0]).encode()
    verifier = verifier_of(Issuer(referral))
    for secret in (pem, jwk):
        token = hand_made({"alg": "HS256", "typ": "JWT", "kid": "r1"}, ops_claims(), secret)
        assert await refused(token, verifier) == "invalid token: only ES256 tokens are accepted"


async def test_an_unsigned_token_is_refused(referral: TokenSigner) -> None:
    verifier = verifier_of(Issuer(referral))
    for alg in ("none", "None", "NONE"):
        token = hand_made({"alg": alg, "kid": "r1"}, ops_claims(), None)
        assert await refused(token, verifier) == "invalid token: only ES256 tokens are accepted"
    # The header says ES256 but there is no signature.
    signed = issue_token(OPS, referral)
    assert await refused(signed.rsplit(".", 1)[0] + ".", verifier) == "invalid token: bad signature"


async def test_another_algorithm_of_a_real_key_is_refused(referral: TokenSigner) -> None:
    stranger = ec.generate_private_key(ec.SECP384R1())
    token = jwt.encode(ops_claims(), stranger, algorithm="ES384", headers={"kid": "r1"})
    assert await refused(token, verifier_of(Issuer(referral))) == "invalid token: only ES256 tokens are accepted"


async def test_a_key_that_is_not_the_issuers_is_refused_whatever_its_kid(referral: TokenSigner) -> None:
    issuer = Issuer(referral)
    verifier = verifier_of(issuer)
    same_kid = TokenSigner(FixedKeys(TokenKeySet.of(new_key("r1"))), REFERRAL_ISSUER)
    assert await refused(issue_token(OPS, same_kid), verifier) == "invalid token: bad signature"
    forged_kid = TokenSigner(FixedKeys(TokenKeySet.of(new_key("forged"))), REFERRAL_ISSUER)
    assert await refused(issue_token(OPS, forged_kid), verifier) == \
        "invalid token: signed by a key the issuer does not publish"
    no_kid = jwt.encode(ops_claims(), new_key().private, algorithm="ES256")
    assert await refused(no_kid, verifier) == "invalid token: the token names no key (kid)"


async def test_a_flood_of_forged_kids_asks_the_issuer_once_per_interval(referral: TokenSigner) -> None:
    issuer, clock = Issuer(referral), Clock()
    verifier = verifier_of(issuer, clock=clock)
    assert await read_token(issue_token(OPS, referral), verifier) == OPS
    assert issuer.fetches == 1
    clock.t += 10
    for n in range(200):
        forger = TokenSigner(FixedKeys(TokenKeySet.of(new_key(f"forged-{n}"))), REFERRAL_ISSUER)
        await refused(issue_token(OPS, forger), verifier)
    assert issuer.fetches == 2, "one refresh for the first unknown kid, none after within the interval"
    clock.t += 10
    await refused(issue_token(OPS, TokenSigner(FixedKeys(TokenKeySet.of(new_key("late"))), REFERRAL_ISSUER)),
                  verifier)
    assert issuer.fetches == 3


async def test_a_token_for_another_service_is_refused(referral: TokenSigner) -> None:
    issuer = Issuer(referral)
    for_sites = issue_token(OPS, referral, audiences=[api_audience("sites")])
    assert await read_token(for_sites, verifier_of(issuer, "sites")) == OPS
    for service in ("notifications", "referral"):
        assert await refused(for_sites, verifier_of(issuer, service)) == \
            "invalid token: not meant for this service (aud)"
    no_aud = referral.sign({"sub": "u-ops", "role": "ops"}, audience=[], expires_at=now() + timedelta(minutes=5))
    assert (await refused(no_aud, verifier_of(issuer))).startswith("invalid token:")


async def test_a_token_of_another_issuer_is_refused(referral: TokenSigner) -> None:
    issuer = Issuer(referral)
    # The desk's own keys: unknown to the referral service's JWKS.
    desk = TokenSigner(FixedKeys(TokenKeySet.of(new_key("d1"))), DESK_ISSUER)
    assert await refused(issue_token(OPS, desk), verifier_of(issuer)) == \
        "invalid token: signed by a key the issuer does not publish"
    # The right key but another issuer's name (a cookie of the adviser's pages is not a token either).
    renamed = TokenSigner(referral.keys, DESK_ISSUER)
    assert await refused(issue_token(OPS, renamed), verifier_of(issuer)) == \
        "invalid token: not signed by the expected issuer (iss)"


async def test_an_expired_token_is_refused(referral: TokenSigner) -> None:
    expired = issue_token(OPS, referral, ttl=timedelta(minutes=-2))
    assert await refused(expired, verifier_of(Issuer(referral))) == "invalid token: expired"


async def test_a_garbled_token_is_refused(referral: TokenSigner) -> None:
    for token in ("", "abc", "a.b.c", "e30.e30.", issue_token(OPS, referral)[:-5] + "AAAAA"):
        await refused(token, verifier_of(Issuer(referral)))


# -- the JWKS cache ----------------------------------------------------------------------

async def test_the_keys_are_fetched_once_and_kept(referral: TokenSigner) -> None:
    issuer, clock = Issuer(referral), Clock()
    verifier = verifier_of(issuer, clock=clock)
    token = issue_token(OPS, referral)
    for _ in range(50):
        await read_token(token, verifier)
    assert issuer.fetches == 1
    clock.t += 300  # max age: fetched again
    await read_token(token, verifier)
    assert issuer.fetches == 2


async def test_an_unreachable_issuer_keeps_the_known_keys_and_answers_503_before(referral: TokenSigner) -> None:
    issuer, clock = Issuer(referral), Clock()
    verifier = verifier_of(issuer, clock=clock)
    issuer.down = True
    with pytest.raises(HTTPException) as unavailable:
        await read_token(issue_token(OPS, referral), verifier)
    assert unavailable.value.status_code == 503 and unavailable.value.headers == {"Retry-After": "2"}
    with pytest.raises(KeysUnavailable):  # within the second: not asked again
        await verifier.keys.key("r1")
    assert issuer.fetches == 1
    issuer.down = False
    clock.t += 1
    assert await read_token(issue_token(OPS, referral), verifier) == OPS
    issuer.down = True
    clock.t += 1000
    assert await read_token(issue_token(OPS, referral), verifier) == OPS, "the known keys stay in use"


def test_a_jwks_gives_only_public_es256_signing_keys(referral: TokenSigner) -> None:
    public = referral.jwks()["keys"][0]
    private = {**new_key("p").private_jwk(), "alg": "ES256"}
    rsa = {"kty": "RSA", "kid": "rsa", "n": "AQAB", "e": "AQAB"}
    hmac_key = {"kty": "oct", "kid": "h", "k": "c2VjcmV0"}
    other_alg = {**public, "kid": "x", "alg": "HS256"}
    encryption = {**public, "kid": "e", "use": "enc"}
    document = json.dumps({"keys": [public, private, rsa, hmac_key, other_alg, encryption]}).encode()
    assert list(parse_jwks(document)) == ["r1"]
    for bad in (b"[]", b"{", b'{"keys": []}', json.dumps({"keys": [private]}).encode(), b" " * 70_000):
        with pytest.raises(JwksError):
            parse_jwks(bad)


def test_the_published_keys_hold_no_private_part(referral: TokenSigner) -> None:
    for key in referral.jwks()["keys"]:
        assert set(key) == {"kty", "crv", "x", "y", "kid", "alg", "use"}


# -- rotation -----------------------------------------------------------------------------

async def test_a_rotation_keeps_both_keys_valid_then_the_retired_one_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    tokenkeys.cmd_new(path)
    signer = TokenSigner(FileTokenKeys(path, recheck_s=0), REFERRAL_ISSUER)
    issuer, clock = Issuer(signer), Clock()
    verifier = verifier_of(issuer, clock=clock)
    old_kid = signer.keys.key_set.current_id
    old = issue_token(OPS, signer)
    assert await read_token(old, verifier) == OPS

    tokenkeys.cmd_rotate(path)  # the running issuer takes it up: no restart
    new_kid = signer.keys.key_set.current_id
    new = issue_token(OPS, signer)
    assert new_kid != old_kid and jwt.get_unverified_header(new)["kid"] == new_kid
    assert {k["kid"] for k in signer.jwks()["keys"]} == {old_kid, new_kid}
    clock.t += 10  # the unknown kid is fetched at once (beyond the minimal interval)
    assert await read_token(new, verifier) == OPS
    assert await read_token(old, verifier) == OPS, "both keys verify during the change"
    assert signer.verify(old, audience=api_audience("sites"))["sub"] == "u-ops"

    with pytest.raises(TokenKeyError, match="current key"):
        tokenkeys.cmd_retire(path, new_kid)
    tokenkeys.cmd_retire(path, old_kid)
    assert [k["kid"] for k in signer.jwks()["keys"]] == [new_kid]
    with pytest.raises(TokenRefused, match="does not publish"):
        signer.verify(old, audience=api_audience("sites"))
    clock.t += 300  # the verifiers' cache ages out
    assert await refused(old, verifier) == "invalid token: signed by a key the issuer does not publish"
    assert await read_token(new, verifier) == OPS


async def test_a_key_can_be_published_before_it_signs(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    tokenkeys.cmd_new(path)
    keys = FileTokenKeys(path, recheck_s=0)
    first = keys.key_set.current_id
    tokenkeys.cmd_rotate(path, publish_only=True)
    published = [k.kid for k in keys.key_set.keys]
    assert keys.key_set.current_id == first and len(published) == 2
    tokenkeys.cmd_use(path, published[1])
    assert keys.key_set.current_id == published[1]
    assert first in tokenkeys.cmd_list(path) and "(current: signs)" in tokenkeys.cmd_list(path)


def test_key_files_are_private_and_checked(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "tokens.json"
    FileTokenKeys.create(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert FileTokenKeys.create(path).key_set.jwks() == FileTokenKeys(path).key_set.jwks(), "an existing file is kept"
    with pytest.raises(TokenKeyError, match="exists"):
        tokenkeys.cmd_new(path)
    public_only = {"current": "a", "keys": [{**new_key("a").public_jwk()}]}
    for raw, message in ((public_only, "private EC key"), ({"current": "z", "keys": [new_key("a").private_jwk()]},
                                                             "must name one of the keys"),
                         ({"keys": []}, "list of"), ({"current": "a", "keys": [new_key("a").private_jwk(),
                                                                              new_key("a").private_jwk()]},
                                                     "same kid")):
        with pytest.raises(TokenKeyError, match=message):
            TokenKeySet.parse(raw, "test")
    assert tokenkeys.main(["retire", str(path), "nope"]) == 1
