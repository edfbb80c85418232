"""The confluent-kafka (librdkafka) operator example replaces the simulator for one
operator, using only `schemas/` and the contract: it runs as a separate process,
with nothing of this repository on its path, against the real broker."""

from __future__ import annotations

import ast
import asyncio
import copy
import json
import os
import sys
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from rfc3339_validator import validate_rfc3339

from tests.support import DEMO_KEYS, TopicReader, eventually, headers, of_type, produce, seal_for

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "python-confluent" / "operator_consumer.py"
SCHEMAS = ROOT / "schemas"
OPERATOR = "dgfip"
INBOX, OUTBOX = f"operator.{OPERATOR}.inbox", f"operator.{OPERATOR}.outbox"
CITIZEN = {"given_name": "Nadia", "family_name": "Dupont-Testeuse", "birth_date": "1987-06-02",
           "email": "nadia.dupont-testeuse@example.fr", "phone": "+33612345678"}


def schema(name: str) -> dict[str, Any]:
    return json.loads((SCHEMAS / "events" / f"{name}.v1.json").read_text())


def validator(name: str) -> Draft202012Validator:
    return Draft202012Validator(schema(name), format_checker=Draft202012Validator.FORMAT_CHECKER)


def routed_data(referral_id: str) -> dict[str, Any]:
    """The inbox-shape example of the schema, for dgfip."""
    example = next(e for e in schema("referral.routed")["examples"] if "personal_data" in e)
    data = copy.deepcopy(example)
    data.update(referral_id=referral_id, visit_id=str(uuid.uuid4()), operator=OPERATOR,
                procedure="dgfip.declaration-revenus",
                personal_data=seal_for(OPERATOR, {
                    "referral_id": referral_id, "citizen": dict(CITIZEN),
                    "summary": "Première déclaration de revenus après un changement de situation ; "
                               "besoin d'aide pour les revenus fonciers."}))
    data["consent"].update(given_to=OPERATOR,
                           scope="Identité et coordonnées transmises à la DGFiP pour la déclaration de revenus")
    return data


def test_the_example_imports_nothing_from_this_repository() -> None:
    tree = ast.parse(EXAMPLE.read_text())
    modules = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
               for alias in node.names}
    modules |= {node.module.split(".")[0] for node in ast.walk(tree)
                if isinstance(node, ast.ImportFrom) and node.module}
    third_party = modules - set(sys.stdlib_module_names) - {"__future__"}
    assert third_party == {"confluent_kafka", "jsonschema", "joserfc"}


