"""Sign-in of agents through an OpenID Connect provider — ProConnect, the State's identity
federation for agents, in production — with the authorization-code flow, PKCE (S256),
`state` and `nonce`.

- `OidcClient.begin()` makes a `Transaction` (state, nonce, PKCE verifier, where to go
  after) and the provider's authorization URL. The transaction travels in a short-lived
  signed cookie (`seal` / `unseal`), not in the database.
- `OidcClient.complete()` checks the state, exchanges the code (with the verifier) at the
  token endpoint, checks the ID token — signature against the issuer's JWKS (RS256 or
  ES256), issuer, audience, authorized party, expiry, nonce — and reads the agent's
  e-mail (and whether the provider verified it) from the ID token or, as ProConnect
  sends it, from the userinfo endpoint (JSON, or a JWT signed like the ID token). The
  agent is the pair (issuer, `sub`); `acr` and `amr` are not required.

The provider's metadata (discovery) and keys are fetched on first use and kept for an
hour; an unknown key id fetches the keys again once (key rotation). Every failure is an
`OidcError` whose `reason` is short, stable and free of personal data (for the logs)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import httpx
import jwt

from relais_kit.tokens import TokenRefused, TokenSigner

ALGORITHMS = ("RS256", "ES256")
TRANSACTION_TTL_S = 600
METADATA_TTL_S = 3600
CLOCK_LEEWAY_S = 60
HTTP_TIMEOUT_S = 10.0
_TRANSACTION_AUDIENCE = "relais-oidc-transaction"


class OidcError(Exception):
    """The sign-in cannot go on. `reason`: short and stable, for the logs; `unavailable`:
    the provider did not answer (try again later) rather than refused."""

    def __init__(self, reason: str, *, unavailable: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.unavailable = unavailable


@dataclass(frozen=True)
class OidcConfig:
    issuer: str
    client_id: str
    client_secret: str
    redirect_url: str
    scopes: str = "openid email given_name usual_name uid"

    @property
    def discovery_url(self) -> str:
        return self.issuer.rstrip("/") + "/.well-known/openid-configuration"


@dataclass(frozen=True)
class Transaction:
    """One sign-in attempt, from the redirect to the provider until its return."""

    state: str
    nonce: str
    code_verifier: str
    next_path: str = "/"

    @property
    def code_challenge(self) -> str:
        digest = hashlib.sha256(self.code_verifier.encode("ascii")).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


@dataclass(frozen=True)
class Identity:
    """Who the provider says signed in: the agent is (issuer, subject) — an e-mail may
    change hands. `email_verified`: what the provider says of the address (None: it
    did not say)."""

    subject: str
    email: str
    given_name: str | None = None
    usual_name: str | None = None
    uid: str | None = None
    id_token: str | None = None  # for the provider's logout (`id_token_hint`)
    issuer: str = ""
    email_verified: bool | None = None

    @property
    def display_name(self) -> str:
        name = " ".join(part for part in (self.given_name, self.usual_name) if part)
        return name or self.email


def new_transaction(next_path: str = "/") -> Transaction:
    return Transaction(state=secrets.token_urlsafe(32), nonce=secrets.token_urlsafe(32),
                       code_verifier=secrets.token_urlsafe(64), next_path=next_path)


# -- the transaction's cookie ----------------------------------------------------------------

def seal(transaction: Transaction, signer: TokenSigner, *, at: float | None = None) -> str:
    """The transaction's cookie, signed with the service's token keys for its own
    audience (never accepted as a session nor as an API token)."""
    issued = datetime.fromtimestamp(int(time.time() if at is None else at), UTC)
    claims = {"state": transaction.state, "nonce": transaction.nonce, "cv": transaction.code_verifier,
              "next": transaction.next_path}
    return signer.sign(claims, audience=_TRANSACTION_AUDIENCE, issued_at=issued,
                       expires_at=issued + timedelta(seconds=TRANSACTION_TTL_S))


def unseal(token: str | None, signer: TokenSigner) -> Transaction | None:
    """The transaction of a cookie; None when missing, forged or older than ten minutes."""
    if not token:
        return None
    try:
        claims = signer.verify(token, audience=_TRANSACTION_AUDIENCE, required=("state", "nonce", "cv"))
    except TokenRefused:
        return None
    state, nonce, verifier, next_path = (claims.get(name) for name in ("state", "nonce", "cv", "next"))
    if not (isinstance(state, str) and state and isinstance(nonce, str) and nonce
            and isinstance(verifier, str) and verifier):
        return None
    return Transaction(state, nonce, verifier, next_path if isinstance(next_path, str) else "/")


# -- the client ------------------------------------------------------------------------------

class OidcClient:
    """One provider. `http` makes the HTTP client of each call (tests may give a
    transport); metadata and keys are cached on the instance."""

    def __init__(self, config: OidcConfig, *, http: Callable[[], httpx.AsyncClient] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self._http = http or (lambda: httpx.AsyncClient(timeout=HTTP_TIMEOUT_S, follow_redirects=False))
        self._clock = clock
        self._metadata: dict[str, Any] | None = None
        self._metadata_at = 0.0
        self._jwks: jwt.PyJWKSet | None = None

    # -- provider metadata and keys ---------------------------------------------------------

    async def metadata(self) -> dict[str, Any]:
        if self._metadata is not None and self._clock() - self._metadata_at < METADATA_TTL_S:
            return self._metadata
        document = await self._get_json(self.config.discovery_url, "discovery")
        if str(document.get("issuer", "")).rstrip("/") != self.config.issuer.rstrip("/"):
            raise OidcError("discovery_issuer_mismatch")
        for name in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            if not isinstance(document.get(name), str):
                raise OidcError(f"discovery_without_{name}")
        self._metadata, self._metadata_at, self._jwks = document, self._clock(), None
        return document

    async def _keys(self, *, refresh: bool = False) -> jwt.PyJWKSet:
        if self._jwks is not None and not refresh:
            return self._jwks
        meta = await self.metadata()
        document = await self._get_json(meta["jwks_uri"], "jwks")
        try:
            self._jwks = jwt.PyJWKSet.from_dict(document)
        except jwt.PyJWTError as exc:
            raise OidcError("jwks_unusable") from exc
        return self._jwks

    async def _key_for(self, header: Mapping[str, Any]) -> jwt.PyJWK:
        alg, kid = header.get("alg"), header.get("kid")
        if alg not in ALGORITHMS:
            raise OidcError("token_algorithm_refused")
        for refresh in (False, True):
            keys = await self._keys(refresh=refresh)
            fitting = [k for k in keys.keys if (kid is None or k.key_id == kid)
                       and (k.public_key_use in (None, "sig")) and k.algorithm_name == alg]
            if kid is None and len(fitting) > 1:
                raise OidcError("token_key_ambiguous")
            if fitting:
                return fitting[0]
        raise OidcError("token_key_unknown")

    async def _get_json(self, url: str, what: str) -> dict[str, Any]:
        try:
            async with self._http() as client:
                response = await client.get(url, headers={"Accept": "application/json"})
        except httpx.HTTPError as exc:
            raise OidcError(f"{what}_unreachable", unavailable=True) from exc
        if response.status_code != 200:
            raise OidcError(f"{what}_http_{response.status_code}", unavailable=True)
        try:
            document = response.json()
        except ValueError as exc:
            raise OidcError(f"{what}_not_json") from exc
        if not isinstance(document, dict):
            raise OidcError(f"{what}_not_json")
        return document

    # -- the flow ---------------------------------------------------------------------------

    async def begin(self, next_path: str = "/") -> tuple[Transaction, str]:
        """A new transaction and the URL to send the browser to."""
        meta = await self.metadata()
        transaction = new_transaction(next_path)
        query = urlencode({
            "response_type": "code", "client_id": self.config.client_id,
            "redirect_uri": self.config.redirect_url, "scope": self.config.scopes,
            "state": transaction.state, "nonce": transaction.nonce,
            "code_challenge": transaction.code_challenge, "code_challenge_method": "S256",
        })
        endpoint = meta["authorization_endpoint"]
        return transaction, f"{endpoint}{'&' if '?' in endpoint else '?'}{query}"

    async def end_session_url(self, id_token: str, post_logout_redirect_uri: str) -> str | None:
        """Where to send the browser so that the agent is signed out of the provider too
        (RP-initiated logout, as ProConnect asks of its services); None when the provider
        has no such endpoint or does not answer."""
        try:
            meta = await self.metadata()
        except OidcError:
            return None
        endpoint = meta.get("end_session_endpoint")
        if not isinstance(endpoint, str):
            return None
        query = urlencode({"id_token_hint": id_token, "state": secrets.token_urlsafe(16),
                           "post_logout_redirect_uri": post_logout_redirect_uri})
        return f"{endpoint}{'&' if '?' in endpoint else '?'}{query}"

    async def complete(self, transaction: Transaction, params: Mapping[str, str]) -> Identity:
        """The identity of the callback's `params` (`code`, `state`, or `error`)."""
        received = params.get("state") or ""
        if not hmac.compare_digest(received.encode(), transaction.state.encode()):
            raise OidcError("state_mismatch")
        if params.get("error"):
            raise OidcError(f"provider_error_{params['error'][:40]}")
        code = params.get("code")
        if not code:
            raise OidcError("code_missing")
        tokens = await self._exchange(code, transaction)
        claims = await self._check_id_token(tokens["id_token"], transaction.nonce)
        info: Mapping[str, Any] = claims
        if not isinstance(claims.get("email"), str) and tokens.get("access_token"):
            info = await self._userinfo(str(tokens["access_token"]), claims["sub"])
        email = info.get("email")
        if not isinstance(email, str) or "@" not in email:
            raise OidcError("email_missing")

        def text(name: str) -> str | None:
            value = info.get(name, claims.get(name))
            return str(value) if isinstance(value, str | int) and str(value) else None

        return Identity(subject=str(claims["sub"]), email=email.strip(), given_name=text("given_name"),
                        usual_name=text("usual_name") or text("family_name"), uid=text("uid"),
                        id_token=tokens["id_token"], issuer=str(claims["iss"]),
                        email_verified=_verified(info.get("email_verified", claims.get("email_verified"))))

    async def _exchange(self, code: str, transaction: Transaction) -> dict[str, Any]:
        meta = await self.metadata()
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": self.config.redirect_url,
                "code_verifier": transaction.code_verifier, "client_id": self.config.client_id}
        auth: httpx.BasicAuth | None = None
        methods = meta.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
        if "client_secret_post" in methods or "client_secret_basic" not in methods:
            form["client_secret"] = self.config.client_secret
        else:
            auth = httpx.BasicAuth(self.config.client_id, self.config.client_secret)
        try:
            async with self._http() as client:
                response = await client.post(meta["token_endpoint"], data=form, auth=auth or httpx.USE_CLIENT_DEFAULT,
                                             headers={"Accept": "application/json"})
        except httpx.HTTPError as exc:
            raise OidcError("token_unreachable", unavailable=True) from exc
        if response.status_code >= 500:
            raise OidcError(f"token_http_{response.status_code}", unavailable=True)
        if response.status_code != 200:
            raise OidcError(f"token_refused_{response.status_code}")
        try:
            tokens = response.json()
        except ValueError as exc:
            raise OidcError("token_not_json") from exc
        if not isinstance(tokens, dict) or not isinstance(tokens.get("id_token"), str):
            raise OidcError("token_without_id_token")
        return tokens

    async def _verify(self, token: str, *, require: list[str]) -> dict[str, Any]:
        """The claims of a JWT signed with one of the issuer's keys; `iss` and `aud`, when
        present (always, when required), must be the issuer's and ours."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise OidcError("token_malformed") from exc
        key = await self._key_for(header)
        try:
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError as exc:
            raise OidcError("token_malformed") from exc
        try:
            claims: dict[str, Any] = jwt.decode(
                token, key, algorithms=[header["alg"]],
                audience=self.config.client_id if "aud" in unverified or "aud" in require else None,
                issuer=(await self.metadata())["issuer"] if "iss" in unverified or "iss" in require else None,
                leeway=CLOCK_LEEWAY_S, options={"require": require, "verify_aud": "aud" in unverified
                                                or "aud" in require})
        except jwt.InvalidSignatureError as exc:
            raise OidcError("token_signature_invalid") from exc
        except jwt.ExpiredSignatureError as exc:
            raise OidcError("token_expired") from exc
        except jwt.InvalidAudienceError as exc:
            raise OidcError("token_audience_mismatch") from exc
        except jwt.InvalidIssuerError as exc:
            raise OidcError("token_issuer_mismatch") from exc
        except jwt.PyJWTError as exc:
            raise OidcError("token_invalid") from exc
        return claims

    async def _check_id_token(self, id_token: str, nonce: str) -> dict[str, Any]:
        claims = await self._verify(id_token, require=["iss", "aud", "sub", "exp", "iat"])
        audience = claims.get("aud")
        if isinstance(audience, list) and len(audience) > 1 and claims.get("azp") != self.config.client_id:
            raise OidcError("token_azp_mismatch")
        if "azp" in claims and claims["azp"] != self.config.client_id:
            raise OidcError("token_azp_mismatch")
        received = claims.get("nonce")
        if not isinstance(received, str) or not hmac.compare_digest(received.encode(), nonce.encode()):
            raise OidcError("nonce_mismatch")
        if not isinstance(claims.get("sub"), str) or not claims["sub"]:
            raise OidcError("token_without_subject")
        return claims

    async def _userinfo(self, access_token: str, subject: str) -> dict[str, Any]:
        meta = await self.metadata()
        endpoint = meta.get("userinfo_endpoint")
        if not isinstance(endpoint, str):
            raise OidcError("email_missing")
        try:
            async with self._http() as client:
                response = await client.get(endpoint, headers={"Authorization": f"Bearer {access_token}",
                                                               "Accept": "application/jwt, application/json"})
        except httpx.HTTPError as exc:
            raise OidcError("userinfo_unreachable", unavailable=True) from exc
        if response.status_code != 200:
            raise OidcError(f"userinfo_http_{response.status_code}", unavailable=response.status_code >= 500)
        if response.headers.get("content-type", "").split(";")[0].strip() == "application/jwt":
            info = await self._verify(response.text.strip(), require=["sub"])
        else:
            try:
                info = response.json()
            except ValueError as exc:
                raise OidcError("userinfo_not_json") from exc
            if not isinstance(info, dict):
                raise OidcError("userinfo_not_json")
        if info.get("sub") != subject:
            raise OidcError("userinfo_subject_mismatch")
        return info


def _verified(claim: object) -> bool | None:
    """`email_verified`: a boolean, or the string some providers send; None when absent."""
    if isinstance(claim, bool):
        return claim
    if isinstance(claim, str) and claim.lower() in ("true", "false"):
        return claim.lower() == "true"
    return None
