"""The confluent-kafka (librdkafka) operator example replaces the simulator for one
operator, using only `schemas/` and the contract: it runs as a separate process,
with nothing of this repository on its path, against the real broker. A routed
referral it already answered, delivered again (the platform lost its broker), is
answered again with the very same records; any other repeated event is skipped."""

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
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
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
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"  # an inbox record's trace context
CITIZEN = {"given_name": "Nadia", "family_name": "Dupont-Testeuse", "birth_date": "1987-06-02",
           "email": "nadia.dupont-testeuse@example.fr", "phone": "+33612345678"}


def schema(name: str) -> dict[str, Any]:
    return json.loads((SCHEMAS / "events" / f"{name}.v1.json").read_text())


def validator(name: str) -> Draft202012Validator:
    return Draft202012Validator(schema(name), format_checker=Draft202012Validator.FORMAT_CHECKER)


def routed_data(referral_id: str, operator: str = OPERATOR) -> dict[str, Any]:
    """The inbox-shape example of the schema, for dgfip (or `operator`)."""
    example = next(e for e in schema("referral.routed")["examples"] if "personal_data" in e)
    data = copy.deepcopy(example)
    data.update(referral_id=referral_id, visit_id=str(uuid.uuid4()), operator=operator,
                procedure=f"{operator}.declaration-revenus",
                personal_data=seal_for(operator, {
                    "referral_id": referral_id, "citizen": dict(CITIZEN),
                    "summary": "Première déclaration de revenus après un changement de situation ; "
                               "besoin d'aide pour les revenus fonciers."}))
    data["consent"].update(given_to=operator,
                           scope="Identité et coordonnées transmises à la DGFiP pour la déclaration de revenus")
    return data


def reminder_data(referral_id: str, operator: str = OPERATOR) -> dict[str, Any]:
    return {"referral_id": referral_id, "operator": operator, "due_at": "2026-03-21T18:00:00+01:00",
            "overdue_since": "2026-03-21T18:00:05+01:00"}


def sent_as(record: Any) -> tuple[bytes, bytes, tuple[tuple[str, bytes], ...]]:
    """A record as its producer wrote it: key, value and headers (ce_id, ce_time...)."""
    return record.key, record.value, tuple(record.headers)


@dataclass
class Example:
    """The example running as a separate process, its output collected line by line."""

    proc: asyncio.subprocess.Process
    output: list[str] = field(default_factory=list)

    def logged(self, *fragments: str) -> bool:
        text = "".join(self.output)
        return all(fragment in text for fragment in fragments)


