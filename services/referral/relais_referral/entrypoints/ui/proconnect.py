"""Signing in with ProConnect (OpenID Connect, adapters/oidc.py), when RELAIS_OIDC_ISSUER
is set: GET /connexion/proconnect sends the browser to the provider, which sends it
back to GET /connexion/proconnect/retour. The agent it names — the provider's issuer
and `sub` — is the account bound to them, or, on the agent's first sign-in, the
account of their verified e-mail address, bound then (service_layer.proconnect); an
agent without one is told so — a sign-in never creates an account. The attempt (state,
nonce, PKCE verifier) travels in a signed cookie of ten minutes, sent back by the
browser on the provider's redirect (SameSite=Lax)."""

from __future__ import annotations

from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from relais_kit.logs import log
from relais_kit.tokens import TokenSigner
from relais_kit.webui import Session, local_path
from relais_referral.adapters import oidc
from relais_referral.entrypoints.ui import place_of_day
from relais_referral.entrypoints.ui.pages import (
    HOME,
    SIGN_IN,
    pages,
    problem,
    redirect,
    session_data,
    transaction,
)
from relais_referral.service_layer import proconnect as agents
from relais_referral.settings import ReferralSettings

router = APIRouter()
START = "/connexion/proconnect"
CALLBACK = "/connexion/proconnect/retour"
COOKIE_PATH = "/connexion/proconnect"

NOT_CONFIGURED = ("Connexion ProConnect indisponible",
                  "La connexion avec ProConnect n'est pas configurée sur ce service. "
                  "Connectez-vous avec votre identifiant Relais.")
UNAVAILABLE = ("ProConnect ne répond pas",
               "Le service d'identification ProConnect ne répond pas pour le moment. Réessayez dans "
               "quelques instants, ou connectez-vous avec votre identifiant Relais.")
EXPIRED = ("Connexion expirée",
           "Cette tentative de connexion a expiré ou n'a pas été commencée depuis ce navigateur. "
           "Recommencez la connexion avec ProConnect.")
REFUSED = ("Connexion refusée",
           "La réponse de ProConnect n'a pas pu être vérifiée : la connexion est refusée. "
           "Recommencez la connexion avec ProConnect ; si le problème persiste, contactez l'exploitation.")
CANCELLED = ("Connexion interrompue",
             "La connexion avec ProConnect a été interrompue. Vous pouvez recommencer, ou vous connecter "
             "avec votre identifiant Relais.")
NO_ACCOUNT = "Votre compte n'est pas encore ouvert dans Relais"
REFUSALS = {
    agents.EMAIL_NOT_VERIFIED: (
        "Adresse électronique non vérifiée",
        "ProConnect n'a pas confirmé que l'adresse électronique de votre identité vous appartient : elle ne "
        "peut pas servir à retrouver votre compte Relais. Contactez l'équipe d'exploitation, qui peut "
        "rattacher votre identité ProConnect à votre compte."),
    agents.BOUND_TO_ANOTHER_AGENT: (
        "Compte rattaché à une autre identité",
        "Le compte Relais de cette adresse électronique est déjà rattaché à une autre identité ProConnect. "
        "Contactez l'équipe d'exploitation."),
    agents.CLOSED: (
        "Compte fermé",
        "Votre compte Relais est fermé. Adressez-vous à votre superviseur ou à l'équipe d'exploitation."),
}


def config_of(settings: ReferralSettings) -> oidc.OidcConfig | None:
    if not settings.oidc_enabled:
        return None
    return oidc.OidcConfig(issuer=settings.oidc_issuer.strip(), client_id=settings.oidc_client_id,
                           client_secret=settings.oidc_client_secret, redirect_url=settings.oidc_redirect_url,
                           scopes=settings.oidc_scopes)


def client_of(request: Request) -> oidc.OidcClient | None:
    """The app's OIDC client (made on first use: metadata and keys are cached on it);
    None when ProConnect is not configured."""
    found: oidc.OidcClient | None = getattr(request.app.state, "oidc_client", None)
    if found is not None:
        return found
    config = config_of(request.app.state.settings)
    if config is None:
        return None
    request.app.state.oidc_client = oidc.OidcClient(config)
    return request.app.state.oidc_client  # type: ignore[no-any-return]


def _cookie(request: Request) -> str:
    return ("__Host-" if request.app.state.settings.production else "") + "relais_proconnect"


