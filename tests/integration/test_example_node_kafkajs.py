"""The Node.js (kafkajs) operator example replaces the simulator for one operator,
using only `schemas/`, the contract and the operator's private key: it runs as a
separate `node` process, outside the repository, against the real broker.

A routed referral it already answered, delivered again (the platform lost its broker),
is answered again with the very same records; any other repeated event is skipped.

Its npm dependencies are installed with `npm ci --prefix examples/node-kafkajs`
(done here when `node_modules` is missing, so a clean clone passes)."""

from __future__ import annotations

import asyncio
import copy
import json
import os
import re
import shutil
import subprocess
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiokafka.partitioner import murmur2
from joserfc import jwe
from joserfc.jwk import ECKey
from jsonschema import Draft202012Validator
from rfc3339_validator import validate_rfc3339

from relais_kit.topics import load_topics
from tests.support import TopicReader, eventually, headers, of_type, produce, produce_raw

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_DIR = ROOT / "examples" / "node-kafkajs"
EXAMPLE = EXAMPLE_DIR / "operator-consumer.mjs"
SCHEMAS = ROOT / "schemas"
KEYS = ROOT / "deploy" / "demo" / "operator-keys"
OPERATOR, OTHER_OPERATOR = "ants", "caf"
INBOX, OUTBOX = f"operator.{OPERATOR}.inbox", f"operator.{OPERATOR}.outbox"
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"  # an inbox record's trace context
PROCEDURE = "ants.carte-grise.changement-adresse"
CITIZEN = {"given_name": "Nadia", "family_name": "Dupont-Testeuse", "birth_date": "1987-06-02",
           "email": "nadia.dupont-testeuse@example.fr", "phone": "+33612345678"}
SUMMARY = "Déménagement à Agen-Testville ; besoin de changer l'adresse de la carte grise."
INFO_MESSAGE = "Nouvelle adresse : 12 rue des Essais-Confidentiels, 47000 Agen."
SECRETS = (*CITIZEN.values(), SUMMARY, INFO_MESSAGE)


def schema(name: str, folder: str = "events") -> dict[str, Any]:
    return json.loads((SCHEMAS / folder / f"{name}.v1.json").read_text())


def validator(name: str, folder: str = "events") -> Draft202012Validator:
    return Draft202012Validator(schema(name, folder), format_checker=Draft202012Validator.FORMAT_CHECKER)


def seal(operator: str, plaintext: dict[str, Any]) -> str:
    """`personal_data` as the platform writes it: a JWE for `operator`'s public key."""
    key = ECKey.import_key(json.loads((KEYS / f"{operator}.public.jwk.json").read_text()))
    protected = {"alg": "ECDH-ES", "enc": "A256GCM", "kid": key.kid, "cty": "application/json"}
    return jwe.encrypt_compact(protected, json.dumps(plaintext, ensure_ascii=False).encode(), key)


def routed_data(referral_id: str, *, sealed_for: str | None = None, sealed_referral: str | None = None,
                operator: str = OPERATOR) -> dict[str, Any]:
    """The inbox shape of referral.routed for ants (or `operator`), personal data sealed
    for `sealed_for` (by default the operator), with the referral id `sealed_referral`
    inside (by default the event's own)."""
    example = next(e for e in schema("referral.routed")["examples"] if "personal_data" in e)
    data = copy.deepcopy(example)
    data.update(referral_id=referral_id, visit_id=str(uuid.uuid4()), operator=operator,
                procedure=PROCEDURE.replace(OPERATOR, operator, 1))
    data["consent"].update(given_to=operator, scope="Identité et adresse transmises à l'ANTS pour la carte grise")
    personal = {"referral_id": sealed_referral or referral_id, "summary": SUMMARY, "citizen": dict(CITIZEN)}
    assert not list(validator("referral.routed", "personal").iter_errors(personal))
    data["personal_data"] = seal(sealed_for or operator, personal)
    return data


def info_provided_data(referral_id: str) -> dict[str, Any]:
    personal = {"referral_id": referral_id, "message": INFO_MESSAGE}
    assert not list(validator("referral.info_provided", "personal").iter_errors(personal))
    return {"referral_id": referral_id, "operator": OPERATOR, "provided_at": "2026-03-16T09:15:00+01:00",
            "personal_data": seal(OPERATOR, personal)}


