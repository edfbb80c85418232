"""The operator simulator: plays one or more operators' IT systems against Relais.

It reads `operator.<code>.inbox`, decrypts the personal data of each event with the
operator's private key (the demo keys of `deploy/demo/operator-keys` by default),
answers every `referral.routed` with `operator.acknowledged` then `operator.answered`
on `operator.<code>.outbox` — or, by the demo rule below, asks for information or
rejects it — and answers a `referral.info_provided`. It is the proof that an outsider can plug in with the
contract alone: it imports nothing from this repository's code, only third-party
libraries and the files in `schemas/` (plus its own `answers.yaml`).

    python simulator/operator_simulator.py [--operators caf,ants] [--outcome mixed]
    python -m simulator.operator_simulator

The demo rule (`course`), so that a demo shows the whole lifecycle: by a word of the
adviser's summary (whole words, case and accents ignored) the simulated operator
- rejects the referral (`operator.rejected`, reason `out_of_scope`, with an explanation)
  when the summary says « refus » or « hors champ »;
- otherwise asks for information (`operator.info_requested`: a question and the
  procedure's documents, from `answers.yaml`) when it says « pièce(s) » or
  « justificatif(s) », then answers (`--outcome`) once the adviser has provided it;
- otherwise answers (`--outcome`). It always acknowledges first.

Environment: `RELAIS_SIMULATED_OPERATORS` (comma-separated codes; unset = every
operator, empty = none: it then idles until stopped), `KAFKA_BOOTSTRAP_SERVERS`
(default 127.0.0.1:9092), and `RELAIS_SIMULATOR_OUTCOME`, `RELAIS_SIMULATOR_ACK_DELAY`,
`RELAIS_SIMULATOR_ANSWER_DELAY`, `RELAIS_SIMULATOR_GROUP_PREFIX`, `RELAIS_SIMULATOR_KEYS_DIR`,
`RELAIS_LOG_LEVEL`
as defaults for the options of the same name. Traces: the standard `OTEL_*` variables
(`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_TRACES_EXPORTER`); each reply carries the W3C
`traceparent` of its inbox record's context, so the referral's journey stays one trace.

Consumer groups: one consumer per simulated operator, in group `simulator.<code>`.
Each operator is a separate organisation in real life: its own group keeps its own
offsets, can be run in another process or host (`--operators caf` here,
`--operators ants` there) without the two stealing each other's partitions or
rebalancing each other, and matches per-operator ACLs on group names.

Delivery: at least once. Offsets are committed only up to the first record whose
handling (including a delayed answer) is not finished, so a crash replays it; the
replay produces the same `ce_id`s (uuid5 of referral id and event name) and the
platform drops the duplicates. Duplicate deliveries inside one run are skipped by
`ce_id`, except a `referral.routed` already answered: that one is answered again at once,
with the same ids (the platform asks again when it lost the answer with its broker:
docs/broker-loss.md). Logs are JSON lines with ids only: no citizen field, no message text and no
schema-error text (which could quote a value) is ever logged.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import hashlib
import json
import logging
import os
import signal
import sys
import unicodedata
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import structlog
import yaml
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError
from joserfc import jwe
from joserfc.errors import JoseError
from joserfc.jwk import ECKey
from jsonschema import Draft202012Validator
from jsonschema.validators import extend
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind

FORMAT_CHECKER = Draft202012Validator.FORMAT_CHECKER
HERE = Path(__file__).resolve().parent
DEFAULT_SCHEMAS = HERE.parent / "schemas"
# Demo key pairs only: a real operator keeps its private key to itself.
DEFAULT_KEYS = HERE.parent / "deploy" / "demo" / "operator-keys"
ANSWERS_FILE = HERE / "answers.yaml"

ALL_OPERATORS = ("la-poste", "caf", "france-travail", "cnam", "cnav", "msa", "dgfip", "ants",
                 "justice", "crous", "banque-de-france")
TYPE_PREFIX = "fr.franceservices."
INBOX_EVENTS = ("referral.routed", "referral.info_provided", "referral.cancelled", "referral.reminder")
# Inbox events whose personal data is sealed for the operator (JWE in `personal_data`).
SEALED_EVENTS = ("referral.routed", "referral.info_provided")
OUTCOMES = ("resolved", "appointment_offered", "documents_needed", "refused", "other")
MIXED_CYCLE = ("resolved", "appointment_offered", "documents_needed")
REPLIES = ("operator.acknowledged", "operator.info_requested", "operator.rejected", "operator.answered")
# The demo rule (see the module doc): words of the summary, without accents, lowercase.
REJECT_WORDS = ("refus", "hors champ")
ASK_WORDS = ("piece", "pieces", "justificatif", "justificatifs")
DEMO_RULE = ("Demo rule, by a word of the adviser's summary (whole words, case and accents ignored): "
             "« refus » or « hors champ » -> the referral is rejected (reason out_of_scope); "
             "« pièce(s) » or « justificatif(s) » -> a question asking for the procedure's documents, "
             "then the answer (--outcome) once the adviser has provided the information; "
             "anything else -> the answer (--outcome).")
REQUIRED_HEADERS = ("ce_specversion", "ce_id", "ce_source", "ce_type", "content-type")
PARIS = ZoneInfo("Europe/Paris")
# Namespace of the simulator's deterministic event ids.
ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://relais.franceservices.fr/operator-simulator")
STOP_GRACE_S = 2.0  # how long in-flight answers may finish after a stop signal
CLIENT_STOP_TIMEOUT_S = 3.0

log = structlog.get_logger()


def never_create_topics() -> None:
    """Metadata requests that do not create a missing topic: a broker that comes back
    empty would otherwise create our inbox (and outbox) with its own defaults (tansu: 4
    partitions) as soon as we ask for it, before Relais recreates it from its topics
    file. aiokafka has no setting for it: its request is built with the flag set."""
    import aiokafka.client
    from aiokafka.protocol.metadata import MetadataRequest

    aiokafka.client.MetadataRequest = functools.partial(  # type: ignore[misc]
        MetadataRequest, allow_auto_topic_creation=False)
T = TypeVar("T")


# ---------------------------------------------------------------- the contract


def _tolerant_additional(validator: Any, additional: Any, instance: Any, schema: Any) -> Any:
    """`additionalProperties: false` does not fail on read: unknown fields are tolerated
    (a newer platform may send more). Any other `additionalProperties` still applies."""
    if additional is False:
        return
    strict = Draft202012Validator.VALIDATORS["additionalProperties"]
    yield from strict(validator, additional, instance, schema)


TolerantValidator = extend(Draft202012Validator, validators={"additionalProperties": _tolerant_additional})


class Contract:
    """The JSON Schemas of `schemas/events/`, keyed by CloudEvents type."""

    def __init__(self, schemas_dir: Path) -> None:
        events = schemas_dir / "events"
        self.schemas: dict[str, dict[str, Any]] = {}
        self._read: dict[str, Any] = {}
        self._write: dict[str, Any] = {}
        for path in sorted(events.glob("*.v*.json")):
            stem = path.name.removesuffix(".json")  # referral.routed.v1
            schema = json.loads(path.read_text(encoding="utf-8"))
            Draft202012Validator.check_schema(schema)
            ce_type = TYPE_PREFIX + stem
            self.schemas[ce_type] = schema
            self._read[ce_type] = TolerantValidator(schema, format_checker=FORMAT_CHECKER)
            self._write[ce_type] = Draft202012Validator(schema, format_checker=FORMAT_CHECKER)
        # The plaintext of `personal_data` (decrypted with the operator's private key).
        self._personal: dict[str, Any] = {
            path.name.removesuffix(".v1.json"): TolerantValidator(
                json.loads(path.read_text(encoding="utf-8")), format_checker=FORMAT_CHECKER)
            for path in sorted((schemas_dir / "personal").glob("*.v1.json"))}
        missing = [n for n in (*INBOX_EVENTS, *REPLIES)
                   if event_type(n) not in self.schemas]
        if missing:
            raise FileNotFoundError(f"no schema in {events} for: {', '.join(missing)}")

    def knows(self, ce_type: str) -> bool:
        return ce_type in self.schemas

    def read_errors(self, ce_type: str, data: Any) -> list[dict[str, str]]:
        return _error_summary(self._read[ce_type].iter_errors(data))

    def personal_errors(self, name: str, plaintext: Any) -> list[dict[str, str]]:
        return _error_summary(self._personal[name].iter_errors(plaintext))

    def write_errors(self, ce_type: str, data: Any) -> list[dict[str, str]]:
        return _error_summary(self._write[ce_type].iter_errors(data))

    def unknown_fields(self, ce_type: str, data: dict[str, Any]) -> list[str]:
        known = self.schemas[ce_type].get("properties", {})
        return sorted(k for k in data if k not in known)

    def schema_id(self, ce_type: str) -> str | None:
        return self.schemas[ce_type].get("$id")


def _error_summary(errors: Iterable[Any]) -> list[dict[str, str]]:
    """Where and which rule, never the message: it may quote a personal value."""
    return [{"path": e.json_path, "keyword": str(e.validator)} for e in list(errors)[:10]]


def event_type(name: str, major: int = 1) -> str:
    return f"{TYPE_PREFIX}{name}.v{major}"


def event_name(ce_type: str) -> str:
    return ce_type.removeprefix(TYPE_PREFIX).rsplit(".v", 1)[0]


# ---------------------------------------------------------------- answers


FR_WEEKDAYS = ("lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche")
FR_MONTHS = ("janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août", "septembre",
             "octobre", "novembre", "décembre")


def easter(year: int) -> date:
    """Gregorian Easter Sunday (anonymous Gregorian algorithm)."""
    a, b, c = year % 19, year // 100, year % 100
    d, e = divmod(b, 4)
    g = (8 * b + 13) // 25
    h = (19 * a + b - d - g + 15) % 30
    i, k = divmod(c, 4)
    ell = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 22 * ell) // 451
    month, day = divmod(h + ell - 7 * m + 114, 31)
    return date(year, month, day + 1)


def french_holidays(year: int) -> set[date]:
    sunday = easter(year)
    return {date(year, 1, 1), sunday + timedelta(days=1), date(year, 5, 1), date(year, 5, 8),
            sunday + timedelta(days=39), sunday + timedelta(days=50), date(year, 7, 14),
            date(year, 8, 15), date(year, 11, 1), date(year, 11, 11), date(year, 12, 25)}


def is_working_day(day: date) -> bool:
    return day.weekday() < 5 and day not in french_holidays(day.year)


def appointment_time(today: date) -> datetime:
    """Three days from today, moved on to the next working day, at 10:00 in Paris."""
    day = today + timedelta(days=3)
    while not is_working_day(day):
        day += timedelta(days=1)
    return datetime.combine(day, time(10, 0), tzinfo=PARIS)


def french_date(moment: datetime) -> str:
    return f"{FR_WEEKDAYS[moment.weekday()]} {moment.day} {FR_MONTHS[moment.month - 1]} {moment.year}"


def de(place: str) -> str:
    """French elision: `de Paris`, `d'Agen`."""
    return f"d'{place}" if place[:1].lower() in "aeiouyhâéèêîôû" else f"de {place}"


def lower_first(text: str) -> str:
    return text[:1].lower() + text[1:] if text[1:2].islower() else text


def paris_now() -> datetime:
    return datetime.now(PARIS).replace(microsecond=0)


def choose_outcome(setting: str, referral_id: str) -> str:
    if setting != "mixed":
        return setting
    digest = hashlib.sha256(referral_id.encode()).digest()
    return MIXED_CYCLE[int.from_bytes(digest[:8], "big") % len(MIXED_CYCLE)]


def _plain_words(text: str) -> str:
    """Lowercase, accents removed, every run of non-letters one space, padded with spaces."""
    bare = "".join(c for c in unicodedata.normalize("NFKD", text.lower()) if not unicodedata.combining(c))
    return " " + " ".join("".join(c if c.isalnum() else " " for c in bare).split()) + " "


def course(summary: str | None) -> str:
    """What the simulated operator does with a routed referral, by the demo rule:
    `reject`, `ask` (for information, then answer) or `answer`. Pure."""
    words = _plain_words(summary or "")
    if any(f" {w} " in words for w in REJECT_WORDS):
        return "reject"
    if any(f" {w} " in words for w in ASK_WORDS):
        return "ask"
    return "answer"


class Answers:
    """What each simulated operator says, from `answers.yaml`."""

    def __init__(self, path: Path = ANSWERS_FILE) -> None:
        self.operators: dict[str, dict[str, Any]] = yaml.safe_load(path.read_text(encoding="utf-8"))
        missing = [code for code in ALL_OPERATORS if code not in self.operators]
        if missing:
            raise ValueError(f"{path} has no texts for: {', '.join(missing)}")

    def _texts(self, operator: str, procedure: str) -> tuple[dict[str, Any], dict[str, Any]]:
        op = self.operators[operator]
        return op, op.get("procedures", {}).get(procedure) or op["default"]

    def case_reference(self, operator: str, referral_id: str) -> str:
        prefix = self.operators[operator]["case_prefix"]
        return f"{prefix}-{paris_now().year}-{referral_id.replace('-', '')[:8].upper()}"

    def acknowledged(self, referral: Referral) -> dict[str, Any]:
        return {
            "referral_id": referral.referral_id,
            "acknowledged_at": paris_now().isoformat(),
            "case_reference": self.case_reference(referral.operator, referral.referral_id),
            "expert": self.operators[referral.operator]["expert"],
        }

    def info_requested(self, referral: Referral) -> dict[str, Any]:
        _, texts = self._texts(referral.operator, referral.procedure)
        return {"referral_id": referral.referral_id, "requested_at": paris_now().isoformat(),
                "question": "Pour examiner la demande, pouvez-vous nous transmettre les pièces ci-dessous, "
                            "ou nous dire quand la personne pourra les fournir ?",
                "documents": list(texts["documents"])}

    def rejected(self, referral: Referral) -> dict[str, Any]:
        op = self.operators[referral.operator]
        return {"referral_id": referral.referral_id, "rejected_at": paris_now().isoformat(),
                "reason_code": "out_of_scope",
                "reason": f"La demande sort du champ de la démarche choisie : le service {op['of']} ne peut "
                          "pas la traiter en l'état. Vous pouvez la réorienter."}

    def answered(self, referral: Referral, outcome: str) -> dict[str, Any]:
        op, texts = self._texts(referral.operator, referral.procedure)
        case = self.case_reference(referral.operator, referral.referral_id)
        subject: str = texts["subject"]
        data: dict[str, Any] = {"referral_id": referral.referral_id, "answered_at": paris_now().isoformat(),
                                "outcome": outcome}
        if outcome == "resolved":
            citizen = texts["resolved"]
            adviser = f"Dossier {case} traité : {texts['note']} La réponse a été adressée à la personne."
        elif outcome == "appointment_offered":
            at = appointment_time(paris_now().date())
            where = f"{op['agency']} {de(referral.city)}" if referral.city else op["agency"]
            place = f"{where}, accueil sur rendez-vous"
            citizen = (f"Bonjour, un conseiller {op['of']} vous recevra le {french_date(at)} à 10 h 00 "
                       f"({place}) pour examiner {subject}. Pensez à apporter une pièce d'identité "
                       "et les justificatifs liés à votre demande.")
            adviser = f"Rendez-vous fixé le {french_date(at)} à 10 h 00, {place}. Dossier {case}."
            data["appointment"] = {"at": at.isoformat(), "place": place}
        elif outcome == "documents_needed":
            documents: list[str] = list(texts["documents"])
            listed = " ; ".join(lower_first(d) for d in documents)
            citizen = (f"Pour traiter {subject}, il nous manque les pièces suivantes : {listed}. "
                       f"Vous pouvez les transmettre {op['deposit']}.")
            adviser = (f"{len(documents)} pièce(s) manquante(s) demandée(s) à la personne, à transmettre "
                       f"{op['deposit']}. Dossier {case}.")
            data["documents"] = documents
        elif outcome == "refused":
            citizen = (f"Après examen, {subject} ne peut pas aboutir en l'état : les conditions ne sont "
                       "pas remplies. Un courrier motivé vous est adressé ; vous disposez de deux mois "
                       "pour contester cette décision.")
            adviser = f"Demande non recevable en l'état, courrier motivé envoyé. Dossier {case}."
        else:
            citizen = (f"Votre demande a été transmise au service compétent {op['of']}, qui reviendra "
                       "vers vous directement.")
            adviser = f"Demande transmise au service compétent {op['of']}. Dossier {case}."
        data["message_to_citizen"] = citizen
        data["message_to_adviser"] = adviser
        return data


# ---------------------------------------------------------------- bookkeeping


class BoundedSet:
    """A set that forgets its oldest members past `size`: memory stays flat."""

    def __init__(self, size: int = 100_000) -> None:
        self._items: OrderedDict[str, None] = OrderedDict()
        self._size = size

    def __contains__(self, item: object) -> bool:
        return item in self._items

    def add(self, item: str) -> None:
        self._items[item] = None
        self._items.move_to_end(item)
        while len(self._items) > self._size:
            self._items.popitem(last=False)


class Progress:
    """Offsets read and not yet fully handled, per partition. The committable position
    never passes an unfinished record, so a crash replays it."""

    def __init__(self) -> None:
        self._pending: dict[TopicPartition, set[int]] = {}
        self._next: dict[TopicPartition, int] = {}
        self._committed: dict[TopicPartition, int] = {}

    def begin(self, tp: TopicPartition, offset: int) -> None:
        self._pending.setdefault(tp, set()).add(offset)
        self._next[tp] = max(self._next.get(tp, 0), offset + 1)

    def finish(self, tp: TopicPartition, offset: int) -> None:
        self._pending.get(tp, set()).discard(offset)

    def committable(self, only: Iterable[TopicPartition] | None = None) -> dict[TopicPartition, int]:
        wanted = set(only) if only is not None else set(self._next)
        offsets = {}
        for tp in wanted & set(self._next):
            pending = self._pending.get(tp)
            position = min(pending) if pending else self._next[tp]
            if position != self._committed.get(tp):
                offsets[tp] = position
        return offsets

    def committed(self, offsets: dict[TopicPartition, int]) -> None:
        self._committed.update(offsets)

    def forget(self, tps: Iterable[TopicPartition]) -> None:
        for tp in tps:
            self._pending.pop(tp, None)
            self._next.pop(tp, None)
            self._committed.pop(tp, None)


@dataclass
class Referral:
    """What the simulator keeps of a routed referral: ids, procedure, the site's town.
    No citizen data is kept."""

    referral_id: str
    operator: str
    procedure: str
    city: str | None
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)
    acknowledged: bool = False
    again: bool = False  # answered before: answer again without the delays
    course: str = "answer"  # the demo rule's choice: answer, ask or reject
    acknowledge: bool = True  # False when answering the information provided

    async def cancelled_within(self, seconds: float) -> bool:
        """Waits `seconds` (or less, if cancelled meanwhile); True if cancelled."""
        if self.cancelled.is_set() or seconds <= 0:
            return self.cancelled.is_set()
        try:
            await asyncio.wait_for(self.cancelled.wait(), seconds)
        except TimeoutError:
            return False
        return True


class Skip(Exception):
    """A record the simulator does not act on; logged as `event` with `fields`."""

    def __init__(self, event: str, level: str = "warning", **fields: Any) -> None:
        super().__init__(event)
        self.event = event
        self.level = level
        self.fields = fields


class InvalidOutput(Exception):
    """What the simulator built does not match the contract (a bug in the simulator)."""


# ---------------------------------------------------------------- settings


@dataclass(frozen=True)
class Settings:
    operators: tuple[str, ...]
    bootstrap: str
    schemas: Path
    ack_delay: float
    answer_delay: float
    outcome: str
    group_prefix: str
    log_level: str
    keys: Path
    kafka: dict[str, Any] = field(default_factory=dict)  # security options (kafka_security)


def kafka_security(env: dict[str, str] | os._Environ[str]) -> dict[str, Any]:
    """The aiokafka connection options from the variables every Relais client reads:
    KAFKA_SECURITY_PROTOCOL (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL), KAFKA_SASL_MECHANISM
    (SCRAM-SHA-512 by default), KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD (or
    KAFKA_SASL_PASSWORD_FILE), KAFKA_SSL_CA_FILE, KAFKA_SSL_CERT_FILE, KAFKA_SSL_KEY_FILE."""
    protocol = (env.get("KAFKA_SECURITY_PROTOCOL") or "PLAINTEXT").upper()
    if protocol not in ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"):
        raise ValueError(f"KAFKA_SECURITY_PROTOCOL: unknown protocol {protocol!r}")
    options: dict[str, Any] = {"security_protocol": protocol}
    if protocol.endswith("SSL"):
        import ssl

        context = ssl.create_default_context(cafile=env.get("KAFKA_SSL_CA_FILE") or None)
        if env.get("KAFKA_SSL_CERT_FILE"):
            context.load_cert_chain(env["KAFKA_SSL_CERT_FILE"], env.get("KAFKA_SSL_KEY_FILE") or None)
        options["ssl_context"] = context
    if protocol.startswith("SASL_"):
        password = env.get("KAFKA_SASL_PASSWORD")
        if not password and env.get("KAFKA_SASL_PASSWORD_FILE"):
            password = Path(env["KAFKA_SASL_PASSWORD_FILE"]).read_text(encoding="utf-8").strip()
        if not env.get("KAFKA_SASL_USERNAME") or not password:
            raise ValueError(f"KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD are required with {protocol}")
        options.update(sasl_mechanism=(env.get("KAFKA_SASL_MECHANISM") or "SCRAM-SHA-512").upper(),
                       sasl_plain_username=env["KAFKA_SASL_USERNAME"], sasl_plain_password=password)
    return options


def parse_operators(text: str | None) -> tuple[str, ...]:
    if text is None:
        return ALL_OPERATORS
    codes: list[str] = []
    for raw in text.split(","):
        code = raw.strip().lower()
        if not code or code in codes:
            continue
        if code not in ALL_OPERATORS:
            raise ValueError(f"unknown operator code {code!r}; known: {', '.join(ALL_OPERATORS)}")
        codes.append(code)
    return tuple(codes)


def parse_settings(argv: list[str] | None = None) -> Settings:
    env = os.environ
    parser = argparse.ArgumentParser(
        prog="operator_simulator", description="Plays operators' IT systems against Relais, "
        "using only the contract in schemas/.", epilog=DEMO_RULE)
    parser.add_argument("--operators", default=None,
                        help="comma-separated operator codes (overrides RELAIS_SIMULATED_OPERATORS; "
                             "unset = all, empty = none)")
    parser.add_argument("--bootstrap-servers", default=env.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"))
    parser.add_argument("--schemas", type=Path, default=DEFAULT_SCHEMAS, help="the contract's folder")
    parser.add_argument("--ack-delay", type=float, default=float(env.get("RELAIS_SIMULATOR_ACK_DELAY", "0")),
                        help="seconds before acknowledging a routed referral (default 0)")
    parser.add_argument("--answer-delay", type=float,
                        default=float(env.get("RELAIS_SIMULATOR_ANSWER_DELAY", "0.2")),
                        help="seconds between acknowledging and answering (default 0.2)")
    parser.add_argument("--outcome", choices=(*OUTCOMES, "mixed"),
                        default=env.get("RELAIS_SIMULATOR_OUTCOME", "resolved"),
                        help="answer outcome; `mixed` cycles resolved / appointment_offered / "
                             "documents_needed by referral id")
    parser.add_argument("--group-prefix", default=env.get("RELAIS_SIMULATOR_GROUP_PREFIX", "simulator"),
                        help="consumer group of operator <code> is <prefix>.<code> (default simulator)")
    parser.add_argument("--keys", type=Path, default=Path(env.get("RELAIS_SIMULATOR_KEYS_DIR", DEFAULT_KEYS)),
                        help="folder of the operators' private keys, <code>.private.jwk.json "
                             "(default: the demo keys)")
    parser.add_argument("--log-level", default=env.get("RELAIS_LOG_LEVEL", "info"))
    args = parser.parse_args(argv)
    raw_operators = args.operators if args.operators is not None else env.get("RELAIS_SIMULATED_OPERATORS")
    try:
        operators = parse_operators(raw_operators)
    except ValueError as exc:
        parser.error(str(exc))
    if args.ack_delay < 0 or args.answer_delay < 0:
        parser.error("delays must be >= 0")
    try:
        security = kafka_security(env)
    except (ValueError, OSError) as exc:
        parser.error(str(exc))
    return Settings(operators=operators, bootstrap=args.bootstrap_servers, schemas=args.schemas,
                    ack_delay=args.ack_delay, answer_delay=args.answer_delay, outcome=args.outcome,
                    group_prefix=args.group_prefix, log_level=args.log_level,
                    keys=args.keys, kafka=security)


def configure_tracing(env: dict[str, str] | os._Environ[str]) -> bool:
    """Traces, when the standard OpenTelemetry variables ask for them (an OTLP endpoint, or
    OTEL_TRACES_EXPORTER=otlp|console): the platform propagates W3C Trace Context in the
    `traceparent` record header, and a reply sent with the context of the inbox record it
    answers joins the referral's trace."""
    asked = [n.strip() for n in env.get("OTEL_TRACES_EXPORTER", "").lower().split(",") if n.strip()]
    if not asked and (env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")):
        asked = ["otlp"]
    if env.get("OTEL_SDK_DISABLED", "").lower() == "true" or not asked or "none" in asked:
        return False
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    provider = TracerProvider(resource=Resource.create({"service.name": "operator-simulator"}))
    for name in asked:
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter() if name == "otlp" else ConsoleSpanExporter()))
    trace.set_tracer_provider(provider)
    return True


