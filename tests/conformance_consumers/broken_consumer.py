#!/usr/bin/env python3
"""A small operator consumer for testing the conformance kit: right by default
(`--defect none`), or with exactly one rule of the contract broken.

    broken_consumer.py --operator caf --schemas schemas --private-key caf.private.jwk.json --defect never-ack

Environment: KAFKA_BOOTSTRAP_SERVERS. Prints `assigned` once it has its partitions.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer
from joserfc import jwe
from joserfc.jwk import ECKey
from jsonschema import Draft202012Validator

DEFECTS = {
    "none": "a conformant consumer",
    "never-ack": "answers without ever acknowledging",
    "double-ack": "acknowledges twice, with two different ce_ids",
    "wrong-source": "writes ce_source=/operator/<code> instead of /operators/<code>",
    "wrong-key": "writes the visit id as the record key",
    "invalid-reply": "sends operator.answered without message_to_citizen",
    "crash-on-unknown-type": "exits on an event type it does not know",
    "reject-unknown-fields": "refuses events with fields its copy of the schema does not describe",
    "reply-after-cancel": "asks for information after the referral was cancelled",
    "foreign-referral": "also acknowledges a referral it was never sent",
}
TYPE_RE = re.compile(r"^fr\.franceservices\.(?P<name>[a-z_.]+)\.v1$")
INBOX_EVENTS = ("referral.routed", "referral.info_provided", "referral.cancelled", "referral.reminder")


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--operator", required=True)
    parser.add_argument("--schemas", type=Path, required=True)
    parser.add_argument("--private-key", type=Path, required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--defect", choices=sorted(DEFECTS), default="none")
    parser.add_argument("--ask-first", action="store_true",
                        help="conformant variant: ask for information, answer once it is provided")
    parser.add_argument("--idle-exit", type=float, default=300)
    args = parser.parse_args()
    operator, defect = args.operator, args.defect
    key = ECKey.import_key(json.loads(args.private_key.read_text()))
    strict = {name: Draft202012Validator(json.loads((args.schemas / "events" / f"{name}.v1.json").read_text()))
              for name in INBOX_EVENTS}
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": args.group, "auto.offset.reset": "earliest",
                         "enable.auto.commit": True, "session.timeout.ms": 6000})
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": False,
                         "max.in.flight.requests.per.connection": 1})
    started = time.time()

    def on_assign(_c: Any, partitions: list[Any]) -> None:
        print(f"assigned {len(partitions)} partition(s)", flush=True)

    def send(name: str, referral_id: str, data: dict[str, Any], ce_id: str | None = None) -> None:
        source = f"/operator/{operator}" if defect == "wrong-source" else f"/operators/{operator}"
        record_key = data.pop("_key", referral_id)
        ce_id = ce_id or str(uuid.uuid5(uuid.NAMESPACE_URL, f"/operators/{operator}/{referral_id}/{name}"))
        headers = [("ce_specversion", b"1.0"), ("ce_id", ce_id.encode()), ("ce_source", source.encode()),
                   ("ce_type", f"fr.franceservices.{name}.v1".encode()), ("ce_time", now().encode()),
                   ("content-type", b"application/json")]
        producer.produce(f"operator.{operator}.outbox", key=record_key.encode(), value=json.dumps(data).encode(),
                         headers=headers)

    def routed(data: dict[str, Any]) -> None:
        ref = data["referral_id"]
        wrong = {"_key": data["visit_id"]} if defect == "wrong-key" else {}
        ack = {"referral_id": ref, "acknowledged_at": now(), "case_reference": f"T-{ref[:8]}"}
        if defect == "double-ack":
            send("operator.acknowledged", ref, dict(ack), str(uuid.uuid4()))
            send("operator.acknowledged", ref, dict(ack), str(uuid.uuid4()))
        elif defect != "never-ack":
            send("operator.acknowledged", ref, ack | wrong)
        if defect == "foreign-referral":
            other = str(uuid.uuid4())
            send("operator.acknowledged", other, {"referral_id": other, "acknowledged_at": now()})
        if args.ask_first:
            send("operator.info_requested", ref, {"referral_id": ref, "requested_at": now(),
                                                  "question": "Merci de préciser les revenus."})
        else:
            answer_(ref, wrong)

    def answer_(ref: str, wrong: dict[str, str]) -> None:
        answer = {"referral_id": ref, "answered_at": now(), "outcome": "resolved",
                  "message_to_citizen": "Votre demande est traitée.", "message_to_adviser": "Traité."}
        if defect == "invalid-reply":
            del answer["message_to_citizen"]
        send("operator.answered", ref, answer | wrong)

    seen: set[str] = set()
    consumer.subscribe([f"operator.{operator}.inbox"], on_assign=on_assign)
    last = time.monotonic()
    try:
        while time.monotonic() - last < args.idle_exit:
            msg = consumer.poll(0.2)
            if msg is None or msg.error():
                continue
            last = time.monotonic()
            if msg.timestamp()[1] < started * 1000:
                continue  # an earlier test's record on a reused operator code
            attrs = {k: (v or b"").decode() for k, v in msg.headers() or []}
            if attrs.get("ce_id") in seen:
                continue
            seen.add(attrs.get("ce_id", ""))
            match = TYPE_RE.match(attrs.get("ce_type", ""))
            if not match or match["name"] not in INBOX_EVENTS:
                if defect == "crash-on-unknown-type":
                    print(f"unknown type {attrs.get('ce_type')}: exiting", flush=True)
                    return 3
                continue
            name, data = match["name"], json.loads(msg.value())
            if defect == "reject-unknown-fields" and list(strict[name].iter_errors(data)):
                print(f"refused {name} {data.get('referral_id')}: not valid against my schema", flush=True)
                continue
            if "personal_data" in data:
                plain = json.loads(jwe.decrypt_compact(data["personal_data"], key).plaintext or b"{}")
                if plain.get("referral_id") != data["referral_id"]:
                    print(f"refused {name} {data['referral_id']}: personal data of another referral", flush=True)
                    continue
            if name == "referral.routed":
                routed(data)
            elif name == "referral.info_provided" and args.ask_first:
                answer_(data["referral_id"], {})
            elif name == "referral.cancelled" and defect == "reply-after-cancel":
                ref = data["referral_id"]
                send("operator.info_requested", ref, {"referral_id": ref, "requested_at": now(),
                                                      "question": "Toujours d'actualité ?"}, str(uuid.uuid4()))
            producer.flush(10)
    finally:
        producer.flush(10)
        consumer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
