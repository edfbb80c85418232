"""The desk's pages: server-rendered HTML (Jinja2, DSFR), forms that work without
JavaScript (POST, then a redirect), a signed session cookie naming a server-side
session (checked at every request: signing out or closing the account ends it) and a
CSRF token checked on every POST. Sign-in is throttled per account and per address
before any password is checked. The expert sees the personal data only here,
decrypted for the page."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.responses import Response

from relais_desk.adapters import store
from relais_desk.adapters.keys import OperatorKey, Undecryptable
from relais_desk.domain import forms, inbox
from relais_desk.domain.cases import ACTION_LABELS, STATUS_LABELS, Action, Status, allowed_actions
from relais_desk.service_layer import accounts
from relais_desk.service_layer.actions import Expert, act
from relais_desk.settings import DeskSettings
from relais_kit import numbers, sessions, webui
from relais_kit.envelope import now
from relais_kit.logs import log
from relais_kit.runtime import Runtime
from relais_kit.throttle import SignInThrottle, TooManyAttempts, client_address
from relais_kit.tokens import TokenSigner
from relais_kit.webui import CSRF_FIELD, Session, security_headers

TEMPLATES = Path(__file__).resolve().parents[1] / "templates"

# URL slug → action, and what the page says once it is sent.
SLUGS: dict[str, Action] = {
    "accuser-reception": Action.ACKNOWLEDGE,
    "demander-information": Action.REQUEST_INFO,
    "repondre": Action.ANSWER,
    "refuser": Action.REJECT,
}
SENT: dict[Action, str] = {
    Action.ACKNOWLEDGE: "Accusé de réception envoyé au conseiller.",
    Action.REQUEST_INFO: "Demande d'information envoyée au conseiller.",
    Action.ANSWER: "Réponse envoyée : la personne et le conseiller seront informés.",
    Action.REJECT: "Refus envoyé au conseiller.",
}
TIMELINE_LABELS: dict[str, str] = {
    "routed": "Demande reçue",
    "acknowledge": "Accusé de réception",
    "request_info": "Information demandée au conseiller",
    "info_provided": "Information reçue du conseiller",
    "answer": "Réponse envoyée",
    "reject": "Dossier refusé",
    "cancelled": "Demande annulée par la personne",
    "reminder": "Relance : délai de réponse dépassé",
}
SITE_KINDS = {"fixed": "Espace France Services", "post_office": "Bureau de poste",
              "mobile_permanence": "Permanence itinérante", "bus": "Bus France Services"}
PAGE_SIZE = 50  # cases per inbox page
LAST_PAGE = 10_000


class Pages:
    """Everything a page needs: settings, key, and the kit's pages (templates, session
    cookie keyed for this operator's desk only, CSRF token)."""

    def __init__(self, settings: DeskSettings, key: OperatorKey, signer: TokenSigner) -> None:
        self.settings = settings
        self.key = key
        self.operator = settings.operator
        self.ttl = timedelta(hours=settings.session_hours)
        self.ui = webui.Pages(TEMPLATES, signer=signer, label=f"desk:{settings.operator}",
                              production=settings.production, registry=_sessions, ttl=self.ttl,
                              cookie="relais_desk_session",
                              globals=dict(
            operator=self.operator, operator_name=forms.OPERATORS.get(self.operator, self.operator),
            status_labels={s.value: label for s, label in STATUS_LABELS.items()},
            outcomes=forms.OUTCOMES, reason_codes=forms.REASON_CODES, operators=forms.OPERATORS,
            procedure_labels=forms.PROCEDURES,
            timeline_labels=TIMELINE_LABELS, site_kinds=SITE_KINDS, action_labels=ACTION_LABELS))
        self.env = self.ui.env  # French date filters come with the kit's pages

    def session(self, request: Request) -> Session:
        return self.ui.session(request)

    def render(self, request: Request, template: str, status_code: int = 200, **context: Any) -> Response:
        return self.ui.render(request, template, status_code, **context)

    def redirect(self, request: Request, url: str) -> Response:
        return self.ui.redirect(request, url)

    def problem(self, request: Request, status_code: int, title: str, message: str) -> Response:
        return self.ui.problem(request, status_code, title, message)

    # -- personal data ---------------------------------------------------------------------

    def personal(self, token: str | None, referral_id: str) -> dict[str, Any] | None:
        """Decrypted for one page, never kept."""
        if token is None:
            return None
        try:
            return self.key.open(token, referral_id=referral_id)
        except Undecryptable as exc:
            log.warning("personal_data_unreadable", reason=str(exc))
            return None


