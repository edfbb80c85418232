"""Opening a visit, solving it on the spot, or referring it to an operator: operator →
procedure → summary → the answer deadline shown → send. Without JavaScript, each step
is a POST that shows the next one."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from relais_kit.envelope import now
from relais_kit.logs import log
from relais_kit.webui import PARIS, PageProblem
from relais_referral.adapters import places as place_store
from relais_referral.adapters import store
from relais_referral.domain.catalogue import Catalogue, missing_citizen_fields
from relais_referral.domain.deadlines import due_at
from relais_referral.domain.model import Visit
from relais_referral.entrypoints.ui.forms import (
    VISIT_FIELDS,
    check_additions,
    check_referral,
    check_visit,
    needed_in_words,
)
from relais_referral.entrypoints.ui.pages import (
    AdviserUser,
    Form,
    WebUser,
    Writer,
    context,
    invalid,
    not_found,
    redirect,
    render,
    transaction,
)
from relais_referral.service_layer import audit, referrals, visits
from relais_referral.service_layer.errors import Conflict, InvalidField, NotAllowed, NotFound
from relais_referral.service_layer.visit_closing import close_visit, own_visit

router = APIRouter()
NEW = "ui/visit_new.html.j2"
REFER = "ui/refer.html.j2"
VISIT_NOT_FOUND = ("Visite introuvable", "Aucune visite de vos lieux ne porte cette référence.")


def _adviser(user: WebUser) -> WebUser:
    if not user.is_adviser:
        raise PageProblem(403, "Réservé aux conseillers", "Cette action sert aux conseillers France Services.")
    return user


@router.get("/visites/nouvelle")
async def new_visit(request: Request, user: AdviserUser) -> Response:
    return render(request, NEW, nav="nouvelle", values={"contact_channel": ""}, errors={})


@router.post("/visites/nouvelle")
async def open_visit(request: Request, user: Writer, form: Form) -> Response:
    _adviser(user)
    values = {k: form.get(k, "") for k in VISIT_FIELDS}
    checked = check_visit(form, now().astimezone(PARIS).date())
    if not checked.ok:
        return invalid(request, NEW, checked.errors, nav="nouvelle", values=values)
    try:
        async with transaction(request) as conn:
            visit = await visits.open_visit(conn, context(request), user.as_user(), user.place or "",
                                            "in_person", checked.value)
    except (InvalidField, NotAllowed):
        return invalid(request, NEW, {"_form": "Votre lieu du jour n'est plus connu : choisissez-le à nouveau "
                                               "(menu « Lieu »)."}, nav="nouvelle", values=values)
    log.info("visit_opened", visit_id=visit.visit_id, site_id=visit.site_id)
    return redirect(request, f"/visites/{visit.visit_id}")


async def _visit(request: Request, user: WebUser, visit_id: str, *,
                 viewed: bool = True) -> tuple[Visit, Any, dict[str, Any]]:
    """The visit, for a page that shows it (`viewed`: audited with the read, the citizen's
    identity and contact being on it); other sites' visits are 404."""
    try:
        async with transaction(request) as conn:
            visit = await own_visit(conn, context(request).vault, user.as_user(), visit_id)
            site = await store.get_site(conn, visit.site_id)
            state = await place_store.visit_state(conn, visit_id) or {}
            state["referrals"] = await place_store.referrals_of_visit(conn, visit_id)
            if viewed:
                await audit.visit_viewed(conn, user.as_user(), visit.visit_id)
    except NotFound:
        raise not_found(*VISIT_NOT_FOUND) from None
    except ValueError:  # not a uuid
        raise not_found(*VISIT_NOT_FOUND) from None
    return visit, site, state


@router.get("/visites/{visit_id}")
async def show_visit(request: Request, visit_id: str, user: AdviserUser) -> Response:
    visit, site, state = await _visit(request, user, visit_id)
    return render(request, "ui/visit.html.j2", nav="aujourdhui", visit=visit, site=site, state=state,
                  resolved=request.query_params.get("resolu") == "1")