@asynccontextmanager
async def running_example(kafka_bootstrap: str, tmp_path: Path, operator: str = OPERATOR) -> AsyncIterator[Example]:
    """Starts the example with no PYTHONPATH and a working directory outside the
    repository (it has only its requirements and the schemas folder); on the way out,
    stops it with SIGTERM and checks it left within 10 s, with status 0."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["KAFKA_BOOTSTRAP_SERVERS"] = kafka_bootstrap
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(EXAMPLE), "--operator", operator, "--schemas", str(SCHEMAS),
        "--group", f"example-{uuid.uuid4().hex[:8]}", "--idle-exit", "300",
        "--private-key", str(DEMO_KEYS / f"{operator}.private.jwk.json"),
        cwd=tmp_path, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    example = Example(proc)

    async def pump() -> None:
        assert proc.stdout is not None
        while line := await proc.stdout.readline():
            example.output.append(line.decode(errors="replace"))

    pump_task = asyncio.create_task(pump())
    try:
        yield example
    except BaseException:
        print("".join(example.output))  # the example's output, shown by pytest on failure
        raise
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
    output = "".join(example.output)
    assert proc.returncode == 0, output
    assert "stop requested" in output and "stopped" in example.output[-1]


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
    async with running_example(kafka_bootstrap, tmp_path) as example:
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
        # The same ce_id again: a routed referral already answered, so its replies are
        # sent again, the very same records.
        await produce(kafka_bootstrap, INBOX, "referral.routed", routed_data(first),
                      subject=first, source="/relais/referral", event_id=twice.id)
        teleported = await produce(kafka_bootstrap, INBOX, "referral.teleported",
                                   {"referral_id": elsewhere, "operator": OPERATOR, "to": "mars"},
                                   subject=elsewhere, source="/relais/referral")
        await produce(kafka_bootstrap, INBOX, "referral.routed", routed_data(second),
                      subject=second, source="/relais/referral")
        # Any other event delivered twice is skipped the second time.
        reminder = await produce(kafka_bootstrap, INBOX, "referral.reminder", reminder_data(second),
                                 subject=second, source="/relais/referral")
        await produce(kafka_bootstrap, INBOX, "referral.reminder", reminder_data(second),
                      subject=second, source="/relais/referral", event_id=reminder.id)
        newer = routed_data(extra) | {"priority": "haute"}  # a field a later v1 may add
        assert list(validator("referral.routed").iter_errors(newer))  # not in our copy of the schema
        await produce(kafka_bootstrap, INBOX, "referral.routed", newer, subject=extra, source="/relais/referral",
                      extra_headers=[("traceparent", TRACEPARENT.encode())])
        referrals = (first, second, extra)

        def answered_all(records: list[Any]) -> bool:
            keys = {name: [r.key.decode() for r in of_type(records, name)]
                    for name in ("operator.acknowledged", "operator.answered")}
            return all(keys[name].count(ref) == (2 if ref == first else 1)
                       for ref in referrals for name in keys)

        async def all_read() -> bool:
            return example.logged(
                f"re-sent replies to re-delivered referral.routed ce_id={twice.id} referral={first}",
                f"skipped duplicate referral.reminder ce_id={reminder.id}",
                f"referral={stolen}: personal_data cannot be decrypted",
                f"referral={moved}: personal_data belongs to another referral",
                f"skipped unknown event type {teleported.type} ce_id={teleported.id}")

        async with TopicReader(kafka_bootstrap, OUTBOX) as reader:
            await reader.until(answered_all, timeout=60, what="an acknowledged+answered pair per referral "
                                                              "(two for the one delivered twice)")
            # Every inbox record has been read once the duplicates and the unknown type are logged.
            await eventually(all_read, timeout=20, what="the example's log lines for every inbox record")
            # Anything late (a third answer) would come now.
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
            copies = 2 if referral_id == first else 1
            assert len(acknowledged) == copies and len(answered) == copies, referral_id
            # Sent again: the very same records (ce_id, headers, value), in the same order.
            assert len({sent_as(r) for r in acknowledged}) == 1 and len({sent_as(r) for r in answered}) == 1
            for ack, answer in zip(acknowledged, answered, strict=True):
                assert ack.partition == answer.partition
                assert ack.offset < answer.offset  # acknowledged first
            assert json.loads(answered[0].value)["outcome"] == "resolved"
            # The inbox record's trace context is passed on in the replies (only `extra` had one).
            assert {headers(r).get("traceparent") for r in acknowledged + answered} == {
                TRACEPARENT if referral_id == extra else None}
        assert len(ids) == 2 * len(referrals)  # ids unique across events, the same when sent again

        log_text = "".join(example.output)
        for value in CITIZEN.values():
            assert value not in log_text, "the example must not log personal data"
        assert log_text.count("handled referral.routed") == 3
        assert log_text.count("re-sent replies") == 1
        assert "ignored unknown field(s): priority" in log_text


async def test_a_routed_referral_delivered_again_is_answered_again_with_the_same_records(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    """The broker lost: the platform delivers the inbox again with the original ce_ids.
    The example sends its replies to a routed referral again, identical (so the
    platform drops those it has and applies those it lost), and nothing for a
    referral cancelled since; it skips the other repeated events."""
    operator = "cnav"  # an inbox and outbox of this test's own
    inbox, outbox = f"operator.{operator}.inbox", f"operator.{operator}.outbox"
    answered, withdrawn = str(uuid.uuid4()), str(uuid.uuid4())

    async def send(name: str, data: dict[str, Any], subject: str, event_id: str | None = None) -> Any:
        return await produce(kafka_bootstrap, inbox, name, data, subject=subject, source="/relais/referral",
                             event_id=event_id)

    def replies_about(records: list[Any], referral_id: str) -> list[Any]:
        return [r for r in records if r.key.decode() == referral_id]

    async with running_example(kafka_bootstrap, tmp_path, operator) as example, \
            TopicReader(kafka_bootstrap, outbox) as reader:
        routed = {ref: await send("referral.routed", routed_data(ref, operator), ref)
                  for ref in (answered, withdrawn)}
        reminder = await send("referral.reminder", reminder_data(answered, operator), answered)
        await reader.until(lambda rs: len(replies_about(rs, answered)) == len(replies_about(rs, withdrawn)) == 2,
                           timeout=60, what="the first replies")
        cancel = await send("referral.cancelled", {"referral_id": withdrawn, "operator": operator,
                                                   "cancelled_at": "2026-03-17T12:00:00+01:00",
                                                   "reason": "La personne a fait la démarche en ligne."}, withdrawn)
        await eventually(lambda: asyncio.sleep(0, example.logged(f"handled referral.cancelled ce_id={cancel.id}")),
                         timeout=20, what="the cancellation handled")
        first_time = list(reader.records)

        # The platform lost its broker: the same events again, with the same ce_ids.
        for ref, event in routed.items():
            await send("referral.routed", event.data, ref, event_id=event.id)
        await send("referral.reminder", reminder.data, answered, event_id=reminder.id)
        await send("referral.cancelled", cancel.data, withdrawn, event_id=cancel.id)
        await reader.until(lambda rs: len(replies_about(rs, answered)) == 4, timeout=30,
                           what="the replies sent again")
        await eventually(lambda: asyncio.sleep(0, example.logged(
            f"skipped duplicate referral.routed ce_id={routed[withdrawn].id} referral={withdrawn}: cancelled",
            f"skipped duplicate referral.reminder ce_id={reminder.id}",
            f"skipped duplicate referral.cancelled ce_id={cancel.id}")),
            timeout=20, what="every repeated event read")
        settled = time.monotonic() + 2  # anything more (a reply about the cancelled one) would come now
        await reader.until(lambda _: time.monotonic() > settled, timeout=10)
        records = list(reader.records)

    again = replies_about(records, answered)
    assert [sent_as(r) for r in again[2:]] == [sent_as(r) for r in replies_about(first_time, answered)]
    assert [headers(r)["ce_type"] for r in again[2:]] == [
        "fr.franceservices.operator.acknowledged.v1", "fr.franceservices.operator.answered.v1"]
    assert replies_about(records, withdrawn) == replies_about(first_time, withdrawn)  # nothing new
    assert example.logged(f"re-sent replies to re-delivered referral.routed ce_id={routed[answered].id} "
                          f"referral={answered} -> operator.acknowledged, operator.answered (same ce_ids)")
    assert "".join(example.output).count("handled referral.routed") == 2  # no second case opened