def _key(request: Request) -> TokenSigner:
    return request.app.state.token_signer  # type: ignore[no-any-return]


def _forget_attempt(request: Request, response: Response) -> Response:
    response.delete_cookie(_cookie(request), path=_cookie_path(request))
    return response


def _cookie_path(request: Request) -> str:
    # A __Host- cookie must have Path=/.
    return "/" if request.app.state.settings.production else COOKIE_PATH


async def provider_logout(request: Request, session: Session) -> str | None:
    """For the sign-out route, with the session as it was before signing out: the
    provider's logout URL when the agent signed in with ProConnect (the browser comes
    back to /connexion, to be registered at the provider as post-logout redirect URI),
    else None (a local sign-out only).

        session = pages(request).session(request)
        await pages(request).sign_out(request)
        return redirect(request, await provider_logout(request, session) or SIGN_IN)
    """
    id_token = session.get("id_token")
    client = client_of(request)
    if session.get("idp") != "proconnect" or not id_token or client is None:
        return None
    parts = urlsplit(client.config.redirect_url)
    return await client.end_session_url(id_token, f"{parts.scheme}://{parts.netloc}{SIGN_IN}")


@router.get(START)
async def start(request: Request, suite: str = "") -> Response:
    client = client_of(request)
    if client is None:
        return problem(request, 404, *NOT_CONFIGURED)
    try:
        attempt, url = await client.begin(local_path(suite, HOME))
    except oidc.OidcError as exc:
        log.warning("proconnect_unavailable", reason=exc.reason)
        return problem(request, 503, *UNAVAILABLE)
    response = RedirectResponse(url, status_code=303)
    response.set_cookie(_cookie(request), oidc.seal(attempt, _key(request)), max_age=oidc.TRANSACTION_TTL_S,
                        path=_cookie_path(request), httponly=True, samesite="lax",
                        secure=request.app.state.settings.production)
    log.info("proconnect_started")
    return response


@router.get(CALLBACK)
async def callback(request: Request) -> Response:
    client = client_of(request)
    if client is None:
        return problem(request, 404, *NOT_CONFIGURED)
    attempt = oidc.unseal(request.cookies.get(_cookie(request)), _key(request))
    if attempt is None:
        log.info("proconnect_refused", reason="no_attempt")
        return _forget_attempt(request, problem(request, 400, *EXPIRED))
    params = {k: v for k, v in request.query_params.items()}
    try:
        identity = await client.complete(attempt, params)
    except oidc.OidcError as exc:
        log.warning("proconnect_refused", reason=exc.reason)
        if exc.unavailable:
            return _forget_attempt(request, problem(request, 503, *UNAVAILABLE))
        if exc.reason.startswith("provider_error_"):
            return _forget_attempt(request, problem(request, 401, *CANCELLED))
        return _forget_attempt(request, problem(request, 403, *REFUSED))

    settings = request.app.state.settings
    try:
        async with transaction(request) as conn:
            account = await agents.account_for(conn, identity.issuer or client.config.issuer, identity.subject,
                                               identity.email, identity.email_verified,
                                               emails_verified=settings.oidc_emails_verified,
                                               production=settings.production)
            begin = await place_of_day.start(conn, account.user())
    except agents.Refused as refused:
        log.info("proconnect_refused", reason=refused.reason)  # never the address: personal data
        if refused.reason in REFUSALS:
            return _forget_attempt(request, problem(request, 403, *REFUSALS[refused.reason]))
        return _forget_attempt(request, problem(
            request, 403, NO_ACCOUNT,
            f"ProConnect vous a bien identifié ({identity.email}), mais aucun compte Relais n'est ouvert "
            "à cette adresse. Demandez à votre superviseur ou à l'équipe d'exploitation d'ouvrir votre "
            "compte avec cette adresse électronique, puis reconnectez-vous."))
    user = account.user()
    data = session_data(user)
    data["idp"] = "proconnect"
    if identity.id_token:
        data["id_token"] = identity.id_token  # for the provider's logout (provider_logout)
    data.update(place_of_day.session_place(begin.place))
    await pages(request).sign_in(request, user.user_id, user.display_name, data)
    log.info("signed_in", user=user.user_id, role=user.role, via="proconnect", place_asked=begin.ask)
    suite = local_path(attempt.next_path, "")
    return _forget_attempt(request, redirect(request, place_of_day.after_sign_in(begin, suite, HOME)))