def _solved_page(request: Request, visit: Visit) -> Response:
    """Closing a visit as solved cannot be undone: asked first."""
    whose = f" de {visit.citizen.display_name}" if visit.citizen else ""
    return render(request, "ui/confirm.html.j2", nav="aujourdhui",
                  question=f"La demande{whose} est-elle résolue sur place ?",
                  explanation=["La visite sera close et comptée comme résolue sur place, sans demande à un "
                               "opérateur."],
                  action=f"/visites/{visit.visit_id}/resolu", yes="Oui, c'est résolu",
                  back=f"/visites/{visit.visit_id}", no="Non, revenir à la visite", reason=False,
                  errors={}, values={})


@router.get("/visites/{visit_id}/resolu")
async def solved_page(request: Request, visit_id: str, user: AdviserUser) -> Response:
    visit, _, state = await _visit(request, user, visit_id)
    if state.get("closed_at") or visit.citizen is None:
        return redirect(request, f"/visites/{visit_id}")
    return _solved_page(request, visit)


@router.post("/visites/{visit_id}/resolu")
async def solved(request: Request, visit_id: str, user: Writer, form: Form) -> Response:
    _adviser(user)
    if form.get("confirmation") != "oui":  # not confirmed (a misclick, a forged form): ask
        visit, _, _ = await _visit(request, user, visit_id)
        log.info("visit_close_asked", visit_id=visit_id, confirmed=False)
        return _solved_page(request, visit)
    await _visit(request, user, visit_id, viewed=False)  # 404 for other sites' visits
    try:
        async with transaction(request) as conn:
            await close_visit(conn, context(request), user.as_user(), visit_id, "solved_on_the_spot")
    except Conflict:
        visit, site, state = await _visit(request, user, visit_id)
        return render(request, "ui/visit.html.j2", 409, nav="aujourdhui", visit=visit, site=site, state=state,
                      refusal="Cette visite est déjà close.")
    log.info("visit_closed", visit_id=visit_id, resolution="solved_on_the_spot")
    return redirect(request, f"/visites/{visit_id}?resolu=1")


ADDITIONS = ("birth_date", "street", "postcode", "city", "email", "phone")


def _missing(catalogue: Catalogue, visit: Visit, operator: str, procedure: str) -> tuple[str, ...]:
    found = catalogue.procedure(operator, procedure)
    return missing_citizen_fields(found, visit.citizen) if found and visit.citizen else ()


def _choices(catalogue: Catalogue, served: frozenset[str], visit: Visit, values: Mapping[str, str]) -> dict[str, Any]:
    """The operators served at the visit's place, the chosen one's procedures, and, for
    refer.js, every served operator's procedures with what each needs that the visit lacks
    (the list replaced in place when the operator changes: no reload)."""
    operators = {code: op.name for code, op in sorted(catalogue.operators.items(), key=lambda i: i[1].name)
                 if code in served}
    menu = {code: [[p.code, p.label, needed_in_words(_missing(catalogue, visit, code, p.code))]
                   for p in sorted(catalogue.operators[code].procedures.values(), key=lambda p: p.label)]
            for code in operators}
    operator = values.get("operator", "")
    chosen = catalogue.operator(operator) if operator in operators else None
    procedures = {code: label for code, label, _ in menu[operator]} if chosen else {}
    missing = _missing(catalogue, visit, operator, values.get("procedure", "")) if chosen else ()
    return {"operators": operators, "procedures": procedures, "procedure_menu": json.dumps(menu, ensure_ascii=False),
            "deadline_days": chosen.deadline_days if chosen else None,
            "missing": missing, "missing_words": needed_in_words(missing) if missing else ""}


def _refer_page(request: Request, visit: Visit, site: Any, values: Mapping[str, str], step: str,
                errors: Mapping[str, str] | None = None, status_code: int = 200, **extra: Any) -> Response:
    catalogue = context(request).catalogue
    choices = _choices(catalogue, site.operators if site else frozenset(), visit, values)
    return render(request, REFER, 422 if errors else status_code, nav="aujourdhui", visit=visit, site=site,
                  values=values, errors=errors or {}, step=step, **choices, **extra)


