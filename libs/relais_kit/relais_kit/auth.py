"""Bearer tokens (JWT, HS256) issued by the referral service and checked by every
service's API. Claims: `sub` (user id), `role` (adviser, supervisor, ops), `site_id`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated

import jwt
from fastapi import Depends, HTTPException, Request, status
from fastapi.security import OAuth2PasswordBearer

from relais_kit.envelope import now

TOKEN_URL = "/api/v1/auth/token"
_bearer = OAuth2PasswordBearer(tokenUrl=TOKEN_URL)


@dataclass(frozen=True)
class User:
    user_id: str
    role: str
    site_id: str | None
    display_name: str


def issue_token(user: User, secret: str, ttl: timedelta = timedelta(hours=10)) -> str:
    claims = {"sub": user.user_id, "role": user.role, "site_id": user.site_id,
              "name": user.display_name, "iat": now(), "exp": now() + ttl}
    return jwt.encode(claims, secret, algorithm="HS256")


def read_token(token: str, secret: str) -> User:
    try:
        claims = jwt.decode(token, secret, algorithms=["HS256"], options={"require": ["exp", "sub"]})
    except jwt.PyJWTError as exc:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, f"invalid token: {exc}",
                            headers={"WWW-Authenticate": "Bearer"}) from exc
    return User(claims["sub"], claims.get("role", "adviser"), claims.get("site_id"),
                claims.get("name", claims["sub"]))


def current_user(request: Request, token: Annotated[str, Depends(_bearer)]) -> User:
    return read_token(token, request.app.state.jwt_secret)


def require_role(*roles: str):  # type: ignore[no-untyped-def]
    def check(user: Annotated[User, Depends(current_user)]) -> User:
        if user.role not in roles:
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"role {user.role!r} may not do this")
        return user
    return check