def reminder_data(referral_id: str, operator: str = OPERATOR) -> dict[str, Any]:
    return {"referral_id": referral_id, "operator": operator, "due_at": "2026-03-21T18:00:00+01:00",
            "overdue_since": "2026-03-21T18:00:05+01:00"}


def sent_as(record: Any) -> tuple[bytes, bytes, tuple[tuple[str, bytes], ...]]:
    """A record as its producer wrote it: key, value and headers (ce_id, ce_time...)."""
    return record.key, record.value, tuple(record.headers)


def reply_id(referral_id: str, name: str) -> str:
    """The deterministic ce_id the example must give its replies (as the Python one)."""
    return reply_id_of(OPERATOR, referral_id, name)


def reply_id_of(operator: str, referral_id: str, name: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"/operators/{operator}/referrals/{referral_id}/{name}"))


@pytest.fixture(scope="module")
def node() -> str:
    """The `node` binary, with the example's npm dependencies installed."""
    node_bin, npm_bin = shutil.which("node"), shutil.which("npm")
    assert node_bin and npm_bin, "Node.js 20+ and npm are needed for the Node.js example"
    if not (EXAMPLE_DIR / "node_modules").is_dir():
        # Exactly the lock file's versions, from the npm registry.
        result = subprocess.run([npm_bin, "ci", "--prefix", str(EXAMPLE_DIR), "--no-audit", "--no-fund"],
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stdout + result.stderr
    return node_bin


@dataclass
class Example:
    """The example running as a separate `node` process, its output collected."""

    proc: asyncio.subprocess.Process
    output: list[str] = field(default_factory=list)

    def logged(self, *fragments: str) -> bool:
        text = "".join(self.output)
        return all(fragment in text for fragment in fragments)


@asynccontextmanager
async def running_example(node: str, kafka_bootstrap: str, tmp_path: Path,
                          operator: str = OPERATOR) -> AsyncIterator[Example]:
    """Starts the example with no PYTHONPATH nor NODE_PATH, in a working directory
    outside the repository (it has only its npm dependencies, the schemas folder and
    its private key); on the way out, stops it with SIGTERM and checks it left within
    10 s, with status 0."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "NODE_PATH", "NODE_OPTIONS")}
    env["KAFKA_BOOTSTRAP_SERVERS"] = kafka_bootstrap
    proc = await asyncio.create_subprocess_exec(
        node, str(EXAMPLE), "--operator", operator, "--schemas", str(SCHEMAS),
        "--private-key", str(KEYS / f"{operator}.private.jwk.json"),
        "--group", f"operator-{operator}-example-node-{uuid.uuid4().hex[:8]}", "--idle-exit", "300",
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
            raise AssertionError("the example did not stop within 10 s of SIGTERM\n"
                                 + "".join(example.output)) from None
        await pump_task
    output = "".join(example.output)
    assert proc.returncode == 0, output
    assert "stop requested" in output and "stopped" in example.output[-1]


IMPORT_RE = re.compile(r"""^\s*import\s+(?:[^'"]*?\s+from\s+)?["']([^"']+)["']""", re.MULTILINE)
# `import("x")` / `require("x")`: JSDoc type references such as `import("kafkajs").Message`
# count as imports too; one whose argument is not a string literal cannot be checked.
CALL_RE = re.compile(r"""\b(?:import|require)\s*\(\s*(["'][^"']+["'])?""")


def test_the_node_example_imports_only_its_declared_dependencies() -> None:
    source = EXAMPLE.read_text()
    package = json.loads((EXAMPLE_DIR / "package.json").read_text())
    lock = json.loads((EXAMPLE_DIR / "package-lock.json").read_text())
    declared: dict[str, str] = package["dependencies"]
    # Pinned exactly, and the lock file agrees.
    assert all(re.fullmatch(r"[0-9]+\.[0-9]+\.[0-9]+", v) for v in declared.values()), declared
    assert declared["kafkajs"] == "2.2.4"
    assert declared["ajv"].startswith("8.") and declared["jose"].startswith("6.")
    assert "ajv-formats" in declared
    assert lock["packages"][""]["dependencies"] == declared
    for name, version in declared.items():
        assert lock["packages"][f"node_modules/{name}"]["version"] == version, name
    assert package.get("type") == "module"
    assert not package.get("devDependencies"), "no build step, no dev tooling"

    specifiers = IMPORT_RE.findall(source)
    assert specifiers, "no import found"
    for match in CALL_RE.finditer(source):
        assert match[1], f"{match[0]!r}: an import this check cannot read"
        specifiers.append(match[1].strip("\"'"))
    packages: set[str] = set()
    for spec in specifiers:
        assert not spec.startswith((".", "/")), f"{spec}: the example imports nothing from this repository"
        if spec.startswith("node:"):
            continue  # a Node.js builtin
        parts = spec.split("/")
        packages.add("/".join(parts[:2]) if spec.startswith("@") else parts[0])
    assert packages == set(declared), (packages, declared)


async def test_node_example_answers_routed_referrals(kafka_bootstrap: str, node: str, tmp_path: Path) -> None:
    for name in ("referral.routed", "operator.acknowledged", "operator.answered"):
        Draft202012Validator.check_schema(schema(name))
    async with running_example(node, kafka_bootstrap, tmp_path) as example:
        logged, proc = example.logged, example.proc
        first, extra, later = (str(uuid.uuid4()) for _ in range(3))
        wrong_key, moved, invalid, elsewhere, cancelled, informed = (str(uuid.uuid4()) for _ in range(6))
        src = "/relais/referral"

        async def send(name: str, data: dict[str, Any], subject: str, event_id: str | None = None) -> Any:
            return await produce(kafka_bootstrap, INBOX, name, data, subject=subject, source=src, event_id=event_id)

        # Phase 1: good, duplicate, unknown and broken events.
        twice = await send("referral.routed", routed_data(first), first)
        # The same ce_id again: a routed referral already answered, so its replies are
        # sent again, the very same records.
        dup = await send("referral.routed", routed_data(first), first, event_id=twice.id)
        assert dup.id == twice.id
        teleported = await send("referral.teleported", {"referral_id": elsewhere, "operator": OPERATOR, "to": "mars"},
                                elsewhere)
        v2_id = str(uuid.uuid4())
        await produce_raw(kafka_bootstrap, INBOX, elsewhere.encode(), json.dumps(routed_data(elsewhere)).encode(), [
            ("ce_specversion", b"1.0"), ("ce_id", v2_id.encode()), ("ce_source", src.encode()),
            ("ce_type", b"fr.franceservices.referral.routed.v2"), ("content-type", b"application/json")])
        newer = routed_data(extra) | {"priority": "haute"}  # a field a later v1 may add
        assert list(validator("referral.routed").iter_errors(newer))  # not in our copy of the schema
        await produce(kafka_bootstrap, INBOX, "referral.routed", newer, subject=extra, source=src,
                      extra_headers=[("traceparent", TRACEPARENT.encode())])
        # Sealed for another operator: our key cannot open it.
        not_ours = await send("referral.routed", routed_data(wrong_key, sealed_for=OTHER_OPERATOR), wrong_key)
        # A ciphertext moved from another referral.
        moved_event = await send("referral.routed", routed_data(moved, sealed_referral=first), moved)
        broken_id = str(uuid.uuid4())
        await produce_raw(kafka_bootstrap, INBOX, invalid.encode(), b'{"referral_id": "oops", ', [
            ("ce_specversion", b"1.0"), ("ce_id", broken_id.encode()), ("ce_source", src.encode()),
            ("ce_type", b"fr.franceservices.referral.routed.v1"), ("content-type", b"application/json")])
        no_due = {k: v for k, v in routed_data(invalid).items() if k != "due_at"}
        schema_invalid = await send("referral.routed", no_due, invalid)
        # Cancelled, then information arrives for it: nothing is sent for that referral.
        cancel = await send("referral.cancelled", {"referral_id": cancelled, "operator": OPERATOR,
                                                   "cancelled_at": "2026-03-17T12:00:00+01:00",
                                                   "reason": "La personne a fait la démarche en ligne."}, cancelled)
        late_info = await send("referral.info_provided", info_provided_data(cancelled), cancelled)
        # Information provided on a referral routed before this consumer started.
        info = await send("referral.info_provided", info_provided_data(informed), informed)
        reminder = await send("referral.reminder", reminder_data(first), first)
        # Any other event delivered twice is skipped the second time.
        await send("referral.reminder", reminder_data(first), first, event_id=reminder.id)

        async def phase_one_read() -> bool:
            return logged(
                f"re-sent replies to re-delivered referral.routed ce_id={twice.id} referral={first}",
                f"skipped duplicate referral.reminder ce_id={reminder.id}",
                f"skipped unknown event type {teleported.type} ce_id={teleported.id}",
                f"skipped unknown event type fr.franceservices.referral.routed.v2 ce_id={v2_id}",
                "ignored unknown field(s): priority",
                f"skipped referral.routed ce_id={not_ours.id} referral={wrong_key}",
                f"skipped referral.routed ce_id={moved_event.id} referral={moved}",
                f"ce_id={broken_id}: record value is not UTF-8 JSON",
                f"skipped invalid referral.routed ce_id={schema_invalid.id}",
                "(root): required due_at",
                f"handled referral.cancelled ce_id={cancel.id} referral={cancelled}",
                f"handled referral.info_provided ce_id={late_info.id} referral={cancelled} (the referral was cancelled",
                f"handled referral.info_provided ce_id={info.id} referral={informed}",
                f"handled referral.reminder ce_id={reminder.id} referral={first}",
            )

        async with TopicReader(kafka_bootstrap, OUTBOX) as reader:
            await eventually(phase_one_read, timeout=40, what="the example's log lines for every phase-1 record")
            assert proc.returncode is None, "the example died on a bad event"
            # Phase 2: still consuming after all of that.
            await send("referral.routed", routed_data(later), later)
            answered_referrals = (first, extra, later)

            def all_answered(records: list[Any]) -> bool:
                keys = {name: [r.key.decode() for r in of_type(records, name)]
                        for name in ("operator.acknowledged", "operator.answered")}
                return (all(keys[name].count(ref) == (2 if ref == first else 1)
                            for ref in answered_referrals for name in keys)
                        and informed in keys["operator.answered"])

            await reader.until(all_answered, timeout=20, what="an acknowledged+answered pair per valid referral "
                                                              "(two for the one delivered twice)")
            # Anything late (one more answer) would come now.
            settled = time.monotonic() + 2
            await reader.until(lambda _: time.monotonic() > settled, timeout=10)
            records = list(reader.records)
        assert proc.returncode is None, "the example died"

        outbox_partitions = next(t.partitions for t in load_topics(ROOT / "deploy" / "topics.yaml").topics
                                 if t.name == OUTBOX)
        by_referral: dict[str, dict[str, list[Any]]] = defaultdict(lambda: defaultdict(list))
        ids: list[str] = []
        for record in records:
            h = headers(record)
            name = h["ce_type"].removeprefix("fr.franceservices.").removesuffix(".v1")
            assert name in ("operator.acknowledged", "operator.answered"), h["ce_type"]
            data = json.loads(record.value)
            assert not list(validator(name).iter_errors(data)), data  # strict, as the platform reads it
            referral_id = data["referral_id"]
            assert record.key.decode() == referral_id
            # The Java client's partitioner (murmur2), as every other producer of the platform.
            assert record.partition == (murmur2(record.key) & 0x7FFFFFFF) % outbox_partitions
            assert h["ce_specversion"] == "1.0"
            assert h["ce_id"] == reply_id(referral_id, name)  # deterministic, uuid5
            assert h["ce_source"] == f"/operators/{OPERATOR}"
            assert validate_rfc3339(h["ce_time"]), h["ce_time"]
            assert h["ce_subject"] == referral_id
            assert h["content-type"] == "application/json"
            ids.append(h["ce_id"])
            by_referral[referral_id][name].append(record)

        # Nothing for the unknown types, the undecryptable, moved, broken or invalid
        # events, nor for the cancelled referral.
        assert set(by_referral) == {*answered_referrals, informed}
        for referral_id in answered_referrals:
            acknowledged = by_referral[referral_id]["operator.acknowledged"]
            answered = by_referral[referral_id]["operator.answered"]
            # One of each per referral; two for the routed event delivered twice, the very
            # same records (ce_id, headers, value) in the same order.
            copies = 2 if referral_id == first else 1
            assert len(acknowledged) == copies and len(answered) == copies, referral_id
            assert len({sent_as(r) for r in acknowledged}) == 1 and len({sent_as(r) for r in answered}) == 1
            for ack, answer in zip(acknowledged, answered, strict=True):
                assert ack.partition == answer.partition
                assert ack.offset < answer.offset  # acknowledged first
            assert json.loads(answered[0].value)["outcome"] == "resolved"
            # The inbox record's trace context is passed on in the replies (only `extra` had one).
            assert {headers(r).get("traceparent") for r in acknowledged + answered} == {
                TRACEPARENT if referral_id == extra else None}
        assert not by_referral[informed]["operator.acknowledged"]
        assert len(by_referral[informed]["operator.answered"]) == 1
        assert len(set(ids)) == 2 * len(answered_referrals) + 1  # distinct per event...
        assert len(ids) == len(set(ids)) + 2  # ... and the same when sent again

        log_text = "".join(example.output)
        for secret in SECRETS:
            assert secret not in log_text, "the example must not log personal data"
        assert log_text.count("handled referral.routed") == 3
        assert log_text.count("re-sent replies") == 1
        assert "cannot be decrypted" in log_text and "for another referral" in log_text


async def test_a_routed_referral_delivered_again_is_answered_again_with_the_same_records(
        kafka_bootstrap: str, node: str, tmp_path: Path) -> None:
    """The broker lost: the platform delivers the inbox again with the original ce_ids.
    The example sends every reply it sent about a routed referral again, identical (so
    the platform drops those it has and applies those it lost), nothing for a referral
    cancelled since, and skips the other repeated events."""
    operator = "crous"  # an inbox and outbox of this test's own
    inbox, outbox = f"operator.{operator}.inbox", f"operator.{operator}.outbox"
    answered, withdrawn = str(uuid.uuid4()), str(uuid.uuid4())

    async def send(name: str, data: dict[str, Any], subject: str, event_id: str | None = None) -> Any:
        return await produce(kafka_bootstrap, inbox, name, data, subject=subject, source="/relais/referral",
                             event_id=event_id)

    def replies_about(records: list[Any], referral_id: str) -> list[Any]:
        return [r for r in records if r.key.decode() == referral_id]

    async with running_example(node, kafka_bootstrap, tmp_path, operator) as example, \
            TopicReader(kafka_bootstrap, outbox) as reader:
        routed = {ref: await send("referral.routed", routed_data(ref, operator=operator), ref)
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
    assert [headers(r)["ce_id"] for r in again[2:]] == [reply_id_of(operator, answered, "operator.acknowledged"),
                                                        reply_id_of(operator, answered, "operator.answered")]
    assert replies_about(records, withdrawn) == replies_about(first_time, withdrawn)  # nothing new
    assert example.logged(f"re-sent replies to re-delivered referral.routed ce_id={routed[answered].id} "
                          f"referral={answered} -> operator.acknowledged, operator.answered (same ce_ids)")
    assert "".join(example.output).count("handled referral.routed") == 2  # no second case opened


def test_node_example_refuses_bad_arguments(node: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "NODE_PATH", "NODE_OPTIONS")}
    for args, reason in (
        (["--operator", "mars", "--private-key", str(KEYS / "ants.private.jwk.json")], "unknown operator"),
        (["--operator", OPERATOR, "--private-key", str(KEYS / "ants.public.jwk.json")], "private JWK"),
        (["--operator", OPERATOR], "--private-key is required"),
    ):
        result = subprocess.run([node, str(EXAMPLE), "--schemas", str(SCHEMAS), *args], cwd=tmp_path, env=env,
                                capture_output=True, text=True, timeout=30)
        assert result.returncode == 2 and reason in result.stderr, (args, result.stderr)
