"""Bearer tokens (JWT, ES256) issued by the referral service and checked by every
service's API. Claims: `iss` (`relais-referral`), `aud` (the APIs the token opens:
`relais-api:referral`, `relais-api:sites`, `relais-api:notifications`, `relais-api:ops`), `sub` (the
account), `role` (adviser, supervisor, ops), `site_id` (an adviser's home site),
`department` (a supervisor's), `sid` (the server-side session the token belongs to),
`name`, `iat`, `exp`; the header names the signing key (`kid`).

Only the referral service holds the private keys (`relais_kit.tokenkeys`); it
publishes the public ones at `/.well-known/jwks.json`, which the other services fetch
(`relais_kit.jwks`). Each API accepts a token only if its own audience is in `aud`:
a token asked for the sites service alone opens nothing else. The operator desks sign
with keys of their own under another issuer: nothing they sign opens an API.

A token without a known role is refused: nothing defaults to a role. The issuing
service also checks, on every request, that the account and the session still exist
(`app.state.token_check`): signing out or deactivating an account ends its tokens at
once there; the other services only verify the signature, within the token's short
lifetime (`TOKEN_TTL`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import OAuth2PasswordBearer

from relais_kit.access import ROLES, User
from relais_kit.envelope import now
from relais_kit.jwks import RemoteKeys
from relais_kit.logs import log
from relais_kit.settings import PlatformSettings
from relais_kit.tokens import KeysUnavailable, PublicKeys, TokenRefused, TokenSigner, verify

TOKEN_URL = "/api/v1/auth/token"
TOKEN_TTL = timedelta(hours=1)
REFERRAL_ISSUER = "relais-referral"
API_SERVICES = ("referral", "sites", "notifications", "ops")
_bearer = OAuth2PasswordBearer(tokenUrl=TOKEN_URL)
__all__ = ["ALL_APIS", "API_SERVICES", "REFERRAL_ISSUER", "ROLES", "TOKEN_TTL", "TokenCheck", "TokenVerifier", "User",
           "api_audience", "api_verifier", "current_user", "issue_token", "read_token", "require_role"]


def api_audience(service: str) -> str:
    if service not in API_SERVICES:
        raise ValueError(f"no API named {service!r} (known: {', '.join(API_SERVICES)})")
    return f"relais-api:{service}"


ALL_APIS = tuple(api_audience(service) for service in API_SERVICES)

# The issuer's check that the token's account and session are still alive.
TokenCheck = Callable[[User], Awaitable[bool]]


def issue_token(user: User, signer: TokenSigner, ttl: timedelta = TOKEN_TTL, *,
                audiences: Sequence[str] = ALL_APIS) -> str:
    claims: dict[str, object] = {"sub": user.user_id, "role": user.role, "name": user.display_name}
    for name, value in (("site_id", user.site_id), ("department", user.department), ("sid", user.session_id)):
        if value:
            claims[name] = value
    return signer.sign(claims, audience=list(audiences), expires_at=now() + ttl)


def _refused(reason: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, f"invalid token: {reason}",
                         headers={"WWW-Authenticate": "Bearer"})


class TokenVerifier:
    """What one API accepts: tokens of `issuer`, signed with one of `keys`, for `audience`."""

    def __init__(self, keys: PublicKeys, *, audience: str, issuer: str = REFERRAL_ISSUER) -> None:
        self.keys = keys
        self.audience = audience
        self.issuer = issuer

    async def user(self, token: str) -> User:
        """The token's user; TokenRefused (or KeysUnavailable) otherwise."""
        claims = await verify(token, self.keys, issuer=self.issuer, audience=self.audience, required=("sub", "role"))
        role, subject = claims.get("role"), claims.get("sub")
        if role not in ROLES:
            raise TokenRefused("unknown role")
        if not isinstance(subject, str) or not subject:
            raise TokenRefused("no subject")

        def text(name: str) -> str | None:
            value = claims.get(name)
            return value if isinstance(value, str) and value else None

        return User(subject, role, text("site_id"), text("name") or subject, text("department"), text("sid"))


def api_verifier(settings: PlatformSettings, service: str) -> TokenVerifier:
    """What the API of `service` accepts: the referral service's tokens for it, checked
    with the public keys of RELAIS_TOKEN_JWKS_URL."""
    return TokenVerifier(RemoteKeys.at(settings.jwks_url), audience=api_audience(service))


async def read_token(token: str, verifier: TokenVerifier) -> User:
    """The token's user, or the HTTP error to answer."""
    try:
        return await verifier.user(token)
    except TokenRefused as exc:
        log.info("token_refused", reason=exc.reason)
        raise _refused(exc.reason) from exc
    except KeysUnavailable as exc:
        log.warning("token_keys_unavailable", reason=str(exc))
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "the token issuer's keys cannot be fetched yet",
                            headers={"Retry-After": "2"}) from exc


async def current_user(request: Request, token: Annotated[str, Depends(_bearer)]) -> User:
    user = await read_token(token, request.app.state.token_verifier)
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