def add_trace_ids(_: Any, __: str, event_dict: Any) -> Any:
    """The trace and span ids of the current span on every log line."""
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event_dict["trace_id"] = trace.format_trace_id(context.trace_id)
        event_dict["span_id"] = trace.format_span_id(context.span_id)
    return event_dict


def configure_logging(level: str) -> None:
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        numeric = logging.INFO
    # The Kafka client's own log lines come out as JSON lines too.
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        processor=structlog.processors.JSONRenderer(ensure_ascii=False),
        foreign_pre_chain=[structlog.stdlib.add_logger_name, structlog.processors.add_log_level,
                           structlog.processors.TimeStamper(fmt="iso", utc=True)]))
    logging.basicConfig(handlers=[handler], level=numeric, force=True)
    logging.getLogger("aiokafka").setLevel(max(numeric, logging.WARNING))
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            add_trace_ids,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(ensure_ascii=False),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(sys.stdout),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(service="operator-simulator")


# ---------------------------------------------------------------- the simulator


class Inbox:
    """One simulated operator's consumer of `operator.<code>.inbox`."""

    def __init__(self, code: str, consumer: AIOKafkaConsumer) -> None:
        self.code = code
        self.topic = f"operator.{code}.inbox"
        self.consumer = consumer
        self.progress = Progress()

    async def commit(self, only: Iterable[TopicPartition] | None = None) -> None:
        assigned = self.consumer.assignment()
        offsets = {tp: o for tp, o in self.progress.committable(only).items() if tp in assigned}
        if not offsets:
            return
        try:
            await self.consumer.commit(offsets)
        except KafkaError as exc:  # partition moved: its new owner replays, ids are deterministic
            log.warning("commit_failed", operator=self.code, error=repr(exc))
            return
        self.progress.committed(offsets)


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, inbox: Inbox) -> None:
        self.inbox = inbox

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        # No commit here: when the broker was lost, the member is reset before this is
        # called and a commit would carry offsets of the old broker into the new one
        # (skipping what is re-published there). The next owner replays what was not
        # committed yet: answered again with the same ids, dropped by the platform.
        self.inbox.progress.forget(list(revoked))

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        # Positions start again from what the group says: after the broker was lost,
        # offsets remembered from the old one must not be committed on the new one.
        assigned = list(assigned)
        self.inbox.progress.forget(assigned)
        log.info("partitions_assigned", operator=self.inbox.code,
                 partitions=sorted(tp.partition for tp in assigned))


