"""Signing in to the console and out: the form posts the username and password to the
referral service's token API (the console never sees a password hash, never keeps a
password); only the ops role gets in. The access token stays on the server with the
session (`console_tokens`); signing out ends both here and revokes the token there.
Both are audited."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from relais_kit import numbers, webui
from relais_kit.auth import TokenVerifier
from relais_kit.db import DATABASE_AWAY
from relais_kit.envelope import now
from relais_kit.logs import log
from relais_kit.throttle import SignInThrottle, TooManyAttempts, client_address
from relais_kit.tokens import KeysUnavailable, TokenRefused
from relais_ops.adapters import console_tokens
from relais_ops.adapters.referral_auth import AuthUnavailable, SignInRefused, SignInThrottled, TokenIssuer
from relais_ops.entrypoints.console import pages
from relais_ops.entrypoints.console.pages import HOME, SIGN_IN, checked_form, pages_of, pool_of, redirect, render
from relais_ops.service_layer.audit import audit

router = APIRouter()
TEMPLATE = "signin.html.j2"
NOT_OPS = "Ce compte n'a pas le rôle exploitation."
WRONG = "Identifiant ou mot de passe incorrect."
UNAVAILABLE = ("Le service des demandes, qui vérifie les identifiants, ne répond pas. "
               "Réessayez dans quelques instants.")


def _issuer(request: Request) -> TokenIssuer:
    issuer: TokenIssuer = request.app.state.token_issuer
    return issuer


def _throttle(request: Request) -> SignInThrottle:
    throttle: SignInThrottle = request.app.state.console_throttle
    return throttle


def _form(request: Request, status_code: int, username: str, errors: dict[str, str], suite: str) -> Response:
    return render(request, TEMPLATE, status_code, values={"username": username}, errors=errors, suite=suite)


@router.get(SIGN_IN, include_in_schema=False)
async def signin_page(request: Request, suite: str = "") -> Response:
    target = webui.local_path(suite, HOME)
    if pages_of(request).session(request).signed_in:
        return redirect(request, target)
    return render(request, TEMPLATE, values={}, errors={}, suite=target)


@router.post(SIGN_IN, include_in_schema=False)
async def signin(request: Request) -> Response:
    form = await checked_form(request)
    pool = pool_of(request)
    suite = webui.local_path(form.get("suite"), HOME)
    username, password = form.get("username", "").strip(), form.get("password", "")
    errors: dict[str, str] = {}
    if not username:
        errors["username"] = "Indiquez votre identifiant."
    if not password:
        errors["password"] = "Indiquez votre mot de passe."
    if errors:
        return _form(request, 422, username, errors, suite)
    issuer = _issuer(request)
    try:
        # Here too, per address: behind the console every sign-in reaches the referral
        # service from the same address, which its own throttle cannot tell apart.
        await _throttle(request).attempt(username, client_address(request))
        token = await issuer.token(username, password)
    except (SignInThrottled, TooManyAttempts) as exc:
        log.warning("console_sign_in_throttled", per=getattr(exc, "what", "referral"))
        response = _form(request, 429, username, {"_form": "Trop de tentatives de connexion. Pour protéger les "
                         f"comptes, réessayez dans {numbers.fr_wait(exc.retry_after_s)}."}, suite)
        response.headers["Retry-After"] = str(exc.retry_after_s)
        return response
    except SignInRefused:
        log.info("console_sign_in_refused", why="credentials")
        return _form(request, 401, username, {"_form": WRONG}, suite)
    except AuthUnavailable as exc:
        log.warning("console_sign_in_unavailable", reason=str(exc))
        return _form(request, 503, username, {"_form": UNAVAILABLE}, suite)
    verifier: TokenVerifier = request.app.state.token_verifier
    try:
        user = await verifier.user(token)
    except (TokenRefused, KeysUnavailable) as exc:
        log.warning("console_sign_in_token_unusable", reason=str(exc))
        return _form(request, 503, username, {"_form": UNAVAILABLE}, suite)
    try:
        if user.role != pages.ROLE:
            await issuer.revoke(token)
            await audit(pool, user.user_id, "sign_in_refused", "console", details={"role": user.role})
            log.info("console_sign_in_refused", why="role", role=user.role)
            return _form(request, 403, username, {"_form": NOT_OPS}, suite)
        await _throttle(request).succeeded(username)
        session = await pages_of(request).sign_in(request, user.user_id, user.display_name, {"role": user.role})
        assert session.session_id is not None
        await console_tokens.keep(pool, session.session_id, token, now() + pages.SESSION_TTL)
        await audit(pool, user.user_id, "sign_in", "console")
    except DATABASE_AWAY as exc:
        raise webui.PageProblem(503, *pages.STARTING, {"Retry-After": "2"}) from exc
    log.info("console_signed_in", user=user.user_id)
    return redirect(request, suite)


@router.post("/console/deconnexion", include_in_schema=False)
async def signout(request: Request) -> Response:
    await checked_form(request)
    ui = pages_of(request)
    session = ui.session(request)
    pool = pool_of(request)
    if session.signed_in and session.user_id is not None and session.session_id is not None:
        token = await console_tokens.token_of(pool, session.session_id)
        if token is not None:
            await _issuer(request).revoke(token)
        await audit(pool, session.user_id, "sign_out", "console")
        log.info("console_signed_out", user=session.user_id)
    await ui.sign_out(request)
    return redirect(request, SIGN_IN)