async def test_confluent_example_answers_routed_referrals(kafka_bootstrap: str, tmp_path: Path) -> None:
    for name in ("referral.routed", "operator.acknowledged", "operator.answered"):
        Draft202012Validator.check_schema(schema(name))
    # No PYTHONPATH, and a working directory outside the repository: the example has
    # only its requirements and the schemas folder.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["KAFKA_BOOTSTRAP_SERVERS"] = kafka_bootstrap
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(EXAMPLE), "--operator", OPERATOR, "--schemas", str(SCHEMAS),
        "--group", f"example-{uuid.uuid4().hex[:8]}", "--idle-exit", "300",
        "--private-key", str(DEMO_KEYS / f"{OPERATOR}.private.jwk.json"),
        cwd=tmp_path, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    output: list[str] = []

    async def pump() -> None:
        assert proc.stdout is not None
        while line := await proc.stdout.readline():
            output.append(line.decode(errors="replace"))

    pump_task = asyncio.create_task(pump())
    try:
        first, second, extra, elsewhere, stolen, moved = (str(uuid.uuid4()) for _ in range(6))
        # Personal data sealed for another operator, or copied from another referral:
        # the example cannot (or must not) read it, and sends nothing.
        await produce(kafka_bootstrap, INBOX, "referral.routed",
                      routed_data(stolen) | {"personal_data": seal_for("caf", {
                          "referral_id": stolen, "summary": "Pour la CAF.", "citizen": {}})},
                      subject=stolen, source="/relais/referral")
        await produce(kafka_bootstrap, INBOX, "referral.routed",
                      routed_data(moved) | {"personal_data": routed_data(first)["personal_data"]},
                      subject=moved, source="/relais/referral")
        twice = await produce(kafka_bootstrap, INBOX, "referral.routed", routed_data(first),
                              subject=first, source="/relais/referral")
        await produce(kafka_bootstrap, INBOX, "referral.routed", routed_data(first),
                      subject=first, source="/relais/referral", event_id=twice.id)  # same ce_id
        teleported = await produce(kafka_bootstrap, INBOX, "referral.teleported",
                                   {"referral_id": elsewhere, "operator": OPERATOR, "to": "mars"},
                                   subject=elsewhere, source="/relais/referral")
        await produce(kafka_bootstrap, INBOX, "referral.routed", routed_data(second),
                      subject=second, source="/relais/referral")
        newer = routed_data(extra) | {"priority": "haute"}  # a field a later v1 may add
        assert list(validator("referral.routed").iter_errors(newer))  # not in our copy of the schema
        await produce(kafka_bootstrap, INBOX, "referral.routed", newer, subject=extra, source="/relais/referral")
        referrals = (first, second, extra)

        def answered_all(records: list[Any]) -> bool:
            keys = {name: {r.key.decode() for r in of_type(records, name)}
                    for name in ("operator.acknowledged", "operator.answered")}
            return all(ref in keys["operator.acknowledged"] and ref in keys["operator.answered"]
                       for ref in referrals)

        async def all_read() -> bool:
            log_text = "".join(output)
            return (f"skipped duplicate referral.routed ce_id={twice.id}" in log_text
                    and f"referral={stolen}: personal_data cannot be decrypted" in log_text
                    and f"referral={moved}: personal_data belongs to another referral" in log_text
                    and f"skipped unknown event type {teleported.type} ce_id={teleported.id}" in log_text)

        async with TopicReader(kafka_bootstrap, OUTBOX) as reader:
            await reader.until(answered_all, timeout=60, what="an acknowledged+answered pair per referral")
            # Every inbox record has been read once the duplicate and the unknown type are logged.
            await eventually(all_read, timeout=20, what="the example's log lines for every inbox record")
            # Anything late (a second answer) would come now.
            settled = time.monotonic() + 2
            await reader.until(lambda _: time.monotonic() > settled, timeout=10)
            records = list(reader.records)

        by_referral: dict[str, dict[str, list[Any]]] = defaultdict(lambda: defaultdict(list))
        ids: set[str] = set()
        for record in records:
            h = headers(record)
            name = h["ce_type"].removeprefix("fr.franceservices.").removesuffix(".v1")
            assert name in ("operator.acknowledged", "operator.answered"), h["ce_type"]
            data = json.loads(record.value)
            assert not list(validator(name).iter_errors(data)), data
            referral_id = data["referral_id"]
            assert record.key.decode() == referral_id
            assert h["ce_specversion"] == "1.0"
            assert uuid.UUID(h["ce_id"]).version == 5
            assert h["ce_source"] == f"/operators/{OPERATOR}"
            assert validate_rfc3339(h["ce_time"]), h["ce_time"]
            assert h["ce_subject"] == referral_id
            assert h["content-type"] == "application/json"
            ids.add(h["ce_id"])
            by_referral[referral_id][name].append(record)

        assert set(by_referral) == set(referrals)  # nothing for the unknown event type
        for referral_id, events in by_referral.items():
            acknowledged, answered = events["operator.acknowledged"], events["operator.answered"]
            # Exactly one answer per referral, even for the event delivered twice.
            assert len(acknowledged) == 1 and len(answered) == 1, referral_id
            assert {(headers(r)["ce_id"], r.value) for r in answered} == {(headers(answered[0])["ce_id"],
                                                                            answered[0].value)}
            assert acknowledged[0].partition == answered[0].partition
            assert acknowledged[0].offset < answered[0].offset  # acknowledged first
            assert json.loads(answered[0].value)["outcome"] == "resolved"
        assert len(ids) == 2 * len(referrals)  # ids unique across events

        log_text = "".join(output)
        for value in CITIZEN.values():
            assert value not in log_text, "the example must not log personal data"
        assert log_text.count("handled referral.routed") == 3
        assert "ignored unknown field(s): priority" in log_text
    finally:
        if proc.returncode is None:
            proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), timeout=10)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise AssertionError("the example did not stop within 10 s of SIGTERM") from None
        await pump_task
    assert proc.returncode == 0, "".join(output)
    assert "stop requested" in "".join(output) and "stopped" in output[-1]
