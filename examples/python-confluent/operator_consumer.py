#!/usr/bin/env python3
"""An operator's consumer for Relais, written with confluent-kafka (librdkafka).

It reads `operator.<code>.inbox`, checks every event against the JSON Schemas of
the contract (the `schemas/` folder Relais publishes), and answers each routed
referral with `operator.acknowledged` then `operator.answered` on
`operator.<code>.outbox`. The personal data of inbox events (the adviser's summary,
the citizen's details, the adviser's messages) arrives encrypted for you alone: a
JWE (ECDH-ES, A256GCM) that only your private key opens.

A `referral.routed` delivered again after we answered it is a request: the platform
lost our replies (with its broker) and asks for them again. We send the very replies we
sent the first time again, with the same `ce_id`s; any other repeated event is skipped.

It depends on nothing but the contract: the `schemas/` folder, CloudEvents 1.0 in
Kafka binary mode, and the topic names. Copy it, then replace `answer_referral()`
with your own case handling.

    python operator_consumer.py --operator caf --schemas /path/to/schemas \
        --private-key /path/to/caf.private.jwk.json

Environment: KAFKA_BOOTSTRAP_SERVERS (default 127.0.0.1:9092) and the security settings
every Relais client reads (see security_config): KAFKA_SECURITY_PROTOCOL,
KAFKA_SASL_MECHANISM, KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD, KAFKA_SSL_CA_FILE...
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import signal
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from confluent_kafka import Consumer, KafkaException, Message, Producer
from joserfc import jwe
from joserfc.errors import JoseError
from joserfc.jwk import ECKey
from jsonschema import Draft202012Validator

log = logging.getLogger("operator-consumer")

# --- The contract ------------------------------------------------------------------

# Every CloudEvents type is `fr.franceservices.<name>.v<major>`; the data of
# `<name>` v1 is described by `schemas/events/<name>.v1.json`.
TYPE_RE = re.compile(r"^fr\.franceservices\.(?P<name>[a-z_.]+)\.v(?P<major>[0-9]+)$")

# What the platform may write to an operator's inbox (this consumer knows v1).
INBOX_EVENTS = ("referral.routed", "referral.info_provided", "referral.cancelled", "referral.reminder")
# Inbox events whose personal data is encrypted, in the `personal_data` field.
SEALED_EVENTS = ("referral.routed", "referral.info_provided")
# What this consumer writes to its outbox.
OUTBOX_EVENTS = ("operator.acknowledged", "operator.answered")

# Kafka record headers: (name, value) pairs, in order; a name may repeat.
Headers = list[tuple[str, str | bytes | None]]

# A reply as sent: (event name, record key, value, headers).
Reply = tuple[str, bytes, bytes, Headers]

# Headers every event must carry (CloudEvents binary mode: attributes are `ce_*` headers).
REQUIRED_HEADERS = ("ce_specversion", "ce_id", "ce_source", "ce_type", "content-type")
# Optional W3C Trace Context headers. Copied from the inbox record into our replies, they
# let Relais show a referral's whole journey, our answer included, as one trace (an
# OpenTelemetry-instrumented client would instead send its own span's context).
TRACE_HEADERS = ("traceparent", "tracestate")


def event_type(name: str) -> str:
    """`operator.answered` -> `fr.franceservices.operator.answered.v1`."""
    return f"fr.franceservices.{name}.v1"


def tolerant(schema: Any) -> Any:
    """A copy of `schema` without `additionalProperties: false`.

    The contract promises that inside v1 the events only grow: the platform may add
    new optional fields before you update your copy of `schemas/`. A tolerant reader
    checks every field it knows and ignores the others, so we relax closed objects for
    what we READ. What we WRITE is checked against the schemas unchanged."""
    if isinstance(schema, dict):
        return {k: tolerant(v) for k, v in schema.items() if not (k == "additionalProperties" and v is False)}
    if isinstance(schema, list):
        return [tolerant(v) for v in schema]
    return schema


class Contract:
    """The schemas this consumer needs, loaded once from the `schemas/` folder."""

    def __init__(self, schemas_dir: Path) -> None:
        # FORMAT_CHECKER checks `uuid`, `date`, `email`, and `date-time` too when the
        # `rfc3339-validator` package is installed (it is in requirements.txt).
        checker = Draft202012Validator.FORMAT_CHECKER
        if checker.conforms("not a time", "date-time"):
            log.warning("rfc3339-validator is not installed: date-time formats are not checked")
        self.schemas: dict[str, dict[str, Any]] = {}
        self.readers: dict[str, Draft202012Validator] = {}  # tolerant, for the inbox
        self.writers: dict[str, Draft202012Validator] = {}  # exact, for the outbox
        for name in INBOX_EVENTS + OUTBOX_EVENTS:
            path = schemas_dir / "events" / f"{name}.v1.json"
            schema = json.loads(path.read_text(encoding="utf-8"))
            Draft202012Validator.check_schema(schema)
            self.schemas[name] = schema
            if name in INBOX_EVENTS:
                self.readers[name] = Draft202012Validator(tolerant(schema), format_checker=checker)
            else:
                self.writers[name] = Draft202012Validator(schema, format_checker=checker)
        # The decrypted personal data is described by `schemas/personal/<event>.v1.json`.
        self.personal: dict[str, Draft202012Validator] = {}
        for name in SEALED_EVENTS:
            schema = json.loads((schemas_dir / "personal" / f"{name}.v1.json").read_text(encoding="utf-8"))
            Draft202012Validator.check_schema(schema)
            self.personal[name] = Draft202012Validator(tolerant(schema), format_checker=checker)
        # The operator codes, as the contract lists them.
        self.operators: list[str] = self.schemas["referral.routed"]["$defs"]["operator"]["enum"]

    @staticmethod
    def problems(validator: Draft202012Validator, data: dict[str, Any]) -> list[str]:
        """Where and why `data` fails, WITHOUT the offending values: a jsonschema
        message quotes the value, and the value may be a citizen's name or e-mail."""
        return sorted(
            f"{'.'.join(str(p) for p in error.absolute_path) or '(root)'}: {error.validator}"
            for error in validator.iter_errors(data)
        )

    def unknown_fields(self, name: str, data: dict[str, Any]) -> list[str]:
        """Top-level fields that our copy of the schema does not describe."""
        return sorted(set(data) - set(self.schemas[name].get("properties", {})))


