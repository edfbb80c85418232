"""The console's dead letters: the list (filters: topic, error, since; newest first),
one dead letter (headers, key, source position, reason, value with personal data
masked — shown only for a reason, audited first), and replaying one or a selection
(a confirmation page, a reason, audited), by the rules of `python -m relais_kit.dlq`:
only onto the dead-letter topic's own source topic, whatever a header says."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from aiokafka.errors import KafkaError
from fastapi import APIRouter, Request
from fastapi.responses import Response

from relais_kit import dlq, webui
from relais_kit.dlq import DeadLetter, DlqError
from relais_kit.envelope import TYPE_PREFIX
from relais_kit.logs import log
from relais_kit.topics import TopicsFile, load_topics
from relais_ops.adapters.dead_letter_broker import KafkaDeadLetters
from relais_ops.domain.masking import masked_value
from relais_ops.entrypoints.console.pages import OpsUser, checked_form, pool_of, render
from relais_ops.service_layer import dead_letters
from relais_ops.service_layer.audit import audit
from relais_ops.service_layer.audited import Audit, ReasonRequired
from relais_ops.service_layer.dead_letters import BadId, DeadLetterBroker, Plan, UnknownDeadLetter
from relais_ops.settings import OpsSettings

router = APIRouter()
LIST = "/console/lettres-mortes"
REPLAY = f"{LIST}/rejouer"
REASON_MAX = 500
REASON_NEEDED = "Indiquez le motif : il est conservé dans le journal des actions."
BROKER_AWAY = ("Courtier injoignable", "Le courtier de messages ne répond pas à la console. "
                                       "Réessayez dans quelques instants.")


def _settings(request: Request) -> OpsSettings:
    settings: OpsSettings = request.app.state.settings
    return settings


@lru_cache(maxsize=4)
def _topics_file(path: Path) -> TopicsFile:
    return load_topics(path)


def topics_of(request: Request) -> TopicsFile:
    return _topics_file(_settings(request).topics_file)


def broker_of(request: Request) -> DeadLetterBroker:
    """The broker's dead letters (a test may set `app.state.dead_letter_broker`)."""
    broker: DeadLetterBroker | None = getattr(request.app.state, "dead_letter_broker", None)
    return broker or KafkaDeadLetters(_settings(request).kafka_bootstrap_servers)


def audit_of(request: Request) -> Audit:
    pool = pool_of(request)

    async def write(user_id: str, action: str, target: str, reason: str, details: Mapping[str, Any]) -> None:
        await audit(pool, user_id, action, target, reason, details)

    return write


def _broker_away(exc: Exception) -> webui.PageProblem:
    log.warning("console_broker_away", error=type(exc).__name__)
    return webui.PageProblem(503, *BROKER_AWAY, {"Retry-After": "5"})


def _since(text: str) -> datetime | None:
    """A date (`2026-11-20`) or a date and time (`2026-11-20T10:00`), Paris time unless
    it says otherwise; ValueError when it is neither."""
    if not text.strip():
        return None
    moment = datetime.fromisoformat(text.strip())
    return moment if moment.tzinfo else moment.replace(tzinfo=webui.PARIS)


def seconds(value: datetime | None) -> str:
    """`20/11/2026 à 11:00:03` (Paris time)."""
    return "" if value is None else value.astimezone(webui.PARIS).strftime("%d/%m/%Y à %H:%M:%S")


def short_type(event_type: str) -> str:
    """`fr.franceservices.operator.answered.v1` → `operator.answered v1`."""
    name, _, major = event_type.removeprefix(TYPE_PREFIX).rpartition(".v")
    return f"{name} v{major}" if name and major.isdigit() else event_type


def summary(letter: DeadLetter) -> dict[str, Any]:
    """What the pages show of a dead letter besides its value: never its value."""
    reason = dlq.text_of(letter.reason.encode())
    return {
        "id": str(letter.id), "when": seconds(letter.when), "error": letter.error,
        "consumer": letter.header("dlq_consumer") or "", "source": letter.source,
        "source_topic": letter.id.topic.removesuffix(dlq.DLQ_SUFFIX),
        "type": letter.header("ce_type") or "", "short_type": short_type(letter.header("ce_type") or ""),
        "event_id": letter.header("ce_id") or "",
        "key": dlq.text_of(letter.key) if letter.key is not None else "",
        "reason": reason, "short_reason": dlq.truncate(reason),
        "headers": [(dlq.text_of(k.encode()), dlq.text_of(v)) for k, v in letter.headers],
        "recorded": seconds(datetime.fromtimestamp(letter.timestamp_ms / 1000, UTC))
        if letter.timestamp_ms is not None else "",
    }


