"""The expert's session: a signed cookie (JWT, HS256, with a key derived from
RELAIS_JWT_SECRET for this desk only, so that it is never accepted as a bearer token by
the platform's APIs nor by another operator's desk), carrying a CSRF token that every
form sends back. Anonymous visitors get a session too, so that the sign-in form is
protected the same way; signing in issues a new one (no session fixation). Pure."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import jwt

AUDIENCE = "relais-desk"
COOKIE = "relais_desk_session"
CSRF_FIELD = "csrf_token"


def session_key(secret: str, operator: str) -> bytes:
    return hmac.new(secret.encode(), f"relais-desk-session:{operator}".encode(), hashlib.sha256).digest()


@dataclass(frozen=True)
class Session:
    csrf: str
    expires_at: datetime
    user_id: str | None = None
    display_name: str | None = None

    @property
    def signed_in(self) -> bool:
        return self.user_id is not None


def new_session(at: datetime, ttl: timedelta, *, user_id: str | None = None,
                display_name: str | None = None) -> Session:
    return Session(secrets.token_urlsafe(32), at + ttl, user_id, display_name)


def encode(session: Session, key: bytes) -> str:
    claims: dict[str, object] = {"aud": AUDIENCE, "csrf": session.csrf, "exp": session.expires_at}
    if session.user_id is not None:
        claims["sub"] = session.user_id
        claims["name"] = session.display_name or session.user_id
    return jwt.encode(claims, key, algorithm="HS256")


def decode(token: str | None, key: bytes) -> Session | None:
    """The session of a cookie, or None when it is missing, forged or expired."""
    if not token:
        return None
    try:
        claims = jwt.decode(token, key, algorithms=["HS256"], audience=AUDIENCE,
                            options={"require": ["exp", "csrf", "aud"]})
    except jwt.PyJWTError:
        return None
    csrf = claims.get("csrf")
    if not isinstance(csrf, str) or len(csrf) < 32:
        return None
    user = claims.get("sub")
    return Session(csrf, datetime.fromtimestamp(claims["exp"]).astimezone(),
                   user if isinstance(user, str) else None,
                   str(claims.get("name")) if user else None)


def csrf_ok(session: Session | None, submitted: str | None) -> bool:
    """The token of the form equals the session's (constant-time comparison)."""
    if session is None or not submitted:
        return False
    return hmac.compare_digest(session.csrf.encode(), submitted.encode())