# --- Reading and writing CloudEvents (Kafka binary content mode) -------------------


class Skip(Exception):
    """A record we cannot or need not handle; it is logged and its offset committed."""


def read_event(msg: Message) -> tuple[dict[str, str], dict[str, Any]]:
    """Returns the CloudEvents attributes (header name -> text) and the JSON data."""
    attrs: dict[str, str] = {}
    # A consumed record's headers are a list of (name, bytes or None).
    for header, raw in cast(list[tuple[str, bytes | None]], msg.headers() or []):
        try:
            attrs[header.lower()] = raw.decode("utf-8") if raw is not None else ""
        except UnicodeDecodeError as exc:
            raise Skip(f"header {header} is not UTF-8") from exc
    missing = [h for h in REQUIRED_HEADERS if not attrs.get(h)]
    if missing:
        raise Skip(f"not a CloudEvent, missing header(s) {', '.join(missing)}")
    if attrs["ce_specversion"] != "1.0":
        raise Skip(f"ce_specversion {attrs['ce_specversion']!r} is not 1.0")
    if attrs["content-type"].split(";")[0].strip() != "application/json":
        raise Skip(f"content-type {attrs['content-type']!r} is not application/json")
    try:
        data = json.loads(msg.value() or b"")
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise Skip("record value is not UTF-8 JSON") from exc
    if not isinstance(data, dict):
        raise Skip("record value is not a JSON object")
    return attrs, data


def now_rfc3339() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")  # e.g. 2025-03-14T10:02:45.123+00:00


