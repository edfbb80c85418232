"""The dead-letter tool on the real broker: list, show, replay, dry run, filters, and
listing that moves no consumer group's offsets."""

import json
import os
import subprocess
import sys

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from relais_kit import dlq
from relais_kit.settings import REPO_ROOT
from tests.support import TopicReader, headers, produce_raw

ANSWERED = "fr.franceservices.relais.operator.answered.v1"


def dead_letter_headers(original, *, error, reason, topic, partition, offset, consumer):
    """What EventConsumer.dead_letter adds to the original headers."""
    return [*original, ("dlq_error", error.encode()), ("dlq_reason", reason.encode()),
            ("dlq_topic", topic.encode()), ("dlq_partition", str(partition).encode()),
            ("dlq_offset", str(offset).encode()), ("dlq_consumer", consumer.encode()),
            ("dlq_time", b"2026-11-20T10:00:00+00:00")]


CAF_ORIGINAL = [("ce_specversion", b"1.0"), ("ce_id", b"caf-answer-1"), ("ce_type", ANSWERED),
                ("ce_source", b"/operators/caf"), ("content-type", b"application/json")]
CAF_ORIGINAL = [(k, v.encode() if isinstance(v, str) else v) for k, v in CAF_ORIGINAL]
CAF_VALUE = json.dumps({"referral_id": "ref-dlq-1", "outcome": "resolved"}).encode()
BROKEN_VALUE = b"\xff\x00{not json"


async def _listed(capsys, *argv):
    assert await dlq.amain(["list", *argv]) == 0
    return capsys.readouterr().out.splitlines()


async def _groups(bootstrap):
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return sorted(g[0] for g in await admin.list_consumer_groups())
    finally:
        await admin.close()


