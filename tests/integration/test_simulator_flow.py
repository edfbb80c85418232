"""The operator simulator, run as its own process against a real broker, seen only
through Kafka and its output: what an operator's system would do with the contract."""

from __future__ import annotations

import asyncio
import copy
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord
from jsonschema import Draft202012Validator

from tests.support import seal_for

ROOT = Path(__file__).resolve().parents[2]
SIMULATOR = ROOT / "simulator" / "operator_simulator.py"
EVENTS = ROOT / "schemas" / "events"
PREFIX = "fr.franceservices."
DEADLINE_S = 30.0
CITIZEN_VALUES = ("Nadia", "Dupont", "nadia.dupont@example.fr", "+33612345678", "1987-06-02")


def schema(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / f"{name}.v1.json").read_text(encoding="utf-8"))


def validator(name: str) -> Draft202012Validator:
    return Draft202012Validator(schema(name), format_checker=Draft202012Validator.FORMAT_CHECKER)


def inbox_example() -> dict[str, Any]:
    """The inbox-shaped example of `referral.routed` (it has `site`, no `inbox_topic`)."""
    return next(e for e in schema("referral.routed")["examples"] if "site" in e)


def routed(operator: str, procedure: str, referral_id: str | None = None) -> dict[str, Any]:
    data = copy.deepcopy(inbox_example())
    data.update(referral_id=referral_id or str(uuid.uuid4()), visit_id=str(uuid.uuid4()),
                operator=operator, procedure=procedure)
    data["consent"]["given_to"] = operator
    data["personal_data"] = seal_for(operator, {"referral_id": data["referral_id"], "summary": "Demande d'aide.",
                                                "citizen": {"given_name": "Nadia"}})
    validator("referral.routed").validate(data)
    return data


def headers_for(name: str, subject: str, ce_id: str | None = None) -> list[tuple[str, bytes]]:
    return [
        ("ce_specversion", b"1.0"),
        ("ce_id", (ce_id or str(uuid.uuid4())).encode()),
        ("ce_source", b"/relais/referral"),
        ("ce_type", f"{PREFIX}{name}.v1".encode()),
        ("ce_time", datetime.now(UTC).isoformat().encode()),
        ("ce_subject", subject.encode()),
        ("ce_partitionkey", subject.encode()),
        ("content-type", b"application/json"),
    ]


class Inboxes:
    """Writes to operator inboxes the way the platform does."""

    def __init__(self, bootstrap: str) -> None:
        self.producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=False)

    async def __aenter__(self) -> Inboxes:
        await self.producer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.producer.stop()

    async def send(self, name: str, data: dict[str, Any], *, ce_id: str | None = None,
                   topic: str | None = None) -> str:
        ce_id = ce_id or str(uuid.uuid4())
        await self.raw(topic or f"operator.{data['operator']}.inbox", data["referral_id"].encode(),
                       json.dumps(data).encode(), headers_for(name, data["referral_id"], ce_id))
        return ce_id

    async def raw(self, topic: str, key: bytes | None, value: bytes | None,
                  headers: list[tuple[str, bytes]]) -> None:
        await self.producer.send_and_wait(topic, value=value, key=key, headers=headers)


