"""Bearer tokens (JWT, HS256) issued by the referral service and checked by every
service's API. Claims: `sub` (the account), `role` (adviser, supervisor, ops),
`site_id` (an adviser's home site), `department` (a supervisor's), `sid` (the
server-side session the token belongs to), `name`, `iat`, `exp`.

A token without a known role is refused: nothing defaults to a role. The issuing
service also checks, on every request, that the account and the session still exist
(`app.state.token_check`): signing out or deactivating an account ends its tokens at
once there; the other services only verify the signature, within the token's short
lifetime (`TOKEN_TTL`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Annotated

import jwt
from fastapi import Depends, HTTPException, Request, status
from fastapi.security import OAuth2PasswordBearer

from relais_kit.access import ROLES, User
from relais_kit.envelope import now

TOKEN_URL = "/api/v1/auth/token"
TOKEN_TTL = timedelta(hours=1)
_bearer = OAuth2PasswordBearer(tokenUrl=TOKEN_URL)
__all__ = ["ROLES", "TOKEN_TTL", "TokenCheck", "User", "current_user", "issue_token", "read_token", "require_role"]


# The issuer's check that the token's account and session are still alive.
TokenCheck = Callable[[User], Awaitable[bool]]


def issue_token(user: User, secret: str, ttl: timedelta = TOKEN_TTL) -> str:
    claims: dict[str, object] = {"sub": user.user_id, "role": user.role, "name": user.display_name,
                                 "iat": now(), "exp": now() + ttl}
    for name, value in (("site_id", user.site_id), ("department", user.department), ("sid", user.session_id)):
        if value:
            claims[name] = value
    return jwt.encode(claims, secret, algorithm="HS256")


def _refused(reason: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, f"invalid token: {reason}",
                         headers={"WWW-Authenticate": "Bearer"})


def read_token(token: str, secret: str) -> User:
    try:
        claims = jwt.decode(token, secret, algorithms=["HS256"], options={"require": ["exp", "sub", "role"]})
    except jwt.PyJWTError as exc:
        raise _refused(str(exc)) from exc
    role, subject = claims.get("role"), claims.get("sub")
    if role not in ROLES:
        raise _refused("unknown role")
    if not isinstance(subject, str) or not subject:
        raise _refused("no subject")

    def text(name: str) -> str | None:
        value = claims.get(name)
        return value if isinstance(value, str) and value else None

    return User(subject, role, text("site_id"), text("name") or subject, text("department"), text("sid"))


async def current_user(request: Request, token: Annotated[str, Depends(_bearer)]) -> User:
    user = read_token(token, request.app.state.jwt_secret)
    check: TokenCheck | None = getattr(request.app.state, "token_check", None)
    if check is not None and not await check(user):
        raise _refused("the session has ended or the account is closed")
    return user


def require_role(*roles: str):  # type: ignore[no-untyped-def]
    async def check(user: Annotated[User, Depends(current_user)]) -> User:
        if user.role not in roles:
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"role {user.role!r} may not do this")
        return user
    return check