async def _committed(bootstrap, group, tp, commit=None):
    """The group's committed offset on `tp` (after committing `commit` if given)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign([tp])
        if commit is not None:
            await consumer.commit({tp: commit})
        return await consumer.committed(tp)
    finally:
        await consumer.stop()


@pytest.fixture
def broker(kafka_bootstrap, monkeypatch):
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    return kafka_bootstrap


async def test_list_show_replay_and_filters(broker, capsys):
    await produce_raw(broker, "operator.caf.outbox.dlq", b"ref-dlq-1", CAF_VALUE, dead_letter_headers(
        CAF_ORIGINAL, error="schema_violation", reason="data.message_to_citizen is required",
        topic="operator.caf.outbox", partition=1, offset=7, consumer="referral-operator-replies"))
    await produce_raw(broker, "referrals.dlq", b"ref-dlq-2", BROKEN_VALUE, dead_letter_headers(
        [("ce_id", b"broken-1")], error="invalid_json", reason="record value is not UTF-8 JSON",
        topic="referrals", partition=0, offset=3, consumer="notifications-referrals"))
    watched = TopicPartition("referrals.dlq", 0)
    assert await _committed(broker, "dlq-test-watcher", watched, commit=0) == 0
    groups_before = await _groups(broker)
    assert "dlq-test-watcher" in groups_before

    lines = await _listed(capsys)
    caf = next(line for line in lines if line.startswith("operator.caf.outbox.dlq:"))
    broken = next(line for line in lines if line.startswith("referrals.dlq:"))
    assert "\tschema_violation\treferral-operator-replies\tfrom=operator.caf.outbox:1:7\t" in caf
    assert f"type={ANSWERED}\tid=caf-answer-1\tkey=ref-dlq-1\tdata.message_to_citizen is required" in caf
    assert "\tinvalid_json\t" in broken and "type=-\tid=broken-1" in broken
    assert "2 dead letter(s)" in lines and "  invalid_json: 1" in lines and "  schema_violation: 1" in lines

    only_json = await _listed(capsys, "--error", "invalid_json")
    assert [line for line in only_json if ".dlq:" in line] == [broken]
    one_topic = await _listed(capsys, "--topic", "operator.caf.outbox.dlq", "--since", "2026-11-20T09:00:00Z")
    assert [line for line in one_topic if ".dlq:" in line] == [caf]
    assert [line for line in await _listed(capsys, "--since", "2026-11-21") if ".dlq:" in line] == []

    caf_id, broken_id = caf.split("\t")[0], broken.split("\t")[0]
    assert await dlq.amain(["show", broken_id]) == 0
    shown = capsys.readouterr().out
    assert "(not JSON) \\xff\\x00{not json" in shown and "dlq_error: invalid_json" in shown
    assert await dlq.amain(["show", caf_id]) == 0
    assert '"outcome": "resolved"' in capsys.readouterr().out
    assert await dlq.amain(["show", "referrals.dlq:0:999999"]) == 2
    assert "no such dead letter" in capsys.readouterr().err
    assert await _groups(broker) == groups_before, "listing and showing join no consumer group"
    assert await _committed(broker, "dlq-test-watcher", watched) == 0, "no group's offsets move"

    async with TopicReader(broker, "operator.caf.outbox") as reader:
        assert await dlq.amain(["replay", "--topic", "operator.caf.outbox.dlq", "--dry-run"]) == 0
        out = capsys.readouterr().out
        assert f"would replay {caf_id} -> operator.caf.outbox" in out and "nothing produced" in out

        assert await dlq.amain(["replay", caf_id]) == 0
        assert f"replayed {caf_id} -> operator.caf.outbox:" in capsys.readouterr().out
        records = await reader.until(lambda rs: len(rs) >= 1, what="the replayed record")
    assert len(records) == 1, "the dry run produced nothing"
    replayed = records[0]
    assert (replayed.key, replayed.value) == (b"ref-dlq-1", CAF_VALUE)
    assert [(k, v) for k, v in replayed.headers if not k.startswith("dlq_replayed_")] == CAF_ORIGINAL
    assert headers(replayed)["dlq_replayed_from"] == caf_id
    assert "dlq_replayed_at" in headers(replayed)


async def test_replay_by_error_and_the_safety_without_a_terminal(broker, capsys, monkeypatch):
    for offset in (20, 21):
        await produce_raw(broker, "operator.ants.outbox.dlq", b"ref-ants", CAF_VALUE, dead_letter_headers(
            CAF_ORIGINAL, error="unknown_referral", reason="no referral ref-ants",
            topic="operator.ants.outbox", partition=0, offset=offset, consumer="referral-operator-replies"))
    await produce_raw(broker, "operator.ants.outbox.dlq", b"ref-ants", CAF_VALUE, dead_letter_headers(
        CAF_ORIGINAL, error="schema_violation", reason="bad", topic="operator.ants.outbox",
        partition=0, offset=22, consumer="referral-operator-replies"))
    monkeypatch.setattr(sys.stdin, "isatty", lambda: False)
    select = ["replay", "--topic", "operator.ants.outbox.dlq", "--error", "unknown_referral"]

    async with TopicReader(broker, "operator.ants.outbox") as reader:
        assert await dlq.amain(select) == 2
        assert "add --yes" in capsys.readouterr().err
        assert await dlq.amain([*select, "--yes"]) == 0
        assert "2 record(s) replayed" in capsys.readouterr().out
        records = await reader.until(lambda rs: len(rs) >= 2, what="two replayed records")
    assert len(records) == 2
    assert all(headers(r)["dlq_replayed_from"].startswith("operator.ants.outbox.dlq:") for r in records)


def test_runs_as_a_module_with_the_broker_from_the_environment(kafka_bootstrap):
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
           "PYTHONPATH": os.pathsep.join(str(REPO_ROOT / p) for p in ("libs/relais_kit", "."))}
    done = subprocess.run([sys.executable, "-m", "relais_kit.dlq", "list", "--topic", "visits.dlq"],
                          capture_output=True, text=True, env=env, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "0 dead letter(s)"
    refused = subprocess.run([sys.executable, "-m", "relais_kit.dlq", "show", "visits:0:1"],
                             capture_output=True, text=True, env=env, timeout=60, check=False)
    assert refused.returncode == 2 and "not a dead-letter topic" in refused.stderr


async def test_a_forged_dead_letter_is_never_replayed_where_its_header_says(broker, capsys):
    """The probe of #9: a record put on operator.caf.inbox.dlq (operators may write
    there) claiming `dlq_topic=referrals` — replayed, it reached `referrals` and had a
    mail sent to an address of the forger's choice. It is now refused, and nothing
    reaches `referrals`."""
    forged_value = json.dumps({"referral_id": "forged-1", "recipient": {"email": "forger@example.org"}}).encode()
    await produce_raw(broker, "operator.caf.inbox.dlq", b"forged-1", forged_value, dead_letter_headers(
        [("ce_id", b"forged-answer-1"), ("ce_type", b"fr.franceservices.referral.answered.v1")],
        error="schema_violation", reason="x", topic="referrals", partition=0, offset=0, consumer="forger"))
    lines = await _listed(capsys, "--topic", "operator.caf.inbox.dlq")
    forged_id = next(line for line in lines if line.startswith("operator.caf.inbox.dlq:")).split("\t")[0]
    async with TopicReader(broker, "referrals") as reader:
        assert await dlq.amain(["replay", forged_id]) == 2
        assert "can only go back to 'operator.caf.inbox'" in capsys.readouterr().err
        # A marker with the same key, hence the same partition, behind where a replay
        # would have landed: once it is read, anything before it has been too.
        await produce_raw(broker, "referrals", b"forged-1", b"{}", [("ce_id", b"marker-1")])
        records = await reader.until(lambda rs: any(headers(r).get("ce_id") == "marker-1" for r in rs),
                                     what="the marker")
        assert not [r for r in records if headers(r).get("ce_id") == "forged-answer-1"]
