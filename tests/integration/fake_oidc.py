"""A fake OpenID Connect provider standing for ProConnect in tests: a tiny FastAPI app
served by uvicorn on a free loopback port, in a thread of its own (no external network).

It serves the discovery document, its JWKS, `/authorize` (approves at once: redirects
back to the client with a code and the state), `/token` (checks the client's secret and
the PKCE verifier, returns an ID token signed with its key) and `/userinfo` (a signed
JWT, as ProConnect answers). What it says is set on the instance before each attempt:

    with FakeOidc() as provider:
        provider.email = "agent@example.gouv.fr"   # whom it signs in
        provider.subject = "agent-42"              # their `sub` (default: derived from the e-mail)
        provider.email_verified = None             # True, False, or None: the claim is not sent
        provider.email_in_id_token = False         # as ProConnect: only in userinfo
        provider.wrong_nonce = True                # an ID token for another attempt
        provider.foreign_key = True                # signed with a key not in its JWKS
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import jwt
import uvicorn
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi import FastAPI, Form, HTTPException, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from relais_kit.embedded import free_port

CLIENT_ID = "relais-test"
CLIENT_SECRET = "relais-test-secret"


@dataclass
class _Grant:
    client_id: str
    redirect_uri: str
    nonce: str
    challenge: str
    subject: str
    email: str
    email_verified: bool | None


@dataclass
class FakeOidc:
    email: str = "agent@example.gouv.fr"
    subject: str | None = None
    email_verified: bool | None = True
    given_name: str = "Anne"
    usual_name: str = "Agent"
    email_in_id_token: bool = False
    userinfo_as_jwt: bool = True
    wrong_nonce: bool = False
    foreign_key: bool = False
    algorithm: str = "RS256"
    port: int = field(default_factory=free_port)
    grants: dict[str, _Grant] = field(default_factory=dict)
    tokens: dict[str, _Grant] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ec = ec.generate_private_key(ec.SECP256R1())
        self.stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.app = self._make_app()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v2"

    # -- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> FakeOidc:
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning",
                                lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="fake-oidc", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the fake OIDC provider did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *_: object) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)

    # -- keys ------------------------------------------------------------------------------

    def _jwks(self) -> dict[str, Any]:
        rsa_jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.rsa.public_key()))
        ec_jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(self.ec.public_key()))
        # An encryption key, as ProConnect publishes too: the client must skip it.
        enc = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.stranger.public_key()))
        return {"keys": [{**rsa_jwk, "kid": "rsa-1", "use": "sig", "alg": "RS256"},
                         {**ec_jwk, "kid": "ec-1", "use": "sig", "alg": "ES256"},
                         {**enc, "kid": "enc-1", "use": "enc", "alg": "RSA-OAEP"}]}

    def sign(self, claims: dict[str, Any]) -> str:
        if self.foreign_key:  # same kid, another key: the signature cannot verify
            return jwt.encode(claims, self.stranger, algorithm="RS256", headers={"kid": "rsa-1"})
        if self.algorithm == "ES256":
            return jwt.encode(claims, self.ec, algorithm="ES256", headers={"kid": "ec-1"})
        return jwt.encode(claims, self.rsa, algorithm="RS256", headers={"kid": "rsa-1"})

    # -- the provider ----------------------------------------------------------------------

    def _make_app(self) -> FastAPI:
        app = FastAPI()
        prefix = "/api/v2"

        @app.middleware("http")
        async def remember(request: Request, call_next: Any) -> Response:
            self.requests.append(request.url.path)
            response: Response = await call_next(request)
            return response

        @app.get(f"{prefix}/.well-known/openid-configuration")
        async def discovery() -> dict[str, Any]:
            base = self.issuer
            return {"issuer": base, "authorization_endpoint": f"{base}/authorize",
                    "token_endpoint": f"{base}/token", "userinfo_endpoint": f"{base}/userinfo",
                    "jwks_uri": f"{base}/jwks", "end_session_endpoint": f"{base}/session/end",
                    "response_types_supported": ["code"], "grant_types_supported": ["authorization_code"],
                    "id_token_signing_alg_values_supported": ["RS256", "ES256"],
                    "userinfo_signing_alg_values_supported": ["RS256", "ES256"],
                    "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt"],
                    "code_challenge_methods_supported": ["S256"],
                    "scopes_supported": ["openid", "email", "given_name", "usual_name", "uid"]}

        @app.get(f"{prefix}/jwks")
        async def jwks() -> dict[str, Any]:
            return self._jwks()

        @app.get(f"{prefix}/authorize")
        async def authorize(response_type: str, client_id: str, redirect_uri: str, scope: str, state: str,
                            nonce: str, code_challenge: str, code_challenge_method: str) -> Response:
            if response_type != "code" or client_id != CLIENT_ID or "openid" not in scope.split() \
                    or code_challenge_method != "S256":
                raise HTTPException(400, "invalid_request")
            code = secrets.token_urlsafe(24)
            subject = self.subject or f"sub-{hashlib.sha256(self.email.lower().encode()).hexdigest()[:16]}"
            self.grants[code] = _Grant(client_id, redirect_uri, nonce, code_challenge, subject=subject,
                                       email=self.email, email_verified=self.email_verified)
            return RedirectResponse(f"{redirect_uri}?{urlencode({'code': code, 'state': state})}", status_code=302)

        @app.post(f"{prefix}/token")
        async def token(grant_type: str = Form(), code: str = Form(), redirect_uri: str = Form(),
                        client_id: str = Form(), client_secret: str = Form(""),
                        code_verifier: str = Form("")) -> Response:
            grant = self.grants.pop(code, None)
            if grant_type != "authorization_code" or grant is None:
                return JSONResponse({"error": "invalid_grant"}, 400)
            if client_id != grant.client_id or client_secret != CLIENT_SECRET or redirect_uri != grant.redirect_uri:
                return JSONResponse({"error": "invalid_client"}, 401)
            challenge = base64.urlsafe_b64encode(hashlib.sha256(code_verifier.encode()).digest()).rstrip(b"=")
            if challenge.decode() != grant.challenge:
                return JSONResponse({"error": "invalid_grant", "error_description": "PKCE"}, 400)
            at = int(time.time())
            claims: dict[str, Any] = {"iss": self.issuer, "aud": CLIENT_ID, "sub": grant.subject, "iat": at,
                                      "exp": at + 60, "auth_time": at, "acr": "eidas1",
                                      "nonce": "someone-else" if self.wrong_nonce else grant.nonce}
            if self.email_in_id_token:
                claims["email"] = grant.email
                if grant.email_verified is not None:
                    claims["email_verified"] = grant.email_verified
            access = secrets.token_urlsafe(24)
            self.tokens[access] = grant
            return JSONResponse({"access_token": access, "token_type": "Bearer", "expires_in": 60,
                                 "id_token": self.sign(claims), "scope": "openid email"})

        @app.get(f"{prefix}/userinfo")
        async def userinfo(request: Request) -> Response:
            grant = self.tokens.get(request.headers.get("authorization", "").removeprefix("Bearer "))
            if grant is None:
                return JSONResponse({"error": "invalid_token"}, 401)
            info: dict[str, Any] = {"sub": grant.subject, "email": grant.email, "given_name": self.given_name,
                                    "usual_name": self.usual_name, "uid": "42"}
            if grant.email_verified is not None:
                info["email_verified"] = grant.email_verified
            if self.userinfo_as_jwt:
                at = int(time.time())
                return Response(self.sign({**info, "iss": self.issuer, "aud": CLIENT_ID, "iat": at}),
                                media_type="application/jwt")
            return JSONResponse(info)

        return app