def event_id(operator: str, referral_id: str, name: str) -> str:
    """A deterministic id: uuid5 over the referral and the event name.

    If we crash after producing but before committing the offset, the routed event
    is delivered again and we answer again. Because the ids are the same, the
    platform (which de-duplicates by `ce_id`) drops the second copy."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"/operators/{operator}/referrals/{referral_id}/{name}"))


def outbox_record(operator: str, name: str, referral_id: str, data: dict[str, Any],
                  trace: Headers | None = None) -> tuple[bytes, bytes, Headers]:
    """Key, value and headers of one outbox event (`trace`: the TRACE_HEADERS to pass on)."""
    headers: Headers = [
        ("ce_specversion", b"1.0"),
        ("ce_id", event_id(operator, referral_id, name).encode()),
        ("ce_source", f"/operators/{operator}".encode()),
        ("ce_type", event_type(name).encode()),
        ("ce_time", now_rfc3339().encode()),
        ("ce_subject", referral_id.encode()),
        ("content-type", b"application/json"),
        *(trace or []),
    ]
    value = json.dumps(data, ensure_ascii=False).encode("utf-8")
    # Record key = the referral id: every event of a referral stays in order on one partition.
    return referral_id.encode(), value, headers


# --- Personal data (JWE) ------------------------------------------------------------


def load_private_key(path: Path) -> ECKey:
    """Your private key, an EC P-256 JWK. Relais holds only the public half. Keep it
    in a secret store in production; the demo keys in the repository are public."""
    key = ECKey.import_key(json.loads(path.read_text(encoding="utf-8")))
    if not key.is_private:
        raise ValueError(f"{path} holds a public key; the private key is needed to decrypt")
    return key


def open_personal_data(token: str, key: ECKey, referral_id: str) -> dict[str, Any]:
    """Decrypts `personal_data` and checks it belongs to this referral (a ciphertext
    copied onto another referral's event must not be believed)."""
    try:
        opened = jwe.decrypt_compact(token, key, algorithms=["ECDH-ES", "A256GCM"])
        plaintext = json.loads(opened.plaintext or b"")
    except (JoseError, ValueError) as exc:
        raise Skip(f"personal_data cannot be decrypted with our key ({type(exc).__name__})") from exc
    if not isinstance(plaintext, dict) or plaintext.get("referral_id") != referral_id:
        raise Skip("personal_data belongs to another referral")
    return plaintext


# --- Your business logic -----------------------------------------------------------


def answer_referral(operator: str, routed: dict[str, Any],
                    personal: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """What we send back for a routed referral: here, a fixed acknowledgement and a
    `resolved` answer. Replace this with your own case handling: `personal` holds the
    adviser's `summary` and the `citizen`'s details. Never copy citizen data into these
    messages unless the citizen needs it."""
    referral_id = routed["referral_id"]
    case_reference = f"{operator.upper()}-{referral_id[:8].upper()}"
    acknowledged = {
        "referral_id": referral_id,
        "acknowledged_at": now_rfc3339(),
        "case_reference": case_reference,
        "expert": f"Service de traitement des demandes ({operator})",
    }
    answered = {
        "referral_id": referral_id,
        "answered_at": now_rfc3339(),
        "outcome": "resolved",
        "message_to_citizen": (
            "Bonjour, votre demande a bien été traitée par nos services. "
            "Vous n'avez aucune démarche supplémentaire à effectuer."
        ),
        "message_to_adviser": f"Demande traitée, dossier {case_reference}. Aucune action de votre part n'est requise.",
    }
    return [("operator.acknowledged", acknowledged), ("operator.answered", answered)]


# --- Connecting -------------------------------------------------------------------


def security_config(env: Mapping[str, str]) -> dict[str, str]:
    """librdkafka's security settings from the variables every Relais client reads.
    On the Relais cluster: KAFKA_SECURITY_PROTOCOL=SASL_SSL, KAFKA_SASL_MECHANISM=SCRAM-SHA-512,
    KAFKA_SASL_USERNAME=operator-<code> (your own principal, which may read your inbox and
    write your outbox, nothing else), KAFKA_SASL_PASSWORD (or KAFKA_SASL_PASSWORD_FILE),
    KAFKA_SSL_CA_FILE (the CA of the platform's brokers); KAFKA_SSL_CERT_FILE and
    KAFKA_SSL_KEY_FILE for mutual TLS."""
    protocol = (env.get("KAFKA_SECURITY_PROTOCOL") or "PLAINTEXT").upper()
    config = {"security.protocol": protocol}
    if protocol.startswith("SASL_"):
        password = env.get("KAFKA_SASL_PASSWORD") or ""
        if not password and env.get("KAFKA_SASL_PASSWORD_FILE"):
            password = Path(env["KAFKA_SASL_PASSWORD_FILE"]).read_text(encoding="utf-8").strip()
        if not env.get("KAFKA_SASL_USERNAME") or not password:
            raise ValueError(f"{protocol} needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD")
        config.update({"sasl.mechanism": (env.get("KAFKA_SASL_MECHANISM") or "SCRAM-SHA-512").upper(),
                       "sasl.username": env["KAFKA_SASL_USERNAME"], "sasl.password": password})
    for variable, key in (("KAFKA_SSL_CA_FILE", "ssl.ca.location"), ("KAFKA_SSL_CERT_FILE", "ssl.certificate.location"),
                          ("KAFKA_SSL_KEY_FILE", "ssl.key.location")):
        if protocol.endswith("SSL") and env.get(variable):
            config[key] = env[variable]
    return config


# --- The consumer ------------------------------------------------------------------


class OperatorConsumer:
    def __init__(self, operator: str, bootstrap: str, group: str, contract: Contract, key: ECKey,
                 security: Mapping[str, str] | None = None) -> None:
        self.operator = operator
        self.key = key
        self.inbox = f"operator.{operator}.inbox"
        self.outbox = f"operator.{operator}.outbox"
        self.contract = contract
        # Ids of the events already handled. The contract says `ce_id` is the
        # de-duplication key: Kafka delivers at least once, so the same event can come
        # twice (a redelivery after a crash, or the platform re-sending it).
        # This in-memory set only lasts as long as the process. A production consumer
        # stores each handled id in its own database, in the same transaction as the
        # work the event caused, and checks it before doing anything.
        self.seen: set[str] = set()
        self.cancelled: set[str] = set()  # referrals withdrawn: send nothing more about them
        # The replies we sent, exactly as sent (key, value, headers), per routed event
        # (its `ce_id`). A `referral.routed` delivered again after we answered it asks
        # for them again: Relais lost them with its broker (docs/broker-loss.md). A
        # production consumer keeps its replies in its own database, next to the case
        # and in the same transaction, and re-sends those stored rows: never a second
        # case, a second letter, nor a reply rebuilt with new ids or a new content.
        self.replies: dict[str, list[Reply]] = {}
        # Hand librdkafka's own log lines to Python logging.
        kafka_log = logging.getLogger("librdkafka")
        self.consumer = Consumer({
            "bootstrap.servers": bootstrap,
            "group.id": group,
            # We commit ourselves, after the work is done: at-least-once delivery.
            "enable.auto.commit": False,
            # A new group starts from the oldest record still kept on the topic.
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 10000,
            "heartbeat.interval.ms": 1000,
            "logger": kafka_log,
            **(security or {}),  # see security_config
        })
        self.producer = Producer({
            "bootstrap.servers": bootstrap,
            # Wait for every in-sync replica before a send counts as done.
            "acks": "all",
            # Set this to True on a real Kafka cluster (no duplicates or reordering on
            # retries). It is False here only because the embedded broker used for
            # development and tests (tansu) is not relied on to support idempotent
            # producers, and this example must run against it.
            "enable.idempotence": False,
            # Without idempotence, one request in flight keeps `acknowledged` before
            # `answered` even when a send is retried (drop this line with idempotence on).
            "max.in.flight.requests.per.connection": 1,
            "logger": kafka_log,
            **(security or {}),
        })

    def run(self, should_stop: Callable[[], bool], max_messages: int | None = None,
            idle_exit: float | None = None) -> None:
        """Polls until `should_stop()` is true, `max_messages` records were handled, or
        nothing arrived for `idle_exit` seconds."""
        self.consumer.subscribe([self.inbox], on_assign=self._on_assign, on_revoke=self._on_revoke)
        log.info("consuming %s, answering on %s", self.inbox, self.outbox)
        count = 0
        last_record = time.monotonic()
        try:
            while True:
                if should_stop():
                    log.info("stop requested")
                    break
                if max_messages is not None and count >= max_messages:
                    log.info("read %d record(s), exiting (--max-messages)", count)
                    break
                if idle_exit is not None and time.monotonic() - last_record > idle_exit:
                    log.info("no record for %.0f s, exiting (--idle-exit)", idle_exit)
                    break
                # poll() returns at most every second, so a stop signal is seen quickly.
                msg = self.consumer.poll(1.0)
                if msg is None:
                    continue
                error = msg.error()
                if error is not None:
                    if error.fatal():
                        raise KafkaException(error)
                    log.warning("consumer error: %s", error)  # librdkafka retries by itself
                    continue
                last_record = time.monotonic()
                self.handle(msg)
                # Commit only once the work is done (and the answers are on the broker):
                # if we crash before this line the record is delivered again, and the
                # de-duplication plus deterministic ids make that harmless.
                self.consumer.commit(message=msg, asynchronous=False)
                count += 1
        finally:
            # Leaves the group at once, so that another instance takes the partitions over.
            self.consumer.close()
            self.producer.flush(10)
            log.info("stopped")

    def handle(self, msg: Message) -> None:
        where = f"{msg.topic()}[{msg.partition()}]@{msg.offset()}"
        try:
            attrs, data = read_event(msg)
        except Skip as why:
            # A production consumer would also keep the record aside (a dead-letter
            # table or topic) and alert, rather than only log it.
            log.warning("skipped %s: %s", where, why)
            return
        ce_id, ce_type = attrs["ce_id"], attrs["ce_type"]

        match = TYPE_RE.match(ce_type)
        name = match["name"] if match else None
        if not match or match["major"] != "1" or name not in INBOX_EVENTS:
            # New event types may appear in the contract at any time: ignore what you
            # do not know instead of stopping.
            log.info("skipped unknown event type %s ce_id=%s at %s", ce_type, ce_id, where)
            return
        if ce_id in self.seen:
            if name == "referral.routed" and ce_id in self.replies:
                self.send_again(ce_id)
            else:
                log.info("skipped duplicate %s ce_id=%s", name, ce_id)
            return

        problems = self.contract.problems(self.contract.readers[name], data)
        if problems:
            log.warning("skipped invalid %s ce_id=%s at %s: %s", name, ce_id, where, "; ".join(problems))
            return
        if data["operator"] != self.operator:
            log.warning("skipped %s ce_id=%s: meant for operator %s", name, ce_id, data["operator"])
            return
        unknown = self.contract.unknown_fields(name, data)
        note = f" (ignored unknown field(s): {', '.join(unknown)})" if unknown else ""

        referral_id = data["referral_id"]
        try:
            personal = self.open(name, data) if name in SEALED_EVENTS else {}
        except Skip as why:
            log.warning("skipped %s ce_id=%s referral=%s: %s", name, ce_id, referral_id, why)
            return
        if name == "referral.routed" and referral_id in self.cancelled:
            log.info("skipped %s ce_id=%s referral=%s: cancelled", name, ce_id, referral_id)
        elif name == "referral.routed":
            trace: Headers = [(h, attrs[h].encode()) for h in TRACE_HEADERS if attrs.get(h)]
            records = self.send(answer_referral(self.operator, data, personal), trace)
            self.replies[ce_id] = records
            log.info("handled %s ce_id=%s referral=%s procedure=%s -> %s%s",
                     name, ce_id, referral_id, data["procedure"], ", ".join(n for n, *_ in records), note)
        else:
            # referral.info_provided: attach the adviser's message to your case.
            # referral.cancelled: close your case, the citizen withdrew.
            # referral.reminder: the answer deadline has passed; escalate.
            if name == "referral.cancelled":
                self.cancelled.add(referral_id)
            log.info("handled %s ce_id=%s referral=%s (nothing to send)%s", name, ce_id, referral_id, note)
        self.seen.add(ce_id)

    def open(self, name: str, data: dict[str, Any]) -> dict[str, Any]:
        """The decrypted personal data of an inbox event, checked against its schema."""
        personal = open_personal_data(data["personal_data"], self.key, data["referral_id"])
        problems = self.contract.problems(self.contract.personal[name], personal)
        if problems:
            raise Skip(f"personal_data is not valid: {'; '.join(problems)}")
        return personal

    def send(self, events: list[tuple[str, dict[str, Any]]], trace: Headers | None = None) -> list[Reply]:
        """Validates the events, produces them, waits until the broker has them all, and
        returns the records as sent (to send them again if asked)."""
        for name, data in events:
            # Never send what the contract refuses: the platform would dead-letter it.
            problems = self.contract.problems(self.contract.writers[name], data)
            if problems:
                raise ValueError(f"{name} does not match its schema: {'; '.join(problems)}")
        records = [(name, *outbox_record(self.operator, name, data["referral_id"], data, trace))
                   for name, data in events]
        self.produce(records)
        return records

    def send_again(self, ce_id: str) -> None:
        """A `referral.routed` we answered, delivered again: the platform asks for our
        replies again (it lost them with its broker). The same records, byte for byte:
        same `ce_id`s, same content, same order; Relais drops those it already has."""
        records = self.replies[ce_id]
        referral_id = records[0][1].decode()
        if referral_id in self.cancelled:
            log.info("skipped duplicate referral.routed ce_id=%s referral=%s: cancelled", ce_id, referral_id)
            return
        self.produce(records)
        log.info("re-sent replies to re-delivered referral.routed ce_id=%s referral=%s -> %s (same ce_ids)",
                 ce_id, referral_id, ", ".join(n for n, *_ in records))

    def produce(self, records: list[Reply]) -> None:
        failures: list[str] = []

        def on_delivery(err: Any, _msg: Message) -> None:
            if err is not None:
                failures.append(str(err))

        for _name, key, value, headers in records:
            self.producer.produce(self.outbox, key=key, value=value, headers=headers, on_delivery=on_delivery)
        # Flush BEFORE the offset is committed: the answers must be on the broker first.
        remaining = self.producer.flush(30)
        if remaining or failures:
            # Do not commit: stop, and the routed event is delivered again at restart.
            raise RuntimeError(f"could not deliver to {self.outbox}: {remaining} pending, errors: {failures}")

    def _on_assign(self, _consumer: Consumer, partitions: list[Any]) -> None:
        log.info("assigned %s partition(s) %s", self.inbox, sorted(p.partition for p in partitions))

    def _on_revoke(self, _consumer: Consumer, partitions: list[Any]) -> None:
        log.info("revoked %s partition(s) %s", self.inbox, sorted(p.partition for p in partitions))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Relais operator consumer (confluent-kafka example).")
    parser.add_argument("--operator", required=True, help="operator code, e.g. caf")
    parser.add_argument("--schemas", type=Path, default=Path("schemas"),
                        help="path to the Relais schemas/ folder (default: ./schemas)")
    parser.add_argument("--private-key", type=Path, required=True,
                        help="your private key (EC P-256 JWK) that opens the personal data")
    parser.add_argument("--group", help="consumer group id (default: operator-<code>-consumer)")
    parser.add_argument("--max-messages", type=int, help="exit after reading N records")
    parser.add_argument("--idle-exit", type=float, metavar="SECONDS",
                        help="exit when no record arrived for SECONDS (counted from start)")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)

    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    contract = Contract(args.schemas)
    if args.operator not in contract.operators:
        parser.error(f"unknown operator {args.operator!r}; the contract knows {', '.join(contract.operators)}")
    try:
        key = load_private_key(args.private_key)
    except (OSError, ValueError) as exc:
        parser.error(f"--private-key: {exc}")
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    group = args.group or f"operator-{args.operator}-consumer"
    try:
        security = security_config(os.environ)
    except (OSError, ValueError) as exc:
        parser.error(f"Kafka security settings: {exc}")

    # SIGINT (Ctrl-C) and SIGTERM (docker stop, systemd, Kubernetes): finish the
    # current record, then leave the group and exit.
    stopping: list[int] = []

    def on_signal(signum: int, _frame: Any) -> None:
        stopping.append(signum)  # only set a flag: the loop notices it within a second

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    log.info("operator %s, bootstrap %s, group %s", args.operator, bootstrap, group)
    OperatorConsumer(args.operator, bootstrap, group, contract, key, security).run(
        should_stop=lambda: bool(stopping), max_messages=args.max_messages, idle_exit=args.idle_exit)
    return 0


if __name__ == "__main__":
    sys.exit(main())
