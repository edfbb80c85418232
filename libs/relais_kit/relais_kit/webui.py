"""What every server-rendered UI of the platform shares (the operator desk, the
adviser's pages of the referral service): a signed session cookie carrying a CSRF
token, Jinja2 pages rendered with the session in their context, the security headers
of HTML pages, and the French State design system (DSFR) served at /static/dsfr.

The session cookie is a JWT (ES256) signed with the application's own token keys
(`relais_kit.tokens`: the referral service's, or the desk's own), its audience naming
the application (`relais-ui:desk:justice`, `relais-ui:referral-ui`…): it is never
accepted as a bearer token by the platform's APIs, nor by another application. Anonymous
visitors get a session too, so that the sign-in form is protected the same way;
signing in issues a new one (no session fixation). A signed-in cookie also names a
server-side session (`relais_kit.sessions`), checked at every request: signing out, or
closing the account, ends it at once — a copy of the cookie then opens nothing."""

from __future__ import annotations

import hmac
import os
import secrets
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.exceptions import HTTPException as StarletteHTTPException

from relais_kit import sessions
from relais_kit.db import DATABASE_AWAY
from relais_kit.envelope import now
from relais_kit.logs import log
from relais_kit.tokens import TokenRefused, TokenSigner

ASGIReceive = Callable[[], Awaitable[MutableMapping[str, Any]]]
ASGISend = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[MutableMapping[str, Any], ASGIReceive, ASGISend], Awaitable[None]]
PARIS = ZoneInfo("Europe/Paris")
CSRF_FIELD = "csrf_token"
KIT_ROOT = Path(__file__).resolve().parents[1]  # libs/relais_kit: the npm project of the DSFR
KIT_STATIC = Path(__file__).resolve().parent / "static"
DSFR_DIR = Path(os.environ.get("RELAIS_DSFR_DIR") or KIT_ROOT / "node_modules" / "@gouvfr" / "dsfr" / "dist")
CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self';"
       " font-src 'self'; form-action 'self'{forms}; frame-ancestors 'none'; base-uri 'none'; object-src 'none'")


# -- the session (pure) ----------------------------------------------------------------------

@dataclass(frozen=True)
class Session:
    csrf: str
    expires_at: datetime
    user_id: str | None = None
    display_name: str | None = None
    # What the application keeps besides (role, site, chosen place…): short strings.
    data: Mapping[str, str] = field(default_factory=dict)
    # The server-side session of a signed-in user.
    session_id: str | None = None

    @property
    def signed_in(self) -> bool:
        return self.user_id is not None

    def get(self, name: str) -> str | None:
        return self.data.get(name)

    def with_data(self, **values: str | None) -> Session:
        """A copy with `values` set (None removes a value); same CSRF token."""
        data = dict(self.data)
        for name, value in values.items():
            if value is None:
                data.pop(name, None)
            else:
                data[name] = value
        return replace(self, data=data)


def new_session(at: datetime, ttl: timedelta, *, user_id: str | None = None,
                display_name: str | None = None, data: Mapping[str, str] | None = None,
                session_id: str | None = None) -> Session:
    return Session(secrets.token_urlsafe(32), at + ttl, user_id, display_name, dict(data or {}), session_id)


def encode(session: Session, signer: TokenSigner, audience: str) -> str:
    claims: dict[str, object] = {"csrf": session.csrf}
    if session.user_id is not None:
        claims["sub"] = session.user_id
        claims["name"] = session.display_name or session.user_id
    if session.data:
        claims["data"] = dict(session.data)
    if session.session_id is not None:
        claims["sid"] = session.session_id
    return signer.sign(claims, audience=audience, expires_at=session.expires_at)


