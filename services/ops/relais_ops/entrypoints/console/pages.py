"""What every page of the ops console shares: the kit's pages (templates, signed session
cookie naming a server-side session, CSRF token), the signed-in ops user and the access
token kept for them on the server (`OpsUser`), the database pool (None while it is
away: the pages that need it say so, the others still work), and the helpers a route
uses: `render`, `redirect`, `problem`, `checked_form`, `pool_of`.

The console's pages live under /console; a visitor who is not signed in is sent to
/console/connexion and back where they were going."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import asyncpg
import structlog
from fastapi import Depends, FastAPI, Request
from fastapi.responses import Response

from relais_kit import webui
from relais_kit.access import User
from relais_kit.auth import TOKEN_TTL, TokenVerifier
from relais_kit.db import DATABASE_AWAY
from relais_kit.logs import log
from relais_kit.throttle import SignInThrottle
from relais_kit.tokens import KeysUnavailable, TokenRefused, TokenSigner
from relais_ops.adapters import console_tokens
from relais_ops.domain.french import fr_duration, fr_number

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"
HOME = "/console"
SIGN_IN = "/console/connexion"
SIGN_OUT = "/console/deconnexion"
ROLE = "ops"
# The console's session lasts as long as the access token it keeps (one hour).
SESSION_TTL = TOKEN_TTL
# The entries of the navigation: (path, label).
NAVIGATION = (
    ("/console", "Vue d'ensemble"),
    ("/console/lettres-mortes", "Lettres mortes"),
    ("/console/parcours", "Parcours d'une demande"),
    ("/console/en-attente", "Évènements bloqués"),
)
STARTING = ("La console démarre", "La console attend sa base de données. Réessayez dans quelques secondes.")


@dataclass(frozen=True)
class SignedIn:
    """The signed-in ops user and their access token (for the services' ops APIs:
    `Authorization: Bearer <token>`). Never rendered into a page."""

    user: User
    token: str

    def __repr__(self) -> str:  # the token stays out of logs and tracebacks
        return f"SignedIn(user={self.user.user_id!r})"


def _pool(request: Request) -> asyncpg.Pool | None:
    return getattr(request.app.state, "pool", None)


def _registry(request: Request) -> webui.SessionRegistry | None:
    pool = _pool(request)
    return webui.PoolSessions(pool) if pool is not None else None


def _context(request: Request, session: webui.Session) -> dict[str, Any]:
    path = request.url.path
    current = max((p for p, _ in NAVIGATION if path == p or path.startswith(p + "/")), key=len, default=None)
    return {"navigation": NAVIGATION, "current_path": current}


def fr_clock(unix_time: float | None) -> str:
    """`14:05` (Paris time) of a Unix time; an em dash when unknown."""
    if unix_time is None:
        return "—"
    return datetime.fromtimestamp(unix_time, UTC).astimezone(webui.PARIS).strftime("%H:%M")


def make_pages(signer: TokenSigner, *, production: bool) -> webui.Pages:
    """The kit's pages with the console's templates and filters (besides the kit's
    French dates: `fr_number`, `fr_duration`, `fr_clock`)."""
    pages = webui.Pages(TEMPLATES, signer=signer, label="ops-console", production=production,
                        registry=_registry, ttl=SESSION_TTL, context=_context)
    pages.env.filters.update(fr_number=fr_number, fr_duration=fr_duration, fr_clock=fr_clock)
    return pages


def install(app: FastAPI, signer: TokenSigner, *, production: bool) -> webui.Pages:
    """The console's pages on `app` (security headers, PageProblem/RedirectTo handlers,
    the server-side session checked before every page)."""
    pages = make_pages(signer, production=production)
    app.state.console_pages = pages
    app.state.console_throttle = SignInThrottle()  # sign-in attempts, per account and per address
    webui.security_headers(app)
    pages.install_handlers(app)
    return pages


def pages_of(request: Request) -> webui.Pages:
    pages: webui.Pages = request.app.state.console_pages
    return pages


def pool_of(request: Request) -> asyncpg.Pool:
    """The ops database's pool; the "console is starting" page (503) while it is away."""
    pool = _pool(request)
    if pool is None:
        raise webui.PageProblem(503, *STARTING, {"Retry-After": "2"})
    return pool


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> Response:
    return pages_of(request).render(request, template, status_code, **context)


def redirect(request: Request, url: str) -> Response:
    return pages_of(request).redirect(request, url)


def problem(request: Request, status_code: int, title: str, message: str) -> Response:
    return pages_of(request).problem(request, status_code, title, message)


async def checked_form(request: Request) -> dict[str, str]:
    """The POSTed form; PageProblem(403) when its CSRF token is missing or wrong."""
    return await pages_of(request).checked_form(request)


def sign_in_url(request: Request) -> str:
    """The sign-in form, and back to this page after (a form sent: the overview)."""
    if request.method != "GET":
        return f"{SIGN_IN}?suite={quote(HOME, safe='')}"
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return f"{SIGN_IN}?suite={quote(target, safe='')}"


async def signed_in(request: Request) -> SignedIn:
    """The signed-in ops user, or a redirect to the sign-in form (their session ended,
    or the access token it keeps expired)."""
    pages = pages_of(request)
    session = pages.session(request)
    if not session.signed_in or session.session_id is None:
        raise webui.RedirectTo(sign_in_url(request))
    pool = pool_of(request)
    try:
        token = await console_tokens.token_of(pool, session.session_id)
    except DATABASE_AWAY as exc:
        raise webui.PageProblem(503, *STARTING, {"Retry-After": "2"}) from exc
    if token is None:
        await pages.sign_out(request)
        raise webui.RedirectTo(sign_in_url(request))
    verifier: TokenVerifier = request.app.state.token_verifier
    try:
        user = await verifier.user(token)
    except TokenRefused as exc:
        log.info("console_token_refused", reason=exc.reason)
        await pages.sign_out(request)
        raise webui.RedirectTo(sign_in_url(request)) from exc
    except KeysUnavailable as exc:
        raise webui.PageProblem(503, "Clés indisponibles", "Les clés du service des demandes ne sont pas encore "
                                "disponibles. Réessayez dans quelques secondes.", {"Retry-After": "2"}) from exc
    if user.role != ROLE:
        raise webui.PageProblem(403, "Accès refusé", "Ce compte n'a pas le rôle exploitation.")
    structlog.contextvars.bind_contextvars(user=user.user_id)
    return SignedIn(user, token)


OpsUser = Annotated[SignedIn, Depends(signed_in)]

__all__ = ["HOME", "NAVIGATION", "SIGN_IN", "SIGN_OUT", "OpsUser", "SignedIn", "checked_form", "install",
           "pages_of", "pool_of", "problem", "redirect", "render", "sign_in_url", "signed_in"]