@router.get("/visites/{visit_id}/orienter")
async def refer_page(request: Request, visit_id: str, user: AdviserUser, operateur: str = "") -> Response:
    visit, site, _ = await _visit(request, user, visit_id)
    served = site.operators if site else frozenset()
    operator = operateur if operateur in served else ""
    return _refer_page(request, visit, site, {"operator": operator}, "procedure" if operator else "operator")


@router.post("/visites/{visit_id}/orienter")
async def refer(request: Request, visit_id: str, user: Writer, form: Form) -> Response:
    _adviser(user)
    visit, site, _ = await _visit(request, user, visit_id)
    ctx = context(request)
    served = sorted(site.operators) if site else []
    values = {k: form.get(k, "") for k in ("operator", "procedure", "summary", "consent", *ADDITIONS)}
    step = form.get("etape", "operator")
    if step == "operator":  # the operator chosen (without JavaScript): show its procedures
        checked = check_referral({**values, "procedure": "-", "summary": "-"}, ctx.catalogue, served, final=False)
        errors = {k: v for k, v in checked.errors.items() if k == "operator"}
        return _refer_page(request, visit, site, values, "operator" if errors else "procedure", errors)
    if step == "procedure":  # back from the confirmation, to change something
        return _refer_page(request, visit, site, values, "procedure")
    final = step == "send"
    checked = check_referral(values, ctx.catalogue, served, final=final)
    missing = _missing(ctx.catalogue, visit, values["operator"], values["procedure"]) if final else ()
    added = check_additions(values, missing, now().astimezone(PARIS).date()) if final and missing else None
    errors = {**checked.errors, **(added.errors if added else {})}
    if errors:
        back = "procedure" if "operator" not in errors else "operator"
        if final and set(errors) <= {"consent", *ADDITIONS}:
            back = "confirm"
        return _refer_page(request, visit, site, values, back, errors,
                           **_deadline(ctx.catalogue, values.get("operator", "")))
    choice = checked.value
    if not final:  # show the deadline, and ask what the procedure needs, before sending
        return _refer_page(request, visit, site, values, "confirm", **_deadline(ctx.catalogue, choice.operator))
    try:
        async with transaction(request) as conn:
            if added is not None:  # what the operator needs, added to the visit in the same transaction
                await visits.complete_citizen(conn, ctx, user.as_user(), visit_id, **added.value)
            referral = await referrals.request_referral(conn, ctx, user.as_user(), visit_id, choice.operator,
                                                        choice.procedure, choice.summary, now())
            if await place_store.close_visit(conn, visit_id, "referred", now()):
                await ctx.publish(conn, "visits", "visit.closed", visit_id, {
                    "visit_id": visit_id, "site_id": visit.site_id, "adviser_id": visit.adviser_id,
                    "closed_at": now().isoformat(), "resolution": "referred"})
    except InvalidField as exc:
        if exc.field.startswith("citizen."):  # the visit changed meanwhile: ask again
            return _refer_page(request, visit, site, values, "confirm",
                               {"_form": "Cette démarche demande des informations qui manquent encore."},
                               **_deadline(ctx.catalogue, choice.operator))
        field = exc.field if exc.field in ("operator", "procedure") else "_form"
        return _refer_page(request, visit, site, values, "procedure",
                           {field: "Ce choix n'est pas possible pour ce lieu."})
    except (NotFound, NotAllowed):
        raise not_found(*VISIT_NOT_FOUND) from None
    if added is not None:
        log.info("visit_completed", visit_id=visit_id, fields=list(missing))
    log.info("referral_sent", referral_id=referral.referral_id)
    return redirect(request, f"/demandes/{referral.referral_id}")


def _deadline(catalogue: Catalogue, operator: str) -> dict[str, Any]:
    """The answer deadline if the referral were sent now, computed as routing does."""
    found = catalogue.operator(operator)
    return {"due_at": due_at(now(), found.deadline_days) if found else None}