def decode(token: str | None, signer: TokenSigner, audience: str) -> Session | None:
    """The session of a cookie, or None when it is missing, forged, expired or another
    application's."""
    if not token:
        return None
    try:
        claims = signer.verify(token, audience=audience, required=("csrf",))
    except TokenRefused:
        return None
    csrf = claims.get("csrf")
    if not isinstance(csrf, str) or len(csrf) < 32:
        return None
    user = claims.get("sub")
    raw = claims.get("data")
    sid = claims.get("sid")
    data = {str(k): str(v) for k, v in raw.items() if v is not None} if isinstance(raw, dict) else {}
    return Session(csrf, datetime.fromtimestamp(claims["exp"]).astimezone(),
                   user if isinstance(user, str) else None,
                   str(claims.get("name")) if isinstance(user, str) else None, data,
                   sid if isinstance(sid, str) else None)


def csrf_ok(session: Session | None, submitted: str | None) -> bool:
    """The token of the form equals the session's (constant-time comparison)."""
    if session is None or not submitted:
        return False
    return hmac.compare_digest(session.csrf.encode(), submitted.encode())


def local_path(candidate: str | None, default: str = "/") -> str:
    """Where to go after signing in: a path of this site only (no `//host`, no scheme),
    else `default` — so a link cannot send the user elsewhere (open redirect)."""
    if not candidate or not candidate.startswith("/") or candidate.startswith("//") \
            or "\\" in candidate or any(ord(c) < 0x20 for c in candidate):
        return default
    return candidate


# -- French dates ----------------------------------------------------------------------------

WEEKDAYS = ("lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche")
MONTHS = ("janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août", "septembre",
          "octobre", "novembre", "décembre")


def _local(value: datetime | str) -> datetime:
    at = datetime.fromisoformat(value) if isinstance(value, str) else value
    return at.astimezone(PARIS)


def fr_datetime(value: datetime | str | None) -> str:
    """`27/11/2026 à 18:00` (Paris time)."""
    return "" if value is None or value == "" else _local(value).strftime("%d/%m/%Y à %H:%M")


def fr_date(value: datetime | str | None) -> str:
    return "" if value is None or value == "" else _local(value).strftime("%d/%m/%Y")


def fr_long(value: datetime | str | None) -> str:
    """`vendredi 27 novembre 2026 à 18 h 00` (Paris time)."""
    if value is None or value == "":
        return ""
    at = _local(value)
    return f"{WEEKDAYS[at.weekday()]} {at.day} {MONTHS[at.month - 1]} {at.year} à {at.hour} h {at.minute:02d}"


def fr_day(value: datetime | str | None) -> str:
    """`vendredi 27 novembre 2026`."""
    if value is None or value == "":
        return ""
    at = _local(value)
    return f"{WEEKDAYS[at.weekday()]} {at.day} {MONTHS[at.month - 1]} {at.year}"


def fr_time(value: datetime | str | None) -> str:
    return "" if value is None or value == "" else _local(value).strftime("%H:%M")


def iso(value: datetime) -> str:
    return _local(value).isoformat(timespec="minutes")


# -- pages -----------------------------------------------------------------------------------