async def collect(bootstrap: str, topics: list[str], done: Callable[[list[ConsumerRecord]], bool],
                  within: float = DEADLINE_S) -> list[ConsumerRecord]:
    """Reads `topics` from the start with a fresh group until `done(records)` holds
    (then drains what is already there) or the deadline passes."""
    consumer = AIOKafkaConsumer(*topics, bootstrap_servers=bootstrap, group_id=f"test-{uuid.uuid4()}",
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    records: list[ConsumerRecord] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    try:
        while loop.time() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            fetched = [r for batch in batches.values() for r in batch]
            records.extend(fetched)
            if not fetched and done(records):
                break
    finally:
        await consumer.stop()
    return sorted(records, key=lambda r: (r.topic, r.partition, r.offset))


def header_map(record: ConsumerRecord) -> dict[str, str]:
    return {k: v.decode() for k, v in record.headers}


def of(records: list[ConsumerRecord], referral_id: str, name: str | None = None) -> list[ConsumerRecord]:
    return [r for r in records if r.key == referral_id.encode()
            and (name is None or header_map(r)["ce_type"] == f"{PREFIX}{name}.v1")]


def answered_all(*referral_ids: str) -> Callable[[list[ConsumerRecord]], bool]:
    return lambda records: all(of(records, rid, "operator.answered") for rid in referral_ids)


@pytest.fixture
def simulator(kafka_bootstrap: str, tmp_path: Path) -> Iterator[Callable[..., Simulator]]:
    started: list[Simulator] = []

    def start(operators: str | None, *args: str) -> Simulator:
        sim = Simulator(tmp_path / f"sim-{len(started)}", kafka_bootstrap, operators, list(args))
        started.append(sim)
        return sim

    yield start
    for sim in started:
        sim.kill()


class Simulator:
    """The simulator as a subprocess, its stdout (JSON logs) and stderr in files."""

    def __init__(self, folder: Path, bootstrap: str, operators: str | None, args: list[str]) -> None:
        folder.mkdir(parents=True)
        self.out, self.err = folder / "stdout.log", folder / "stderr.log"
        env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "PYTHONUNBUFFERED": "1"}
        env.pop("RELAIS_SIMULATED_OPERATORS", None)
        if operators is not None:
            env["RELAIS_SIMULATED_OPERATORS"] = operators
        with self.out.open("wb") as out, self.err.open("wb") as err:
            self.proc = subprocess.Popen([sys.executable, str(SIMULATOR), *args], cwd="/",
                                         env=env, stdout=out, stderr=err)

    def output(self) -> str:
        return self.err.read_text(encoding="utf-8") + self.out.read_text(encoding="utf-8")

    def logs(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.out.read_text(encoding="utf-8").splitlines()
                if line.startswith("{")]

    async def wait_for_output(self, *texts: str, within: float = DEADLINE_S) -> None:
        """Until one of `texts` is in the output."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while not any(text in self.output() for text in texts):
            assert self.proc.poll() is None, f"simulator exited early:\n{self.output()}"
            assert loop.time() < deadline, f"{texts!r} not seen in simulator output:\n{self.output()}"
            await asyncio.sleep(0.1)

    async def terminate(self, within: float = 10.0) -> int:
        """SIGTERM, then the exit code; fails if it takes longer than `within` seconds."""
        self.proc.send_signal(signal.SIGTERM)
        loop = asyncio.get_running_loop()
        started = loop.time()
        while self.proc.poll() is None:
            assert loop.time() - started < within, "simulator did not stop within 10 s of SIGTERM"
            await asyncio.sleep(0.05)
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def assert_operator_event(record: ConsumerRecord, operator: str, name: str, referral_id: str) -> None:
    headers = header_map(record)
    assert record.key == referral_id.encode()
    assert headers["ce_specversion"] == "1.0"
    assert headers["ce_source"] == f"/operators/{operator}"
    assert headers["ce_type"] == f"{PREFIX}{name}.v1"
    assert headers["ce_subject"] == referral_id
    assert headers["content-type"] == "application/json"
    assert uuid.UUID(headers["ce_id"])
    datetime.fromisoformat(headers["ce_time"].replace("Z", "+00:00"))
    data = json.loads(record.value)
    validator(name).validate(data)
    assert data["referral_id"] == referral_id


async def test_simulator_acknowledges_then_answers_routed_referrals(
        kafka_bootstrap: str, simulator: Callable[..., Simulator]) -> None:
    sim = simulator("caf,ants")
    await sim.wait_for_output("playing caf, ants")
    caf = routed("caf", "caf.prime-activite")
    ants = routed("ants", "ants.carte-grise.changement-adresse")
    ants["priority"] = "high"  # a field from a newer contract: tolerated
    cnam = routed("cnam", "cnam.carte-vitale")
    async with Inboxes(kafka_bootstrap) as inboxes:
        # Records an operator must survive: not JSON, no headers, unknown type, schema-invalid.
        bad_id = str(uuid.uuid4())
        await inboxes.raw("operator.caf.inbox", bad_id.encode(), b"{not json",
                          headers_for("referral.routed", bad_id))
        await inboxes.raw("operator.caf.inbox", bad_id.encode(), json.dumps(caf).encode(), [])
        await inboxes.raw("operator.caf.inbox", bad_id.encode(), b"{}",
                          headers_for("referral.teleported", bad_id))
        invalid = routed("caf", "caf.rsa", bad_id)
        del invalid["due_at"]
        await inboxes.send("referral.routed", invalid)
        # Personal data sealed for another operator, or copied from another referral.
        not_for_caf = routed("caf", "caf.rsa", bad_id)
        not_for_caf["personal_data"] = routed("ants", "ants.permis", bad_id)["personal_data"]
        await inboxes.send("referral.routed", not_for_caf)
        moved = routed("caf", "caf.rsa", bad_id)
        moved["personal_data"] = routed("caf", "caf.rsa")["personal_data"]
        await inboxes.send("referral.routed", moved)

        caf_event_id = await inboxes.send("referral.routed", caf)
        ants_event_id = await inboxes.send("referral.routed", ants)
        await inboxes.send("referral.routed", caf, ce_id=caf_event_id)  # a redelivery
        await inboxes.send("referral.routed", cnam)  # nobody plays cnam

        outboxes = ["operator.caf.outbox", "operator.ants.outbox", "operator.cnam.outbox"]
        records = await collect(kafka_bootstrap, outboxes,
                                answered_all(caf["referral_id"], ants["referral_id"]))
        # The redelivery came while the answer was on its way (nothing more to send), or
        # after it (sent again, same ids).
        await sim.wait_for_output('"referral_already_in_hand"', '"routed_again_answering_again"')

        # Asked again once answered (the platform lost the answer with its broker): the
        # same replies again, with the same ids, at once.
        await inboxes.send("referral.routed", ants, ce_id=ants_event_id)
        await sim.wait_for_output('"routed_again_answering_again"')
        again = await collect(kafka_bootstrap, ["operator.ants.outbox"],
                              lambda rs: len(of(rs, ants["referral_id"], "operator.answered")) >= 2)
        for name in ("operator.acknowledged", "operator.answered"):
            copies = of(again, ants["referral_id"], name)
            assert len(copies) == 2 and len({header_map(r)["ce_id"] for r in copies}) == 1, name

    for operator, data in (("caf", caf), ("ants", ants)):
        rid = data["referral_id"]
        mine = of(records, rid)
        assert {r.topic for r in mine} == {f"operator.{operator}.outbox"}
        names = [header_map(r)["ce_type"].removeprefix(PREFIX) for r in mine]
        assert list(dict.fromkeys(names)) == ["operator.acknowledged.v1", "operator.answered.v1"], names
        assert_operator_event(mine[0], operator, "operator.acknowledged", rid)
        assert_operator_event(mine[1], operator, "operator.answered", rid)
        answer = json.loads(mine[1].value)
        assert answer["outcome"] == "resolved"
        # Deterministic ids: the redelivered routed event cannot make a different answer.
        for name in ("operator.acknowledged", "operator.answered"):
            assert len({header_map(r)["ce_id"] for r in of(records, rid, name)}) == 1

    caf_answer = json.loads(of(records, caf["referral_id"], "operator.answered")[0].value)
    assert caf_answer["message_to_citizen"].startswith("Votre dossier de prime d'activité a été mis à jour")
    assert not [r for r in records if r.topic == "operator.cnam.outbox"]
    assert not of(records, bad_id)
    assert not of(records, cnam["referral_id"])

    logged = {entry["event"] for entry in sim.logs()}
    assert {"invalid_json_skipped", "invalid_envelope_skipped", "unknown_event_type_skipped",
            "invalid_event_skipped", "unknown_fields_tolerated", "routed_again_answering_again",
            "personal_data_unreadable_skipped", "personal_data_of_another_referral_skipped"} <= logged
    assert all(value not in sim.output() for value in CITIZEN_VALUES), "personal data in the logs"

    assert await sim.terminate() == 0
    assert '"simulator_stopped"' in sim.output()


async def test_cancelled_referral_gets_no_answer_and_reminders_are_read(
        kafka_bootstrap: str, simulator: Callable[..., Simulator]) -> None:
    sim = simulator("justice", "--answer-delay", "1.5")
    await sim.wait_for_output("playing justice")
    withdrawn = routed("justice", "justice.aide-juridictionnelle")
    later = routed("justice", "justice.casier-judiciaire")
    now = datetime.now(UTC).isoformat()
    async with Inboxes(kafka_bootstrap) as inboxes:
        await inboxes.send("referral.routed", withdrawn)
        await inboxes.send("referral.cancelled", {"referral_id": withdrawn["referral_id"],
                                                  "operator": "justice", "cancelled_at": now})
        await inboxes.send("referral.info_provided", {"referral_id": withdrawn["referral_id"],
                                                      "operator": "justice", "provided_at": now,
                                                      "personal_data": seal_for("justice", {
                                                          "referral_id": withdrawn["referral_id"],
                                                          "message": "Avis d'imposition transmis."})})
        await inboxes.send("referral.reminder", {"referral_id": withdrawn["referral_id"],
                                                 "operator": "justice", "due_at": now, "overdue_since": now})
        # Answered after the withdrawn one would have been: when it is there, the other is not coming.
        await inboxes.send("referral.routed", later)
        records = await collect(kafka_bootstrap, ["operator.justice.outbox"],
                                answered_all(later["referral_id"]))
    assert not of(records, withdrawn["referral_id"], "operator.answered")
    assert len(of(records, later["referral_id"])) == 2
    await sim.wait_for_output('"reminder_received"')
    logged = {entry["event"] for entry in sim.logs()}
    assert {"cancelled_received", "info_provided_received"} <= logged
    # Cancelled before the acknowledgement or between it and the answer, depending on batching.
    assert logged & {"not_acknowledged_cancelled", "not_answered_cancelled"}
    assert "Avis d'imposition transmis" not in sim.output()
    assert await sim.terminate() == 0


async def test_mixed_outcomes_and_a_replay_gives_the_same_ids(
        kafka_bootstrap: str, simulator: Callable[..., Simulator]) -> None:
    procedures = ["crous.bourse"] * 9
    referrals = [routed("crous", p) for p in procedures]
    async with Inboxes(kafka_bootstrap) as inboxes:
        for data in referrals:
            await inboxes.send("referral.routed", data)
    ids = [d["referral_id"] for d in referrals]

    first = simulator("crous", "--outcome", "mixed")
    records = await collect(kafka_bootstrap, ["operator.crous.outbox"], answered_all(*ids))
    assert await first.terminate() == 0
    # A second system reading the same inbox from the start (another group): same ids, same outcomes.
    second = simulator(None, "--operators", "crous", "--outcome", "mixed", "--group-prefix", "replay")
    await second.wait_for_output("playing crous")
    replayed = await collect(kafka_bootstrap, ["operator.crous.outbox"],
                             lambda rs: all(len(of(rs, rid, "operator.answered")) == 2 for rid in ids))
    assert await second.terminate() == 0

    outcomes = set()
    for rid in ids:
        answers = of(replayed, rid, "operator.answered")
        assert len(answers) == 2
        assert len({header_map(r)["ce_id"] for r in of(replayed, rid)}) == 2  # one ack id, one answer id
        first_run = of(records, rid, "operator.answered")
        assert header_map(answers[0])["ce_id"] == header_map(first_run[0])["ce_id"]
        data = [json.loads(r.value) for r in answers]
        assert data[0]["outcome"] == data[1]["outcome"]
        for record in answers:
            assert_operator_event(record, "crous", "operator.answered", rid)
        outcomes.add(data[0]["outcome"])
        if data[0]["outcome"] == "appointment_offered":
            at = datetime.fromisoformat(data[0]["appointment"]["at"])
            assert (at.hour, at.minute, at.weekday() < 5) == (10, 0, True)
            assert data[0]["appointment"]["place"].startswith("Agence Crous")
        if data[0]["outcome"] == "documents_needed":
            assert data[0]["documents"]
    assert outcomes <= {"resolved", "appointment_offered", "documents_needed"}
    assert len(outcomes) >= 2  # nine hashed ids over three outcomes


async def test_no_operator_means_idle_until_stopped(simulator: Callable[..., Simulator]) -> None:
    sim = simulator("")
    await sim.wait_for_output("playing no operator")
    assert sim.proc.poll() is None  # idles: a supervisor does not see it die
    assert await sim.terminate() == 0
    assert '"simulator_idle"' in sim.output()
