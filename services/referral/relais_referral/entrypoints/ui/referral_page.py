"""A referral's page (/demandes/{id}): its header, its timeline — live, through
server-sent events at /demandes/{id}/flux and the fragment /demandes/{id}/chronologie —
and the adviser's moves the lifecycle allows now: answer the operator's question,
re-route after a rejection, cancel, close with an outcome. Same rules as the API: a
refused move is a 409 saying why in French, a bad field a 422 next to it, another
site's referral a 404."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response, StreamingResponse

from relais_kit.envelope import now
from relais_kit.logs import log
from relais_kit.vault import Vault
from relais_kit.webui import PageProblem
from relais_referral.domain.model import Referral
from relais_referral.entrypoints.ui.forms import missing_in_words
from relais_referral.entrypoints.ui.pages import (
    Form,
    Viewer,
    WebUser,
    Writer,
    connection,
    context,
    not_found,
    pages,
    pool,
    redirect,
    render,
    transaction,
)
from relais_referral.entrypoints.ui.referral_rules import (
    ANSWER_OUTCOMES,
    AWAITING,
    CHANNELS,
    CLOSE_OUTCOMES,
    DONE,
    EVENT_LABELS,
    REASON_CODES,
    actor_label,
    allowed_actions,
    check_reroute,
    refusal,
    text,
)
from relais_referral.service_layer import audit, follow_up, live, scope
from relais_referral.service_layer.consult import ReferralView, consult
from relais_referral.service_layer.context import Context
from relais_referral.service_layer.errors import Conflict, InvalidField, NotAllowed, NotFound

router = APIRouter(dependencies=[Depends(audit.ui_channel)])
CONFIRM = "ui/confirm.html.j2"


def _id(raw: str) -> str:
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise not_found("Demande introuvable", "Cette référence de demande n'existe pas.") from None


async def _view(conn: Any, vault: Vault, user: WebUser, referral_id: str, *, view: bool = True) -> ReferralView:
    try:
        return await consult(conn, vault, user.as_user(), referral_id, view=view)
    except NotFound:
        raise not_found("Demande introuvable", "Aucune demande de votre périmètre ne porte cette référence.") from None


def _page(request: Request, user: WebUser, view: ReferralView, status_code: int = 200, *,
          template: str = "ui/referral.html.j2", action: str | None = None,
          errors: Mapping[str, str] | None = None, values: Mapping[str, str] | None = None,
          refused: str | None = None, done: str | None = None) -> Response:
    ctx = context(request)
    referral = view.referral
    site_operators = sorted(view.site.operators) if view.site else [referral.operator]
    suggested = next((e["detail"].get("suggested_operator") for e in reversed(view.timeline)
                      if e["event"] == "rejected"), None)
    reroute_values = {"operator": suggested or "", "summary": referral.summary or ""}
    return render(
        request, template, status_code, nav="demandes", v=view, r=referral, status=referral.status.value,
        actions=allowed_actions(user.role, referral.status), action=action, errors=errors or {},
        values=values or {}, reroute_values=values if action == "reorienter" else reroute_values,
        refused=refused, done=done, overdue=referral.overdue_at is not None and referral.status in AWAITING,
        operator_name=_operator_name(ctx, referral.operator),
        procedure_label=_procedure_label(ctx, referral),
        site_operators=[(o, _operator_name(ctx, o)) for o in site_operators if o != referral.operator],
        procedures=[(o, _operator_name(ctx, o), sorted((p.code, p.label) for p in op.procedures.values()))
                    for o in site_operators if o != referral.operator
                    if (op := ctx.catalogue.operator(o)) is not None],
        event_labels=EVENT_LABELS, close_outcomes=CLOSE_OUTCOMES, answer_outcomes=ANSWER_OUTCOMES,
        reason_codes=REASON_CODES, notify_channels=CHANNELS,
        actor=lambda a: actor_label(a, view.names, {c: o.name for c, o in ctx.catalogue.operators.items()}))


def _operator_name(ctx: Context, code: str) -> str:
    operator = ctx.catalogue.operator(code)
    return operator.name if operator else code


def _procedure_label(ctx: Context, referral: Referral) -> str:
    procedure = ctx.catalogue.procedure(referral.operator, referral.procedure)
    return procedure.label if procedure else referral.procedure


@router.get("/demandes/{referral_id}")
async def show(request: Request, referral_id: str, user: Viewer, fait: str = "") -> Response:
    rid = _id(referral_id)
    async with transaction(request) as conn:
        view = await _view(conn, context(request).vault, user, rid)
    log.info("referral_page_viewed", status=view.referral.status.value)
    return _page(request, user, view, done=DONE.get(fait))


@router.get("/demandes/{referral_id}/chronologie")
async def fragment(request: Request, referral_id: str, user: Viewer) -> Response:
    """The live parts of the page (status badge, timeline, actions), for live.js."""
    rid = _id(referral_id)
    async with connection(request) as conn:
        view = await _view(conn, context(request).vault, user, rid, view=False)
    return _page(request, user, view, template="ui/referral_live.html.j2")


@router.get("/demandes/{referral_id}/flux")
async def feed(request: Request, referral_id: str, user: Viewer, depuis: str = "") -> Response:
    """text/event-stream: `chronologie` each time the timeline grows (see service_layer.live)."""
    rid = _id(referral_id)
    async with connection(request) as conn:
        referral = await conn.fetchrow("SELECT site_id FROM referrals WHERE referral_id = $1", rid)
        if referral is None or not await scope.may_see(conn, user.as_user(), referral["site_id"]):
            raise not_found("Demande introuvable", "Aucune demande de votre périmètre ne porte cette référence.")
    stream = live.changes(live.reader(pool(request), rid),
                          live.since(request.headers.get("last-event-id"), depuis), request.is_disconnected,
                          lambda: pages(request).still_signed_in(request), heartbeat_s=live.HEARTBEAT_S)
    return StreamingResponse(stream, media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


Action = Callable[[Any, Context], Awaitable[Referral]]


async def _act(request: Request, user: WebUser, rid: str, slug: str, action: Action,
               values: Mapping[str, str]) -> Response:
    """Does the move; the page again with why when it is refused."""
    if user.role != "adviser":
        raise PageProblem(403, "Action non autorisée", "Seuls les conseillers font évoluer une demande.")
    try:
        async with transaction(request) as conn:
            referral = await action(conn, context(request))
    except Conflict as exc:
        return await _again(request, user, rid, slug, 409, refused=refusal(slug, exc.status), values=values)
    except NotFound:
        raise not_found("Demande introuvable", "Aucune demande de votre site ne porte cette référence.") from None
    except NotAllowed:
        raise PageProblem(403, "Action non autorisée", "Seul un conseiller du site de la demande peut la faire "
                          "évoluer.") from None
    except InvalidField as exc:
        if exc.field.startswith("citizen."):  # the new procedure needs what the visit lacks (a birth date…)
            return await _again(request, user, rid, slug, 422, values=values,
                                errors={"_form": missing_in_words(exc.field.removeprefix("citizen."))})
        message = {"operator": "Cet opérateur n'est pas proposé sur le lieu de la demande.",
                   "procedure": "Cette démarche n'appartient pas à l'opérateur choisi."}.get(exc.field, exc.message)
        return await _again(request, user, rid, slug, 422, errors={exc.field: message}, values=values)
    log.info("referral_page_move", move=slug)
    return redirect(request, f"/demandes/{referral.referral_id}?fait={slug}")


async def _again(request: Request, user: WebUser, rid: str, slug: str, status_code: int, *,
                 errors: Mapping[str, str] | None = None, values: Mapping[str, str] | None = None,
                 refused: str | None = None) -> Response:
    async with transaction(request) as conn:
        view = await _view(conn, context(request).vault, user, rid)
    return _page(request, user, view, status_code, action=slug, errors=errors, values=values, refused=refused)


@router.post("/demandes/{referral_id}/complement")
async def provide_info(request: Request, referral_id: str, user: Writer, form: Form) -> Response:
    rid = _id(referral_id)
    errors: dict[str, str] = {}
    message = text(form, "message", errors, max_length=4000, missing="Écrivez la réponse à la question de l'opérateur.")
    if errors or message is None:
        return await _again(request, user, rid, "complement", 422, errors=errors, values=form)
    return await _act(request, user, rid, "complement",
                      lambda conn, ctx: follow_up.provide_info(conn, ctx, user.as_user(), rid, message), form)


def _cancel_page(request: Request, view: ReferralView, status_code: int = 200, *,
                 errors: Mapping[str, str] | None = None, values: Mapping[str, str] | None = None) -> Response:
    """Cancelling cannot be undone: asked first, naming the person and the procedure."""
    ctx, referral = context(request), view.referral
    citizen = view.visit.citizen if view.visit else None
    return render(
        request, CONFIRM, status_code, nav="demandes",
        question=f"Annuler la demande de {citizen.display_name} ?" if citizen else "Annuler cette demande ?",
        explanation=[f"{_operator_name(ctx, referral.operator)} — {_procedure_label(ctx, referral)}.",
                     "L'opérateur en sera informé. Une demande annulée ne peut pas être reprise : "
                     "il faudrait en envoyer une nouvelle."],
        action=f"/demandes/{referral.referral_id}/annuler", yes="Oui, annuler la demande",
        back=f"/demandes/{referral.referral_id}", no="Non, revenir à la demande", reason=True,
        errors=errors or {}, values=values or {})


def _mover(user: WebUser) -> None:
    if user.role != "adviser":
        raise PageProblem(403, "Action non autorisée", "Seuls les conseillers font évoluer une demande.")


@router.get("/demandes/{referral_id}/annuler")
async def cancel_page(request: Request, referral_id: str, user: Viewer) -> Response:
    rid = _id(referral_id)
    _mover(user)
    async with transaction(request) as conn:
        view = await _view(conn, context(request).vault, user, rid)
    if "annuler" not in allowed_actions(user.role, view.referral.status):
        return redirect(request, f"/demandes/{rid}")
    return _cancel_page(request, view)


@router.post("/demandes/{referral_id}/annuler")
async def cancel(request: Request, referral_id: str, user: Writer, form: Form) -> Response:
    rid = _id(referral_id)
    _mover(user)
    errors: dict[str, str] = {}
    reason = text(form, "reason", errors, max_length=500)
    if errors or form.get("confirmation") != "oui":  # not confirmed (a misclick, a forged form): ask
        async with transaction(request) as conn:
            view = await _view(conn, context(request).vault, user, rid)
        if "annuler" not in allowed_actions(user.role, view.referral.status):
            return _page(request, user, view, 409, action="annuler",
                         refused=refusal("annuler", view.referral.status.value))
        log.info("referral_cancel_asked", confirmed=False)
        return _cancel_page(request, view, 422 if errors else 200, errors=errors, values=form)
    return await _act(request, user, rid, "annuler",
                      lambda conn, ctx: follow_up.cancel(conn, ctx, user.as_user(), rid, reason), form)


@router.post("/demandes/{referral_id}/cloturer")
async def close(request: Request, referral_id: str, user: Writer, form: Form) -> Response:
    rid = _id(referral_id)
    outcome = form.get("outcome", "")
    if outcome not in CLOSE_OUTCOMES or outcome == "rerouted":
        return await _again(request, user, rid, "cloturer", 422, values=form,
                            errors={"outcome": "Choisissez l'issue de la demande pour la personne."})
    return await _act(request, user, rid, "cloturer",
                      lambda conn, ctx: follow_up.close(conn, ctx, user.as_user(), rid, outcome), form)


@router.post("/demandes/{referral_id}/reorienter")
async def reroute(request: Request, referral_id: str, user: Writer, form: Form) -> Response:
    rid = _id(referral_id)
    values, errors = check_reroute(form, context(request))
    if errors:
        return await _again(request, user, rid, "reorienter", 422, errors=errors, values=values)
    return await _act(request, user, rid, "reorienter",
                      lambda conn, ctx: follow_up.reroute(conn, ctx, user.as_user(), rid, values["operator"],
                                                          values["procedure"], values["summary"], now()), values)
