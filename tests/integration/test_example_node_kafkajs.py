"""The Node.js (kafkajs) operator example replaces the simulator for one operator,
using only `schemas/`, the contract and the operator's private key: it runs as a
separate `node` process, outside the repository, against the real broker.

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


def routed_data(referral_id: str, *, sealed_for: str = OPERATOR,
                sealed_referral: str | None = None) -> dict[str, Any]:
    """The inbox shape of referral.routed for ants, personal data sealed for `sealed_for`
    (with the referral id `sealed_referral` inside, by default the event's own)."""
    example = next(e for e in schema("referral.routed")["examples"] if "personal_data" in e)
    data = copy.deepcopy(example)
    data.update(referral_id=referral_id, visit_id=str(uuid.uuid4()), operator=OPERATOR, procedure=PROCEDURE)
    data["consent"].update(given_to=OPERATOR, scope="Identité et adresse transmises à l'ANTS pour la carte grise")
    personal = {"referral_id": sealed_referral or referral_id, "summary": SUMMARY, "citizen": dict(CITIZEN)}
    assert not list(validator("referral.routed", "personal").iter_errors(personal))
    data["personal_data"] = seal(sealed_for, personal)
    return data


def info_provided_data(referral_id: str) -> dict[str, Any]:
    personal = {"referral_id": referral_id, "message": INFO_MESSAGE}
    assert not list(validator("referral.info_provided", "personal").iter_errors(personal))
    return {"referral_id": referral_id, "operator": OPERATOR, "provided_at": "2026-03-16T09:15:00+01:00",
            "personal_data": seal(OPERATOR, personal)}


def reply_id(referral_id: str, name: str) -> str:
    """The deterministic ce_id the example must give its replies (as the Python one)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"/operators/{OPERATOR}/referrals/{referral_id}/{name}"))


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
    # No PYTHONPATH nor NODE_PATH, and a working directory outside the repository: the
    # example has only its npm dependencies, the schemas folder and its private key.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "NODE_PATH", "NODE_OPTIONS")}
    env["KAFKA_BOOTSTRAP_SERVERS"] = kafka_bootstrap
    proc = await asyncio.create_subprocess_exec(
        node, str(EXAMPLE), "--operator", OPERATOR, "--schemas", str(SCHEMAS),
        "--private-key", str(KEYS / f"{OPERATOR}.private.jwk.json"),
        "--group", f"operator-{OPERATOR}-example-node-{uuid.uuid4().hex[:8]}", "--idle-exit", "300",
        cwd=tmp_path, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    output: list[str] = []

    async def pump() -> None:
        assert proc.stdout is not None
        while line := await proc.stdout.readline():
            output.append(line.decode(errors="replace"))

    def logged(*fragments: str) -> bool:
        text = "".join(output)
        return all(fragment in text for fragment in fragments)

    pump_task = asyncio.create_task(pump())
    try:
        first, extra, later = (str(uuid.uuid4()) for _ in range(3))
        wrong_key, moved, invalid, elsewhere, cancelled, informed = (str(uuid.uuid4()) for _ in range(6))
        src = "/relais/referral"

        async def send(name: str, data: dict[str, Any], subject: str, event_id: str | None = None) -> Any:
            return await produce(kafka_bootstrap, INBOX, name, data, subject=subject, source=src, event_id=event_id)

        # Phase 1: good, duplicate, unknown and broken events.
        twice = await send("referral.routed", routed_data(first), first)
        dup = await send("referral.routed", routed_data(first), first, event_id=twice.id)  # same ce_id
        assert dup.id == twice.id
        teleported = await send("referral.teleported", {"referral_id": elsewhere, "operator": OPERATOR, "to": "mars"},
                                elsewhere)
        v2_id = str(uuid.uuid4())
        await produce_raw(kafka_bootstrap, INBOX, elsewhere.encode(), json.dumps(routed_data(elsewhere)).encode(), [
            ("ce_specversion", b"1.0"), ("ce_id", v2_id.encode()), ("ce_source", src.encode()),
            ("ce_type", b"fr.franceservices.referral.routed.v2"), ("content-type", b"application/json")])
        newer = routed_data(extra) | {"priority": "haute"}  # a field a later v1 may add
        assert list(validator("referral.routed").iter_errors(newer))  # not in our copy of the schema
        await send("referral.routed", newer, extra)
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
        reminder = await send("referral.reminder", {"referral_id": first, "operator": OPERATOR,
                                                    "due_at": "2026-03-21T18:00:00+01:00",
                                                    "overdue_since": "2026-03-21T18:00:05+01:00"}, first)

        async def phase_one_read() -> bool:
            return logged(
                f"skipped duplicate referral.routed ce_id={twice.id}",
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
                keys = {name: {r.key.decode() for r in of_type(records, name)}
                        for name in ("operator.acknowledged", "operator.answered")}
                return (all(ref in keys["operator.acknowledged"] and ref in keys["operator.answered"]
                            for ref in answered_referrals) and informed in keys["operator.answered"])

            await reader.until(all_answered, timeout=20, what="an acknowledged+answered pair per valid referral")
            # Anything late (a second answer) would come now.
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
            # Exactly one of each per referral, even for the event delivered twice.
            assert len(acknowledged) == 1 and len(answered) == 1, referral_id
            assert acknowledged[0].partition == answered[0].partition
            assert acknowledged[0].offset < answered[0].offset  # acknowledged first
            assert json.loads(answered[0].value)["outcome"] == "resolved"
        assert not by_referral[informed]["operator.acknowledged"]
        assert len(by_referral[informed]["operator.answered"]) == 1
        assert len(ids) == len(set(ids)) == 2 * len(answered_referrals) + 1  # all distinct

        log_text = "".join(output)
        for secret in SECRETS:
            assert secret not in log_text, "the example must not log personal data"
        assert log_text.count("handled referral.routed") == 3
        assert "cannot be decrypted" in log_text and "for another referral" in log_text
    except BaseException:
        print("".join(output))  # the example's output, shown by pytest on failure
        raise
    finally:
        if proc.returncode is None:
            proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), timeout=10)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise AssertionError("the example did not stop within 10 s of SIGTERM\n" + "".join(output)) from None
        await pump_task
    assert proc.returncode == 0, "".join(output)
    assert "stop requested" in "".join(output) and "stopped" in output[-1]


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
