"""Signing in with a local account (development and demo), signing out, the home page."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from relais_kit import numbers
from relais_kit.logs import log
from relais_kit.throttle import TooManyAttempts, client_address
from relais_kit.webui import local_path
from relais_referral.entrypoints.ui import place_of_day
from relais_referral.entrypoints.ui.pages import (
    HOME,
    SIGN_IN,
    Form,
    connection,
    current_user,
    invalid,
    pages,
    pool,
    redirect,
    render,
    session_data,
)
from relais_referral.entrypoints.ui.proconnect import provider_logout
from relais_referral.service_layer import accounts

router = APIRouter()
TEMPLATE = "ui/signin.html.j2"


def _flags(request: Request) -> dict[str, bool]:
    """The ProConnect button when OpenID Connect is configured; the demo accounts'
    notice outside production."""
    settings = request.app.state.settings
    return {"proconnect": bool(getattr(settings, "oidc_enabled", False)), "demo": not settings.production}


@router.get("/")
async def home(request: Request) -> Response:
    return redirect(request, HOME if current_user(request) else SIGN_IN)


@router.get("/connexion")
async def signin_page(request: Request, suite: str = "") -> Response:
    if current_user(request):
        return redirect(request, local_path(suite, HOME))
    return render(request, TEMPLATE, values={}, errors={}, suite=local_path(suite, ""),
                  **_flags(request))


@router.post("/connexion")
async def signin(request: Request, form: Form) -> Response:
    user_id, password = form.get("user_id", "").strip(), form.get("password", "")
    suite = local_path(form.get("suite"), "")
    errors: dict[str, str] = {}
    if not user_id:
        errors["user_id"] = "Indiquez votre identifiant."
    if not password:
        errors["password"] = "Indiquez votre mot de passe."
    if errors:
        return invalid(request, TEMPLATE, errors, values={"user_id": user_id}, suite=suite,
                       **_flags(request))
    try:
        user = await accounts.sign_in(pool(request), request.app.state.signin_throttle, user_id, password,
                                      client_address(request), production=request.app.state.settings.production)
    except TooManyAttempts as exc:
        log.warning("sign_in_throttled", per=exc.what)
        response = render(request, TEMPLATE, 429, values={"user_id": user_id}, suite=suite, **_flags(request),
                          errors={"_form": _too_many(exc)})
        response.headers["Retry-After"] = str(exc.retry_after_s)
        return response
    if user is None:
        log.info("sign_in_refused")
        return render(request, TEMPLATE, 401, values={"user_id": user_id}, suite=suite,
                      **_flags(request),
                      errors={"_form": "Identifiant ou mot de passe incorrect."})
    async with connection(request) as conn:
        begin = await place_of_day.start(conn, user)
    data = session_data(user)
    data.update(place_of_day.session_place(begin.place))
    await pages(request).sign_in(request, user.user_id, user.display_name, data)
    log.info("signed_in", user=user.user_id, role=user.role, place_asked=begin.ask)
    return redirect(request, place_of_day.after_sign_in(begin, suite, HOME))


def _too_many(exc: TooManyAttempts) -> str:
    whose = "pour cet identifiant" if exc.what == "account" else "depuis ce poste"
    return f"Trop de tentatives de connexion {whose}. Réessayez dans {numbers.fr_wait(exc.retry_after_s)}."


@router.post("/deconnexion")
async def signout(request: Request, form: Form) -> Response:
    session = pages(request).session(request)  # as it was: signed in with ProConnect or not
    await pages(request).sign_out(request)
    # Signed in through ProConnect: signed out of ProConnect too, then back here.
    return redirect(request, await provider_logout(request, session) or SIGN_IN)