class Simulator:
    def __init__(self, settings: Settings, contract: Contract, answers: Answers,
                 keys: dict[str, ECKey]) -> None:
        self.settings = settings
        self.keys = keys
        self.contract = contract
        self.answers = answers
        self.seen = BoundedSet()
        self.cancelled = BoundedSet()
        self.handled = BoundedSet()  # referrals answered (or given up on)
        self.in_flight: dict[str, Referral] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.producer: AIOKafkaProducer | None = None
        self.inboxes: list[Inbox] = []

    # -- lifecycle

    async def run(self, stop: asyncio.Event) -> None:
        s = self.settings
        self.producer = await start_client(
            lambda: AIOKafkaProducer(bootstrap_servers=s.bootstrap, **s.kafka, acks="all", enable_idempotence=False,
                                     linger_ms=2, request_timeout_ms=30000, retry_backoff_ms=200,
                                     client_id="relais-operator-simulator"),
            "producer", stop)
        if self.producer is None:
            return
        for code in s.operators:
            consumer = await start_client(functools.partial(self._consumer, code), f"consumer:{code}", stop)
            if consumer is None:
                break
            self.inboxes.append(Inbox(code, consumer))
        loops = []
        if not stop.is_set():
            for inbox in self.inboxes:
                inbox.consumer.subscribe([inbox.topic], listener=_Rebalance(inbox))
            loops = [asyncio.create_task(self._consume(inbox, stop), name=f"consume:{inbox.code}")
                     for inbox in self.inboxes]
            log.info("simulator_ready", operators=list(s.operators), outcome=s.outcome,
                     groups=[self.group(i.code) for i in self.inboxes])
            await stop.wait()
        await self._shutdown(loops)

    def group(self, code: str) -> str:
        return f"{self.settings.group_prefix}.{code}"

    def _consumer(self, code: str) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            bootstrap_servers=self.settings.bootstrap, **self.settings.kafka, group_id=self.group(code),
            client_id=f"relais-operator-simulator-{code}", enable_auto_commit=False,
            auto_offset_reset="earliest", session_timeout_ms=10000, heartbeat_interval_ms=1000,
            rebalance_timeout_ms=10000, max_poll_interval_ms=300000,
            # The embedded broker holds a fetch this long even when records arrive.
            fetch_max_wait_ms=25)

    async def _shutdown(self, loops: list[asyncio.Task[None]]) -> None:
        log.info("simulator_stopping", in_flight=len(self.tasks))
        if loops:
            await asyncio.wait(loops, timeout=2.0)
            for task in loops:
                task.cancel()
        if self.tasks:
            _, pending = await asyncio.wait(set(self.tasks), timeout=STOP_GRACE_S)
            for task in pending:  # not committed: replayed on restart, with the same ids
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=1.0)
                log.info("answers_abandoned", count=len(pending))
        for inbox in self.inboxes:
            await _bounded(inbox.commit(), 1.5, "final_commit")
        clients: list[Awaitable[Any]] = [_bounded(i.consumer.stop(), CLIENT_STOP_TIMEOUT_S, "consumer_stop")
                                         for i in self.inboxes]
        if self.producer is not None:
            clients.append(_bounded(self.producer.stop(), CLIENT_STOP_TIMEOUT_S, "producer_stop"))
        await asyncio.gather(*clients)
        log.info("simulator_stopped")

    # -- reading

    async def _consume(self, inbox: Inbox, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                batches = await inbox.consumer.getmany(timeout_ms=500, max_records=200)
            except KafkaError as exc:
                log.warning("fetch_failed", operator=inbox.code, error=repr(exc))
                await asyncio.sleep(1.0)
                continue
            for tp, records in batches.items():
                for record in records:
                    inbox.progress.begin(tp, record.offset)
                    task = self.handle(inbox.code, record)
                    if task is None:
                        inbox.progress.finish(tp, record.offset)
                    else:
                        task.add_done_callback(functools.partial(self._answer_done, inbox, tp, record.offset))
            await inbox.commit()

    def handle(self, code: str, record: Any) -> asyncio.Task[None] | None:
        """Handles one inbox record; returns the task answering it, if any. Never raises."""
        key = record.key.decode("utf-8", "replace") if record.key else None
        structlog.contextvars.bind_contextvars(operator=code, referral_id=key, event_id=None, event_type=None,
                                               partition=record.partition, offset=record.offset)
        # Handled in a `process <topic>` span, child of the record's `traceparent`: the
        # answer task started here inherits it, so the replies join the referral's trace.
        with TRACER.start_as_current_span(
                f"process {record.topic}", context=record_trace_context(record.headers), kind=SpanKind.CONSUMER,
                attributes={**messaging_attributes("process", record.topic),
                            "messaging.consumer.group.name": self.group(code),
                            "messaging.destination.partition.id": str(record.partition),
                            "messaging.kafka.offset": record.offset,
                            **({"messaging.kafka.message.key": key} if key else {})},
                record_exception=False) as span:
            try:
                return self._handle(code, record)
            except Skip as skip:
                getattr(log, skip.level)(skip.event, **skip.fields)
            except Exception as exc:  # a record must never stop the simulator
                log.error("record_failed", error=type(exc).__name__)
                span.set_status(trace.Status(trace.StatusCode.ERROR, type(exc).__name__))
        return None

    def _handle(self, code: str, record: Any) -> asyncio.Task[None] | None:
        headers = read_headers(record.headers)
        ce_id, ce_type = headers["ce_id"], headers["ce_type"]
        structlog.contextvars.bind_contextvars(event_id=ce_id, event_type=ce_type)
        if not self.contract.knows(ce_type):
            raise Skip("unknown_event_type_skipped")
        name = event_name(ce_type)
        if name not in INBOX_EVENTS:
            raise Skip("unexpected_event_type_skipped")
        # A routed referral delivered again is answered again (the platform may have lost
        # the answer with its broker: docs/broker-loss.md); any other repeat is skipped.
        if ce_id in self.seen and name != "referral.routed":
            raise Skip("duplicate_skipped", level="info")
        data = read_json(record.value)
        referral_id = data.get("referral_id")
        if isinstance(referral_id, str):
            structlog.contextvars.bind_contextvars(referral_id=referral_id)
        errors = self.contract.read_errors(ce_type, data)
        if errors:
            raise Skip("invalid_event_skipped", errors=errors)
        unknown = self.contract.unknown_fields(ce_type, data)
        if unknown:
            log.info("unknown_fields_tolerated", fields=unknown)
        if data["operator"] != code:
            raise Skip("wrong_operator_skipped", event_operator=data["operator"])
        personal = self._open_personal_data(code, name, data) if name in SEALED_EVENTS else {}
        self.seen.add(ce_id)
        if name == "referral.routed":
            return self._on_routed(code, data, course(personal.get("summary")))
        if name == "referral.info_provided":
            return self._on_info_provided(code, data)
        if name == "referral.cancelled":
            self._on_cancelled(data)
        else:
            log.info("reminder_received", due_at=data["due_at"], overdue_since=data["overdue_since"])
        return None

    def _open_personal_data(self, code: str, name: str, data: dict[str, Any]) -> dict[str, Any]:
        """Decrypts `personal_data` with the operator's private key, as a real operator
        does, and checks it; the plaintext is never logged."""
        try:
            opened = jwe.decrypt_compact(data["personal_data"], self.keys[code], algorithms=["ECDH-ES", "A256GCM"])
            plaintext = json.loads(opened.plaintext or b"")
        except (JoseError, ValueError) as exc:
            raise Skip("personal_data_unreadable_skipped", error=type(exc).__name__) from exc
        if not isinstance(plaintext, dict) or plaintext.get("referral_id") != data["referral_id"]:
            raise Skip("personal_data_of_another_referral_skipped")
        errors = self.contract.personal_errors(name, plaintext)
        if errors:
            raise Skip("personal_data_invalid_skipped", errors=errors)
        return plaintext

    def _on_routed(self, code: str, data: dict[str, Any], chosen: str) -> asyncio.Task[None] | None:
        referral_id: str = data["referral_id"]
        if referral_id in self.in_flight:
            raise Skip("referral_already_in_hand", level="info")
        if referral_id in self.cancelled:
            raise Skip("routed_after_cancel_skipped", level="info")
        site = data.get("site") or {}
        again = referral_id in self.handled
        referral = Referral(referral_id, code, data["procedure"], site.get("city"), again=again, course=chosen)
        # Asked again: the same answers, with the same ids, at once (duplicates are dropped).
        log.info("routed_again_answering_again" if again else "routed_received", procedure=referral.procedure,
                 due_at=data["due_at"], course=chosen)
        return self._start(referral)

    def _on_info_provided(self, code: str, data: dict[str, Any]) -> asyncio.Task[None] | None:
        """The adviser provided what the operator asked: the operator answers now."""
        referral_id: str = data["referral_id"]
        if referral_id in self.cancelled or referral_id in self.in_flight:
            log.info("info_provided_received", answer="withheld" if referral_id in self.cancelled else "in_hand")
            return None
        log.info("info_provided_received", answer="answering")
        return self._start(Referral(referral_id, code, data.get("procedure") or "", None, acknowledged=True,
                                    acknowledge=False))

    def _start(self, referral: Referral) -> asyncio.Task[None]:
        referral_id = referral.referral_id
        self.in_flight[referral_id] = referral
        task = asyncio.create_task(self._answer(referral), name=f"answer:{referral.operator}:{referral_id}")
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    def _on_cancelled(self, data: dict[str, Any]) -> None:
        referral_id: str = data["referral_id"]
        self.cancelled.add(referral_id)
        referral = self.in_flight.get(referral_id)
        if referral is not None:
            referral.cancelled.set()
            log.info("cancelled_received", answer="withheld")
        elif referral_id in self.handled:
            log.info("cancelled_received", answer="already_sent")
        else:
            log.info("cancelled_received", answer="none_pending")

    # -- answering

    async def _answer(self, referral: Referral) -> None:
        try:
            ack_delay, answer_delay = (0.0, 0.0) if referral.again else (self.settings.ack_delay,
                                                                          self.settings.answer_delay)
            if referral.acknowledge:
                if await referral.cancelled_within(ack_delay):
                    log.info("not_acknowledged_cancelled")
                    return
                await self._send(referral, "operator.acknowledged", self.answers.acknowledged(referral))
                referral.acknowledged = True
            if await referral.cancelled_within(answer_delay):
                log.info("not_answered_cancelled")
                return
            if referral.course == "reject":
                await self._send(referral, "operator.rejected", self.answers.rejected(referral))
            elif referral.course == "ask":
                await self._send(referral, "operator.info_requested", self.answers.info_requested(referral))
            else:
                outcome = choose_outcome(self.settings.outcome, referral.referral_id)
                await self._send(referral, "operator.answered", self.answers.answered(referral, outcome))
        finally:
            self.in_flight.pop(referral.referral_id, None)
        self.handled.add(referral.referral_id)

    def _answer_done(self, inbox: Inbox, tp: TopicPartition, offset: int, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return  # stopped before the end: not committed, replayed on restart
        exc = task.exception()
        if exc is not None:
            log.error("answer_failed", operator=inbox.code, partition=tp.partition, offset=offset,
                      error=type(exc).__name__)
        inbox.progress.finish(tp, offset)

    async def _send(self, referral: Referral, name: str, data: dict[str, Any]) -> None:
        ce_type = event_type(name)
        errors = self.contract.write_errors(ce_type, data)
        if errors:
            log.error("invalid_output_not_sent", produced_type=ce_type, errors=errors)
            raise InvalidOutput(name)
        event_id = deterministic_id(referral.referral_id, name)
        headers = [
            ("ce_specversion", b"1.0"),
            ("ce_id", event_id.encode()),
            ("ce_source", f"/operators/{referral.operator}".encode()),
            ("ce_type", ce_type.encode()),
            ("ce_time", datetime.now(UTC).isoformat(timespec="milliseconds").encode()),
            ("ce_subject", referral.referral_id.encode()),
            ("content-type", b"application/json"),
        ]
        if schema_id := self.contract.schema_id(ce_type):
            headers.append(("ce_dataschema", schema_id.encode()))
        value = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()
        topic = f"operator.{referral.operator}.outbox"
        assert self.producer is not None
        delay = 0.2
        # A `send <topic>` span, child of the inbox record's (the answer task inherited its
        # context); its `traceparent` travels in the reply so the platform continues the trace.
        with TRACER.start_as_current_span(f"send {topic}", kind=SpanKind.PRODUCER, record_exception=False,
                                          attributes={**messaging_attributes("send", topic),
                                                      "messaging.message.id": event_id}):
            carrier: dict[str, str] = {}
            propagate.inject(carrier)
            headers += [(name, text.encode()) for name, text in carrier.items() if name in TRACE_HEADERS]
            while True:
                try:
                    await self.producer.send_and_wait(topic, value=value, key=referral.referral_id.encode(),
                                                      headers=headers)
                    break
                except KafkaError as exc:  # broker away: retry until it is back or we are stopped
                    log.warning("send_retry", produced_type=ce_type, error=repr(exc))
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 5.0)
        extra = {"outcome": data["outcome"]} if "outcome" in data else {}
        log.info("event_sent", produced_type=ce_type, produced_id=event_id, topic=topic, **extra)


TRACER = trace.get_tracer("operator-simulator")
TRACE_HEADERS = ("traceparent", "tracestate")  # W3C Trace Context, as Kafka record headers


def record_trace_context(raw: Iterable[tuple[str, bytes | None]] | None) -> Any:
    """The trace context an inbox record carries (`traceparent`, `tracestate`), if any."""
    carrier = {name.lower(): value.decode("latin-1") for name, value in raw or ()
               if value is not None and name.lower() in TRACE_HEADERS}
    return propagate.extract(carrier)


def messaging_attributes(operation: str, topic: str) -> dict[str, str]:
    """The messaging semantic conventions' attributes (ids only, never personal data)."""
    return {"messaging.system": "kafka", "messaging.operation.type": operation,
            "messaging.operation.name": operation, "messaging.destination.name": topic}


def deterministic_id(referral_id: str, name: str) -> str:
    """The same referral and event always get the same id: a replay is a duplicate."""
    return str(uuid.uuid5(ID_NAMESPACE, f"{referral_id}/{name}"))


def read_headers(raw: Iterable[tuple[str, bytes | None]] | None) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name, value in raw or ():
        try:
            headers[name.lower()] = value.decode("utf-8") if value is not None else ""
        except UnicodeDecodeError as exc:
            raise Skip("invalid_envelope_skipped", reason=f"header {name} is not UTF-8") from exc
    missing = [h for h in REQUIRED_HEADERS if not headers.get(h)]
    if missing:
        raise Skip("invalid_envelope_skipped", reason="missing CloudEvents headers", missing=missing)
    if headers["ce_specversion"] != "1.0":
        raise Skip("invalid_envelope_skipped", reason="ce_specversion is not 1.0")
    if headers["content-type"].split(";")[0].strip().lower() != "application/json":
        raise Skip("invalid_envelope_skipped", reason="content-type is not application/json")
    return headers


def read_json(value: bytes | None) -> dict[str, Any]:
    if not value:
        raise Skip("invalid_json_skipped", reason="empty value")
    try:
        data = json.loads(value.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise Skip("invalid_json_skipped", reason="value is not UTF-8 JSON") from exc
    if not isinstance(data, dict):
        raise Skip("invalid_json_skipped", reason="value is not a JSON object")
    return data


async def start_client(factory: Callable[[], T], what: str, stop: asyncio.Event) -> T | None:
    """Starts a Kafka client, retrying while the broker is not there; None if stopped first."""
    delay = 0.5
    while not stop.is_set():
        client = factory()
        try:
            await client.start()  # type: ignore[attr-defined]
            return client
        except (KafkaError, OSError) as exc:
            log.warning("broker_unavailable", client=what, error=repr(exc))
            await _bounded(client.stop(), 2.0, f"{what}_stop")  # type: ignore[attr-defined]
        try:
            await asyncio.wait_for(stop.wait(), delay)
        except TimeoutError:
            delay = min(delay * 2, 5.0)
    return None


async def _bounded(awaitable: Awaitable[Any], seconds: float, what: str) -> None:
    try:
        await asyncio.wait_for(awaitable, seconds)
    except Exception as exc:  # stopping: report and carry on
        log.warning("stop_incomplete", step=what, error=repr(exc))


# ---------------------------------------------------------------- entry point


async def main_async(settings: Settings) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    if not settings.operators:
        print("operator simulator: playing no operator (RELAIS_SIMULATED_OPERATORS is empty); "
              "idling until stopped", file=sys.stderr, flush=True)
        log.info("simulator_idle", operators=[])
        await stop.wait()
        log.info("simulator_stopped")
        return 0
    print(f"operator simulator: playing {', '.join(settings.operators)} "
          f"(broker {settings.bootstrap}, outcome {settings.outcome})", file=sys.stderr, flush=True)
    try:
        contract = Contract(settings.schemas)
        answers = Answers()
        keys = {code: ECKey.import_key(json.loads((settings.keys / f"{code}.private.jwk.json").read_text()))
                for code in settings.operators}
    except (OSError, ValueError) as exc:
        log.error("startup_failed", error=str(exc))
        return 2
    await Simulator(settings, contract, answers, keys).run(stop)
    return 0


def main(argv: list[str] | None = None) -> int:
    settings = parse_settings(argv)
    never_create_topics()
    configure_logging(settings.log_level)
    configure_tracing(os.environ)
    return asyncio.run(main_async(settings))


if __name__ == "__main__":
    sys.exit(main())