class PageProblem(Exception):
    """Raise from a route or a dependency: the problem page is shown with this status."""

    def __init__(self, status_code: int, title: str, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(f"{status_code} {title}")
        self.status_code = status_code
        self.title = title
        self.message = message
        self.headers = dict(headers or {})


class RedirectTo(Exception):
    """Raise from a route or a dependency: a 303 redirect to `url`."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.url = url


class SessionRegistry(Protocol):
    """Where signed-in sessions live on the server."""

    async def open(self, user_id: str, ttl: timedelta) -> str: ...

    async def alive(self, session_id: str, user_id: str) -> bool: ...

    async def end(self, session_id: str) -> None: ...


class PoolSessions:
    """The `sessions` table of the service's schema (relais_kit.sessions)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def open(self, user_id: str, ttl: timedelta) -> str:
        async with self.pool.acquire() as conn:
            return await sessions.open_session(conn, user_id, "ui", ttl)

    async def alive(self, session_id: str, user_id: str) -> bool:
        async with self.pool.acquire() as conn:
            return await sessions.is_alive(conn, session_id, user_id)

    async def end(self, session_id: str) -> None:
        async with self.pool.acquire() as conn:
            await sessions.end_session(conn, session_id)


CSRF_REFUSED = ("Action refusée", "Ce formulaire a expiré ou ne vient pas de ce site. "
                                  "Rechargez la page et recommencez.")


class Pages:
    """Renders the pages of one application and keeps its session cookie.

    `label` names the application (it keys its sessions); `registry` gives the
    server-side sessions of a request (None while the service is starting: nobody is
    signed in meanwhile); `context` is called at every render and its mapping is added
    to the template's context (e.g. the signed-in user); `globals` are the templates'
    constants."""

    def __init__(self, templates: Path | Iterable[Path], *, signer: TokenSigner, label: str, production: bool,
                 registry: Callable[[Request], SessionRegistry | None],
                 ttl: timedelta = timedelta(hours=10), cookie: str | None = None,
                 problem_template: str = "problem.html.j2",
                 context: Callable[[Request, Session], Mapping[str, Any]] | None = None,
                 globals: Mapping[str, Any] | None = None) -> None:
        folders = [templates] if isinstance(templates, Path) else list(templates)
        self.registry = registry
        self.label = label
        self.audience = f"relais-ui:{label}"
        self.signer = signer
        self.production = production
        self.ttl = ttl
        self.cookie = cookie or ("__Host-" if production else "") + "relais_" + \
            "".join(c if c.isalnum() else "_" for c in label) + "_session"
        self.problem_template = problem_template
        self.extra_context = context
        self.env = Environment(loader=FileSystemLoader(folders), autoescape=select_autoescape(default=True),
                               trim_blocks=True, lstrip_blocks=True)
        self.env.filters.update(fr_datetime=fr_datetime, fr_date=fr_date, fr_long=fr_long, fr_day=fr_day,
                                fr_time=fr_time, iso=iso)
        self.env.globals.update(csrf_field=CSRF_FIELD, dsfr=DSFR_DIR.is_dir(), **dict(globals or {}))

    # -- session ---------------------------------------------------------------------------

    def session(self, request: Request) -> Session:
        """The visitor's session; a fresh anonymous one (set on the response) if none."""
        known: Session | None = getattr(request.state, "ui_session", None)
        if known is not None:
            return known
        session = decode(request.cookies.get(self.cookie), self.signer, self.audience)
        if session is None:
            session = new_session(now(), self.ttl)
            request.state.ui_session_to_set = session
        request.state.ui_session = session
        return session

    def set_session(self, request: Request, session: Session) -> None:
        """Replace the session (sent with the response)."""
        request.state.ui_session = session
        request.state.ui_session_to_set = session

    async def sign_in(self, request: Request, user_id: str, display_name: str,
                      data: Mapping[str, str] | None = None) -> Session:
        """A new session (new CSRF token, new server-side session) for the user."""
        registry = self._registry(request)
        session_id = await registry.open(user_id, self.ttl)
        session = new_session(now(), self.ttl, user_id=user_id, display_name=display_name, data=data,
                              session_id=session_id)
        self.set_session(request, session)
        return session

    async def sign_out(self, request: Request) -> None:
        """Ends the server-side session (every copy of the cookie with it)."""
        ending = decode(request.cookies.get(self.cookie), self.signer, self.audience)
        if ending is not None and ending.session_id is not None:
            await self._registry(request).end(ending.session_id)
        self.set_session(request, new_session(now(), self.ttl))

    async def still_signed_in(self, request: Request) -> bool:
        """For long responses (a live feed): whether the session is still alive."""
        return await self._alive(self.session(request), self.registry(request))

    @staticmethod
    async def _alive(session: Session, registry: SessionRegistry | None) -> bool:
        return bool(session.session_id and session.user_id and registry is not None
                    and await registry.alive(session.session_id, session.user_id))

    def _registry(self, request: Request) -> SessionRegistry:
        registry = self.registry(request)
        if registry is None:
            raise PageProblem(503, "Le service démarre", "Réessayez dans quelques secondes.", {"Retry-After": "2"})
        return registry

    async def check_session(self, request: Request) -> None:
        """Before the route: a signed-in cookie whose server-side session ended (signed
        out, account closed, expired) counts as no session at all."""
        session = decode(request.cookies.get(self.cookie), self.signer, self.audience)
        if session is None or not session.signed_in:
            return
        registry = self.registry(request)
        if not await self._alive(session, registry):
            if registry is not None:
                log.info("ui_session_ended", user=session.user_id)
            self.set_session(request, new_session(now(), self.ttl))

    def finish(self, request: Request, response: Response) -> Response:
        session: Session | None = getattr(request.state, "ui_session_to_set", None)
        if session is not None:
            response.set_cookie(self.cookie, encode(session, self.signer, self.audience),
                                max_age=int(self.ttl.total_seconds()), path="/", httponly=True,
                                samesite="lax", secure=self.production)
        return response

    def csrf_ok(self, request: Request, submitted: str | None) -> bool:
        """Checked against the cookie sent, not a session made for this request."""
        return csrf_ok(decode(request.cookies.get(self.cookie), self.signer, self.audience), submitted)

    async def checked_form(self, request: Request) -> dict[str, str]:
        """The POSTed form's text fields; raises PageProblem(403) when its CSRF token is
        missing or wrong."""
        data = await request.form()
        form = {k: v for k, v in data.items() if isinstance(v, str)}
        if not self.csrf_ok(request, form.get(CSRF_FIELD)):
            log.warning("csrf_refused", path=request.url.path)
            raise PageProblem(403, *CSRF_REFUSED)
        return form

    # -- responses -------------------------------------------------------------------------

    def context(self, request: Request, **context: Any) -> dict[str, Any]:
        session = self.session(request)
        base: dict[str, Any] = {"request": request, "session": session, "csrf_token": session.csrf,
                                "now": now().astimezone(PARIS)}
        if self.extra_context is not None:
            base.update(self.extra_context(request, session))
        base.update(context)
        return base

    def render(self, request: Request, template: str, status_code: int = 200, **context: Any) -> Response:
        html = self.env.get_template(template).render(self.context(request, **context))
        return self.finish(request, HTMLResponse(html, status_code=status_code))

    def invalid(self, request: Request, template: str, errors: Mapping[str, str], **context: Any) -> Response:
        """The form again, with 422 and `errors` (field name → French message)."""
        return self.render(request, template, 422, errors=errors, **context)

    def redirect(self, request: Request, url: str) -> Response:
        return self.finish(request, RedirectResponse(url, status_code=303))

    def problem(self, request: Request, status_code: int, title: str, message: str,
                headers: Mapping[str, str] | None = None) -> Response:
        response = self.render(request, self.problem_template, status_code, title=title, message=message)
        response.headers.update(dict(headers or {}))
        return response

    def install_handlers(self, app: FastAPI) -> None:
        """PageProblem and RedirectTo raised anywhere become the page / the redirect; an
        unknown address asked for by a browser, the UI's "Page introuvable" (see `wants_page`)."""
        async def on_problem(request: Request, exc: Exception) -> Response:
            assert isinstance(exc, PageProblem)
            return self.problem(request, exc.status_code, exc.title, exc.message, exc.headers)

        async def on_redirect(request: Request, exc: Exception) -> Response:
            assert isinstance(exc, RedirectTo)
            return self.redirect(request, exc.url)

        async def on_http_error(request: Request, exc: Exception) -> Response:
            assert isinstance(exc, StarletteHTTPException)
            if exc.status_code in (404, 405) and wants_page(request):  # 405: e.g. a GET of a form's address
                return self.problem(request, exc.status_code, *PAGE_NOT_FOUND, exc.headers)
            return await http_exception_handler(request, exc)

        app.add_exception_handler(PageProblem, on_problem)
        app.add_exception_handler(RedirectTo, on_redirect)
        app.add_exception_handler(StarletteHTTPException, on_http_error)

        app.add_middleware(_SessionCheck, pages=self)


PAGE_NOT_FOUND = ("Page introuvable", "Cette adresse ne correspond à aucune page. Vérifiez-la, ou repartez "
                  "de l'accueil.")


def wants_page(request: Request) -> bool:
    """A browser asking for a page (Accept: text/html), not an API client: unknown
    addresses answer it the UI's page, and the API (/api/…) keeps answering JSON."""
    if request.url.path.startswith(("/api/", "/static/")):
        return False
    return "text/html" in request.headers.get("accept", "")


class _SessionCheck:
    """Before a page's route: `Pages.check_session` when the request carries the
    session cookie (not for static files nor the API, which use no cookie)."""

    def __init__(self, app: ASGIApp, pages: Pages) -> None:
        self.app = app
        self.pages = pages

    async def __call__(self, scope: MutableMapping[str, Any], receive: ASGIReceive, send: ASGISend) -> None:
        path = str(scope.get("path", ""))
        if scope["type"] != "http" or path.startswith(("/static/", "/api/")):
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        if self.pages.cookie in request.cookies:
            refusal: Response | None = None
            try:
                await self.pages.check_session(request)
            except PageProblem as problem:
                refusal = self.pages.problem(request, problem.status_code, problem.title, problem.message,
                                             problem.headers)
            except DATABASE_AWAY:
                refusal = self.pages.problem(request, 503, "Service momentanément indisponible",
                                             "Réessayez dans quelques secondes.", {"Retry-After": "2"})
            if refusal is not None:
                await refusal(scope, receive, send)
                return
        await self.app(scope, receive, send)


# -- the app ---------------------------------------------------------------------------------

def security_headers(app: FastAPI, exempt: tuple[str, ...] = ("/docs", "/redoc"),
                     form_targets: tuple[str, ...] = ()) -> None:
    """HTML pages: not cached, not framed, own resources only. `exempt`: path prefixes
    left alone (FastAPI's API documentation loads its scripts from a CDN).
    `form_targets`: other origins a form may lead to, redirects included (an identity
    provider's sign-in and sign-out)."""
    csp = CSP.format(forms="".join(f" {origin}" for origin in form_targets))
    app.add_middleware(_PageHeaders, exempt=exempt, headers=(
        (b"cache-control", b"no-store"), (b"x-frame-options", b"DENY"), (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"same-origin"), (b"content-security-policy", csp.encode())))


class _PageHeaders:
    """Adds `headers` to HTML responses that do not set them already."""

    def __init__(self, app: ASGIApp, exempt: tuple[str, ...], headers: tuple[tuple[bytes, bytes], ...]) -> None:
        self.app = app
        self.exempt = exempt
        self.headers = headers

    async def __call__(self, scope: MutableMapping[str, Any], receive: ASGIReceive, send: ASGISend) -> None:
        if scope["type"] != "http" or str(scope.get("path", "")).startswith(self.exempt):
            await self.app(scope, receive, send)
            return

        async def with_headers(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or [])
                present = {name.lower(): value for name, value in headers}
                if present.get(b"content-type", b"").startswith(b"text/html"):
                    headers += [(name, value) for name, value in self.headers if name not in present]
                    message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)


def mount_dsfr(app: FastAPI, dsfr_dir: Path = DSFR_DIR) -> bool:
    """/static/dsfr from the kit's npm project (`cd libs/relais_kit && npm ci --ignore-scripts`),
    and /static/kit, what the kit adds to it (the header's menu without JavaScript:
    sans-script.css); False (pages unstyled) when the DSFR is not installed."""
    if any(getattr(r, "path", None) == "/static/dsfr" for r in app.routes):
        return True
    app.mount("/static/kit", StaticFiles(directory=KIT_STATIC), name="kit-static")
    if not dsfr_dir.is_dir():
        log.warning("dsfr_missing", path=str(dsfr_dir),
                    hint="cd libs/relais_kit && npm ci --ignore-scripts: pages are served unstyled meanwhile")
        return False
    app.mount("/static/dsfr", StaticFiles(directory=dsfr_dir), name="dsfr")
    return True