def _runtime(request: Request) -> Runtime | None:
    return getattr(request.app.state, "runtime", None)


class ExpertSessions(webui.PoolSessions):
    """The `sessions` table, where a session lives only while its expert's account is
    open: a sign-in that raced the account's closing opens nothing either."""

    async def alive(self, session_id: str, user_id: str) -> bool:
        async with self.pool.acquire() as conn:
            return await sessions.is_alive(conn, session_id, user_id) and await store.expert_active(conn, user_id)


def _sessions(request: Request) -> webui.SessionRegistry | None:
    runtime = _runtime(request)
    return ExpertSessions(runtime.pool) if runtime is not None else None


async def _form(request: Request) -> dict[str, str]:
    data = await request.form()
    return {k: v for k, v in data.items() if isinstance(v, str)}


def install(app: FastAPI, settings: DeskSettings, key: OperatorKey, signer: TokenSigner) -> None:
    pages = Pages(settings, key, signer)
    app.state.pages = pages
    throttle = SignInThrottle()

    security_headers(app)
    pages.ui.install_handlers(app)  # the server-side session is checked before every route

    def signed_in(request: Request) -> Expert | None:
        session = pages.session(request)
        if not session.signed_in or session.user_id is None:
            return None
        structlog.contextvars.bind_contextvars(user=session.user_id)
        return Expert(session.user_id, session.display_name or session.user_id)

    async def checked_post(request: Request) -> tuple[dict[str, str], Response | None]:
        """The form of a POST, or a 403 page when its CSRF token is missing or wrong."""
        form = await _form(request)
        if not pages.ui.csrf_ok(request, form.get(CSRF_FIELD)):
            log.warning("csrf_refused", path=request.url.path)
            return form, pages.problem(request, 403, "Action refusée",
                                       "Ce formulaire a expiré ou ne vient pas de ce guichet. "
                                       "Rechargez la page et recommencez.")
        return form, None

    @app.get("/", include_in_schema=False)
    async def home(request: Request) -> Response:
        return pages.redirect(request, "/dossiers")

    @app.get("/connexion", include_in_schema=False)
    async def signin_page(request: Request) -> Response:
        if signed_in(request):
            return pages.redirect(request, "/dossiers")
        return pages.render(request, "signin.html.j2", values={}, errors={})

    @app.post("/connexion", include_in_schema=False)
    async def signin(request: Request) -> Response:
        form, refused = await checked_post(request)
        if refused:
            return refused
        runtime = _runtime(request)
        if runtime is None:
            return starting(request)
        user_id, password = form.get("username", "").strip(), form.get("password", "")
        errors: dict[str, str] = {}
        if not user_id:
            errors["username"] = "Indiquez votre identifiant."
        if not password:
            errors["password"] = "Indiquez votre mot de passe."
        if errors:
            return pages.render(request, "signin.html.j2", 422, values={"username": user_id}, errors=errors)
        try:
            await throttle.attempt(user_id, client_address(request))
        except TooManyAttempts as exc:
            log.warning("sign_in_throttled", per=exc.what, retry_after_s=exc.retry_after_s)
            response = pages.render(request, "signin.html.j2", 429, values={"username": user_id}, errors={
                "_form": "Trop de tentatives de connexion. Pour protéger les comptes, réessayez dans "
                         f"{numbers.fr_wait(exc.retry_after_s)}."})
            response.headers["Retry-After"] = str(exc.retry_after_s)
            return response
        expert = await accounts.authenticate(runtime.pool, user_id, password, production=settings.production)
        if expert is None:
            log.info("sign_in_refused")
            return pages.render(request, "signin.html.j2", 401, values={"username": user_id},
                                errors={"_form": "Identifiant ou mot de passe incorrect."})
        await throttle.succeeded(user_id)
        await pages.ui.sign_in(request, expert.user_id, expert.display_name)
        log.info("signed_in", user=expert.user_id)
        return pages.redirect(request, "/dossiers")

    @app.post("/deconnexion", include_in_schema=False)
    async def signout(request: Request) -> Response:
        _, refused = await checked_post(request)
        if refused:
            return refused
        await pages.ui.sign_out(request)
        return pages.redirect(request, "/connexion")

    def starting(request: Request) -> Response:
        response = pages.problem(request, 503, "Le guichet démarre",
                                 "Le guichet attend sa base de données et le courtier de messages. "
                                 "Réessayez dans quelques secondes.")
        response.headers["Retry-After"] = "2"
        return response

    def at_work(request: Request) -> tuple[Expert, Runtime] | Response:
        """The signed-in expert and the started runtime, or the page to show instead
        (the sign-in form, or "the desk is starting")."""
        expert = signed_in(request)
        if expert is None:
            return pages.redirect(request, "/connexion")
        runtime = _runtime(request)
        if runtime is None:
            return starting(request)
        return expert, runtime

    @app.get("/dossiers", include_in_schema=False)
    async def inbox_page(request: Request, statut: str = "", page: str = "1") -> Response:
        ready = at_work(request)
        if isinstance(ready, Response):
            return ready
        expert, runtime = ready
        wanted = Status(statut) if statut in Status.__members__.values() else None
        number = numbers.page(page, LAST_PAGE)
        async with runtime.pool.acquire() as conn:
            cases, total = await store.inbox(conn, runtime.vault, status=wanted, limit=PAGE_SIZE,
                                             offset=(number - 1) * PAGE_SIZE)
        return pages.render(request, "inbox.html.j2", cases=cases, total=total, page=number,
                            pages_count=max(1, -(-total // PAGE_SIZE)), statut=wanted.value if wanted else "",
                            at=now(), expert=expert)

    async def case_page(request: Request, runtime: Runtime, expert: Expert, referral_id: str, *,
                        status_code: int = 200, errors: Mapping[str, str] | None = None,
                        values: Mapping[str, str] | None = None, open_action: str | None = None,
                        refusal: str | None = None, sent: str | None = None) -> Response:
        async with runtime.pool.acquire() as conn:
            case = await store.get_case(conn, runtime.vault, referral_id)
            if case is None:
                return pages.problem(request, 404, "Dossier introuvable",
                                     "Aucun dossier de ce guichet ne porte cette référence.")
            entries = await store.timeline(conn, runtime.vault, referral_id)
            await store.note_view(conn, referral_id, expert.user_id)
        log.info("case_viewed", user=expert.user_id)
        personal = pages.personal(case.personal_data, referral_id)
        timeline = []
        for entry in entries:
            message = None
            if entry.personal_data:
                opened = pages.personal(entry.personal_data, referral_id)
                message = str(opened.get("message") or "") if opened else None
            timeline.append({"entry": entry, "message": message,
                             "unreadable": bool(entry.personal_data) and message is None})
        return pages.render(
            request, "case.html.j2", status_code, case=case, personal=personal,
            citizen=inbox.citizen_lines(personal.get("citizen") or {}) if personal else [],
            timeline=timeline, allowed=[a.value for a in allowed_actions(case.status)],
            slugs={a.value: slug for slug, a in SLUGS.items()}, errors=errors or {}, values=values or {},
            open_action=open_action, refusal=refusal, sent=sent, at=now(), expert=expert,
            retention_days=settings.retention_days)

    @app.get("/dossiers/{referral_id}", include_in_schema=False)
    async def show_case(request: Request, referral_id: str, envoye: str = "") -> Response:
        ready = at_work(request)
        if isinstance(ready, Response):
            return ready
        expert, runtime = ready
        rid = _uuid(referral_id)
        if rid is None:
            return pages.problem(request, 404, "Dossier introuvable", "Cette référence de dossier n'existe pas.")
        structlog.contextvars.bind_contextvars(referral_id=rid)
        sent = SENT.get(SLUGS[envoye]) if envoye in SLUGS else None
        return await case_page(request, runtime, expert, rid, sent=sent)

    @app.post("/dossiers/{referral_id}/{slug}", include_in_schema=False)
    async def case_action(request: Request, referral_id: str, slug: str) -> Response:
        form, refused = await checked_post(request)
        if refused:
            return refused
        ready = at_work(request)
        if isinstance(ready, Response):
            return ready
        expert, runtime = ready
        rid, action = _uuid(referral_id), SLUGS.get(slug)
        if rid is None or action is None:
            return pages.problem(request, 404, "Page introuvable", "Cette action n'existe pas.")
        result = await act(runtime.pool, runtime.contract, runtime.vault, settings.operator, action, rid, form,
                           expert)
        if not result.found:
            return pages.problem(request, 404, "Dossier introuvable",
                                 "Aucun dossier de ce guichet ne porte cette référence.")
        if result.refusal:
            return await case_page(request, runtime, expert, rid, status_code=409, refusal=result.refusal)
        if result.errors:
            return await case_page(request, runtime, expert, rid, status_code=422, errors=result.errors,
                                   values=form, open_action=action.value)
        return pages.redirect(request, f"/dossiers/{rid}?envoye={slug}")


def _uuid(text: str) -> str | None:
    try:
        return str(uuid.UUID(text))
    except ValueError:
        return None
