"""What every page of the adviser's UI uses: the signed-in user (from the session), the
dependencies that require one (redirect to the sign-in form otherwise) or refuse the
read-only role, the CSRF-checked form of a POST, rendering with the base layout, and the
database connection of the running service.

A route module of this package declares `router = APIRouter()` and its routes:

    @router.get("/demandes/{referral_id}")
    async def show(request: Request, referral_id: str, user: Viewer) -> Response:
        async with connection(request) as conn:
            ...
        return render(request, "ui/referral.html.j2", nav="demandes", referral=...)

    @router.post("/demandes/{referral_id}/annuler")
    async def cancel(request: Request, referral_id: str, user: Writer, form: Form) -> Response:
        ...
        return redirect(request, f"/demandes/{referral_id}")
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

import asyncpg
import structlog
from fastapi import Depends, Request
from fastapi.responses import Response

from relais_kit.auth import User
from relais_kit.tokens import TokenSigner
from relais_kit.webui import PageProblem, Pages, PoolSessions, RedirectTo, Session, SessionRegistry
from relais_referral.domain.catalogue import load_catalogue
from relais_referral.domain.lifecycle import Status
from relais_referral.service_layer.context import Context

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"
SIGN_IN = "/connexion"
HOME = "/aujourdhui"
ROLES = {"adviser": "Conseiller", "supervisor": "Superviseur", "ops": "Exploitation"}
STATUS_LABELS: dict[str, str] = {
    Status.REQUESTED.value: "Envoyée",
    Status.ROUTED.value: "Transmise à l'opérateur",
    Status.ACKNOWLEDGED.value: "Prise en charge",
    Status.INFO_REQUESTED.value: "Information demandée",
    Status.ANSWERED.value: "Réponse reçue",
    Status.REJECTED.value: "Refusée par l'opérateur",
    Status.CANCELLED.value: "Annulée",
    Status.CLOSED.value: "Clôturée",
}
# DSFR badge of each status.
STATUS_BADGES: dict[str, str] = {
    "requested": "fr-badge--info", "routed": "fr-badge--info", "acknowledged": "fr-badge--new",
    "info_requested": "fr-badge--warning", "answered": "fr-badge--success", "rejected": "fr-badge--error",
    "cancelled": "", "closed": "",
}
CONTACT_CHANNELS: dict[str, str] = {"sms": "SMS", "email": "E-mail", "letter": "Courrier", "none": "Aucun"}


@dataclass(frozen=True)
class WebUser:
    """The signed-in user of a page. `place_id` is the place chosen for today (an
    adviser's home site or one of its permanences); None until chosen (home site)."""

    user_id: str
    role: str
    site_id: str | None
    display_name: str
    department: str | None = None
    place_id: str | None = None
    place_name: str | None = None

    @property
    def read_only(self) -> bool:
        return self.role == "ops"

    @property
    def is_adviser(self) -> bool:
        return self.role == "adviser"

    @property
    def place(self) -> str | None:
        """Where the visits opened now take place: the chosen place, else the home site."""
        return self.place_id or self.site_id

    def as_user(self) -> User:
        """For the service layer: the same rules as the API's."""
        return User(self.user_id, self.role, self.site_id, self.display_name, self.department)


def user_of(session: Session) -> WebUser | None:
    if not session.signed_in or session.user_id is None or session.get("role") not in ROLES:
        return None
    return WebUser(session.user_id, session.get("role") or "", session.get("site_id"),
                   session.display_name or session.user_id, session.get("department"),
                   session.get("place_id"), session.get("place_name"))


def session_data(user: User) -> dict[str, str]:
    data = {"role": user.role}
    if user.site_id:
        data["site_id"] = user.site_id
    if user.department:
        data["department"] = user.department
    return data


def _sessions(request: Request) -> SessionRegistry | None:
    runtime = getattr(request.app.state, "runtime", None)
    return PoolSessions(runtime.pool) if runtime is not None else None


def make_pages(signer: TokenSigner, production: bool, session_hours: float = 10.0) -> Pages:
    catalogue = load_catalogue()

    def extra(request: Request, session: Session) -> Mapping[str, Any]:
        return {"user": user_of(session), "nav": ""}

    return Pages(TEMPLATES, signer=signer, label="referral-ui", production=production, registry=_sessions,
                 ttl=timedelta(hours=session_hours), problem_template="ui/problem.html.j2", context=extra,
                 globals={"status_labels": STATUS_LABELS, "status_badges": STATUS_BADGES, "roles": ROLES,
                          "contact_channels": CONTACT_CHANNELS,
                          "operator_names": {c: o.name for c, o in catalogue.operators.items()},
                          "procedure_labels": {p.code: p.label for o in catalogue.operators.values()
                                               for p in o.procedures.values()}})


# -- for the routes ----------------------------------------------------------------------------

def pages(request: Request) -> Pages:
    return request.app.state.ui_pages  # type: ignore[no-any-return]


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> Response:
    """The template (extending ui/base.html.j2) with request, session, user, csrf_token, now
    and `context`. Pass `nav="aujourdhui" | "nouvelle" | "demandes" | "statistiques" | "journal"`:
    the menu's section of the page (its entry is marked as the current page when the address is
    the entry's own, as the page's section otherwise: a referral is in "Demandes")."""
    return pages(request).render(request, template, status_code, **context)


def invalid(request: Request, template: str, errors: Mapping[str, str], **context: Any) -> Response:
    """The form again with status 422 and `errors` (field name → French message)."""
    return pages(request).invalid(request, template, errors, **context)


def redirect(request: Request, url: str) -> Response:
    """303 See Other (after a POST)."""
    return pages(request).redirect(request, url)


def problem(request: Request, status_code: int, title: str, message: str) -> Response:
    return pages(request).problem(request, status_code, title, message)


def not_found(what: str = "Page introuvable",
              message: str = "Cette page n'existe pas ou vous n'y avez pas accès.") -> PageProblem:
    """`raise not_found("Demande introuvable", "…")`: other sites' things are 404, not 403."""
    return PageProblem(404, what, message)


def current_user(request: Request) -> WebUser | None:
    user = user_of(pages(request).session(request))
    if user is not None:
        structlog.contextvars.bind_contextvars(user=user.user_id)
    return user


def _sign_in_url(request: Request) -> str:
    from urllib.parse import quote
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return f"{SIGN_IN}?suite={quote(target, safe='/')}"


async def viewer(request: Request) -> WebUser:
    """Any signed-in user; a visitor is sent to the sign-in form (and back here after)."""
    user = current_user(request)
    if user is None:
        raise RedirectTo(_sign_in_url(request) if request.method == "GET" else SIGN_IN)
    return user


async def checked_form(request: Request) -> dict[str, str]:
    """The POSTed text fields, after the CSRF check (403 page otherwise)."""
    return await pages(request).checked_form(request)


async def writer(request: Request, form: Annotated[dict[str, str], Depends(checked_form)]) -> WebUser:
    """A signed-in user who may change things (not ops), on a POST with a valid CSRF token."""
    user = await viewer(request)
    if user.read_only:
        raise PageProblem(403, "Action non autorisée", "Votre rôle permet de consulter, pas de modifier.")
    return user


async def adviser(request: Request, user: Annotated[WebUser, Depends(viewer)]) -> WebUser:
    """Pages only advisers use (opening a visit, referring)."""
    if not user.is_adviser:
        raise PageProblem(403, "Réservé aux conseillers", "Cette page sert aux conseillers France Services.")
    return user


Viewer = Annotated[WebUser, Depends(viewer)]
Writer = Annotated[WebUser, Depends(writer)]
AdviserUser = Annotated[WebUser, Depends(adviser)]
Form = Annotated[dict[str, str], Depends(checked_form)]


def require_roles(user: WebUser, *roles: str) -> None:
    if user.role not in roles:
        raise PageProblem(403, "Accès réservé", "Cette page est réservée aux superviseurs et à l'exploitation.")


def context(request: Request) -> Context:
    ctx: Context | None = getattr(request.app.state, "context", None)
    if ctx is None:
        raise _starting()
    return ctx


def _starting() -> PageProblem:
    return PageProblem(503, "Le service démarre", "Le service attend sa base de données et le courtier de "
                       "messages. Réessayez dans quelques secondes.", {"Retry-After": "2"})


def pool(request: Request) -> asyncpg.Pool:
    runtime = getattr(request.app.state, "runtime", None)
    if runtime is None:
        raise _starting()
    return runtime.pool  # type: ignore[no-any-return]


@asynccontextmanager
async def connection(request: Request) -> AsyncIterator[asyncpg.Connection]:
    async with pool(request).acquire() as conn:
        yield conn


@asynccontextmanager
async def transaction(request: Request) -> AsyncIterator[asyncpg.Connection]:
    async with pool(request).acquire() as conn, conn.transaction():
        yield conn