@router.get(LIST, include_in_schema=False)
async def list_page(request: Request, ops: OpsUser, sujet: str = "", erreur: str = "", depuis: str = "",
                    nombre: str = "") -> Response:
    topics = topics_of(request)
    errors: dict[str, str] = {}
    try:
        since = _since(depuis)
    except ValueError:
        since, errors["depuis"] = None, "Indiquez une date (jj/mm/aaaa) ou une date et une heure."
    limit = dead_letters.limit_of(nombre)
    try:
        found = await dead_letters.listing(broker_of(request), topics, topic=sujet or None, error=erreur or None,
                                           since=since, limit=limit)
    except UnknownDeadLetter:
        errors["sujet"] = "Ce sujet n'est pas un sujet de lettres mortes."
        found = await dead_letters.listing(broker_of(request), topics, error=erreur or None, since=since,
                                           limit=limit)
    except (KafkaError, DlqError) as exc:
        raise _broker_away(exc) from exc
    return render(request, "dead_letters_list.html.j2", 422 if errors else 200, listing=found,
                  letters=[summary(d) for d in found.letters], errors=errors,
                  values={"sujet": sujet, "erreur": erreur, "depuis": depuis, "nombre": str(limit)})


async def _one(request: Request, letter_id: str) -> DeadLetter:
    try:
        return await dead_letters.one(broker_of(request), topics_of(request), letter_id)
    except BadId as exc:
        raise webui.PageProblem(400, "Identifiant invalide",
                                "Un identifiant de lettre morte s'écrit <sujet>.dlq:<partition>:<position>, "
                                f"par exemple referrals.dlq:0:12 ({exc}).") from exc
    except UnknownDeadLetter as exc:
        raise webui.PageProblem(404, "Lettre morte introuvable",
                                f"Aucune lettre morte ne porte l'identifiant {letter_id}.") from exc
    except KafkaError as exc:
        raise _broker_away(exc) from exc


def _show(request: Request, letter: DeadLetter, *, unmasked: bool = False, status_code: int = 200,
          errors: Mapping[str, str] | None = None, values: Mapping[str, str] | None = None) -> Response:
    value = dlq.render_value(letter.value) if unmasked else masked_value(letter.value)
    return render(request, "dead_letters_show.html.j2", status_code, letter=summary(letter), value=value,
                  unmasked=unmasked, errors=errors or {}, values=values or {}, reason_max=REASON_MAX)


@router.get(LIST + "/{letter_id}", include_in_schema=False)
async def show_page(request: Request, letter_id: str, ops: OpsUser) -> Response:
    return _show(request, await _one(request, letter_id))


@router.post(LIST + "/{letter_id}/afficher", include_in_schema=False)
async def unmask(request: Request, letter_id: str, ops: OpsUser) -> Response:
    """The personal data, shown in this answer only (never in a URL), once the reason
    is audited."""
    form = await checked_form(request)
    letter = await _one(request, letter_id)
    reason = form.get("motif", "")[:REASON_MAX]
    try:
        await dead_letters.unmask(audit_of(request), ops.user.user_id, letter, reason)
    except ReasonRequired:
        return _show(request, letter, status_code=422, errors={"motif": REASON_NEEDED})
    return _show(request, letter, unmasked=True)


def _replay_page(request: Request, chosen: Plan | None, status_code: int = 200, **context: Any) -> Response:
    planned = [{"letter": summary(p.letter), "to": p.replay.topic if p.replay else None, "refusal": p.refusal}
               for p in (chosen.planned if chosen else [])]
    context.setdefault("errors", {})
    context.setdefault("values", {})
    return render(request, "dead_letters_replay.html.j2", status_code, planned=planned,
                  allowed=bool(chosen and chosen.allowed), reason_max=REASON_MAX, **context)


@router.post(REPLAY, include_in_schema=False)
async def replay(request: Request, ops: OpsUser) -> Response:
    """First the confirmation page (what goes where, or what is refused), then, with
    `confirmer` and a reason, the replay."""
    form = await checked_form(request)
    ids = [i for i in (await request.form()).getlist("id") if isinstance(i, str)]
    broker, topics = broker_of(request), topics_of(request)
    try:
        chosen = await dead_letters.selection(broker, topics, ids)
    except BadId as exc:
        message = ("Choisissez au moins une lettre morte dans la liste." if not ids
                   else f"Cette sélection ne peut pas être rejouée : {exc}.")
        return _replay_page(request, None, 400, problem=message)
    except UnknownDeadLetter as exc:
        return _replay_page(request, None, 404, problem=f"Une lettre morte choisie est introuvable : {exc}.")
    except KafkaError as exc:
        raise _broker_away(exc) from exc
    if form.get("confirmer") != "1":
        return _replay_page(request, chosen, 200 if chosen.allowed else 409)
    if not chosen.allowed:
        return _replay_page(request, chosen, 409)
    reason = form.get("motif", "")[:REASON_MAX]
    try:
        done = await dead_letters.replay(broker, audit_of(request), ops.user.user_id, chosen, reason)
    except ReasonRequired:
        return _replay_page(request, chosen, 422, errors={"motif": REASON_NEEDED})
    except KafkaError as exc:
        raise _broker_away(exc) from exc
    return _replay_page(request, chosen, done=done)
