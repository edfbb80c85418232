"""Per-operator Kafka isolation generated from deploy/topics.yaml (deploy/kafka/generate.py)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

from deploy.kafka import generate
from relais_kit.topics import TopicsFile, load_topics

ROOT = Path(__file__).resolve().parents[2]
TOPICS_PATH = ROOT / "deploy" / "topics.yaml"
GENERATED = ROOT / "deploy" / "kafka" / "generated"


@pytest.fixture(scope="module")
def topics() -> TopicsFile:
    return load_topics(TOPICS_PATH)


@pytest.fixture(scope="module")
def users(topics: TopicsFile) -> dict[str, generate.User]:
    return {u.name: u for u in generate.build_users(topics)}


@pytest.fixture(scope="module")
def files() -> dict[str, str]:
    return generate.render(TOPICS_PATH)


def topic_ops(user: generate.User) -> dict[str, set[str]]:
    return {a.name: set(a.operations) for a in user.acls if a.resource_type == "topic"}


def readable(user: generate.User) -> set[str]:
    return {name for name, ops in topic_ops(user).items() if "Read" in ops}


def writable(user: generate.User) -> set[str]:
    return {name for name, ops in topic_ops(user).items() if "Write" in ops}


# --------------------------------------------------------------------------- operators

def test_one_user_per_operator(topics: TopicsFile, users: dict[str, generate.User]) -> None:
    assert {u.operator for u in users.values() if u.operator} == set(topics.operators)
    for code in topics.operators:
        assert f"operator-{code}" in users


def test_operator_reads_exactly_its_inbox_and_writes_exactly_its_outbox(
        topics: TopicsFile, users: dict[str, generate.User]) -> None:
    for code in topics.operators:
        user = users[f"operator-{code}"]
        assert topic_ops(user) == {
            f"operator.{code}.inbox": {"Read", "Describe"},
            f"operator.{code}.outbox": {"Write", "Describe"},
            f"operator.{code}.inbox.dlq": {"Write", "Describe"},  # set aside what it refuses; never read
        }
        topic_acls = [a for a in user.acls if a.resource_type == "topic"]
        assert all(a.pattern_type == "literal" for a in topic_acls)
        groups = [a for a in user.acls if a.resource_type == "group"]
        assert [(g.name, g.pattern_type, g.operations) for g in groups] == \
            [(f"operator-{code}-", "prefix", ("Read",))]
        assert {a.resource_type for a in user.acls} == {"topic", "group"}


def test_no_operator_acl_names_anything_else(topics: TopicsFile, users: dict[str, generate.User]) -> None:
    all_topics = set(topics.names())
    for code in topics.operators:
        own = {topics.inbox(code), topics.outbox(code), topics.inbox(code) + ".dlq"}
        foreign = all_topics - own   # other operators' topics, every other .dlq, every platform topic
        user = users[f"operator-{code}"]
        for acl in user.acls:
            assert acl.name not in foreign, (code, acl)
            if acl.name.endswith(".dlq"):
                assert "Read" not in acl.operations, (code, acl)
            assert "*" not in acl.name, (code, acl)
            for other in topics.operators:
                if other != code:
                    assert f".{other}." not in acl.name and f"-{other}-" not in acl.name, (code, acl)


def test_operator_group_prefixes_do_not_overlap(topics: TopicsFile, users: dict[str, generate.User]) -> None:
    prefixes = [a.name for u in users.values() for a in u.acls if a.resource_type == "group"]
    assert len(set(prefixes)) == len(prefixes)
    for p in prefixes:
        for q in prefixes:
            if p != q:
                assert not q.startswith(p), f"group prefix {p!r} also covers {q!r}"


# --------------------------------------------------------------------------- platform users

def test_platform_users(topics: TopicsFile, users: dict[str, generate.User]) -> None:
    inboxes = {topics.inbox(o) for o in topics.operators}
    outboxes = {topics.outbox(o) for o in topics.operators}
    dlqs = {n for n in topics.names() if n.endswith(".dlq")}
    sources = set(topics.names()) - dlqs

    referral = users["relais-referral"]
    assert readable(referral) == {"referrals", "notifications", "sites", "privacy"} | outboxes
    assert writable(referral) == ({"visits", "referrals", "privacy"} | inboxes
                                  | {f"{t}.dlq" for t in readable(referral)})
    assert all(a.pattern_type == "literal" for a in referral.acls if a.resource_type == "topic")

    notifications = users["relais-notifications"]
    assert readable(notifications) == {"referrals", "sites", "privacy"}
    assert writable(notifications) == {"notifications", "privacy", "referrals.dlq", "sites.dlq", "privacy.dlq"}

    sites = users["relais-sites"]
    assert readable(sites) == set()
    assert writable(sites) == {"sites"}

    ops = users["relais-ops"]
    assert readable(ops) == dlqs
    assert writable(ops) == sources

    groups = {u.name: [(a.name, a.pattern_type) for a in u.acls if a.resource_type == "group"]
              for u in (referral, notifications, sites, ops)}
    assert groups == {"relais-referral": [("relais-referral-", "prefix")],
                      "relais-notifications": [("relais-notifications", "prefix")],
                      "relais-sites": [], "relais-ops": []}


def test_privacy_is_for_the_platform_only(topics: TopicsFile, users: dict[str, generate.User]) -> None:
    # Erasure and access requests and answers (sealed personal data): short-lived, and
    # no operator may read or write them.
    spec = {t.name: t for t in topics.topics}["privacy"]
    assert spec.partitions == 3
    assert spec.config["retention.ms"] == "604800000"   # 7 days
    on_privacy = {u.name: topic_ops(u)["privacy"] for u in users.values() if "privacy" in topic_ops(u)}
    assert on_privacy == {"relais-referral": {"Read", "Write", "Describe"},
                          "relais-notifications": {"Read", "Write", "Describe"},
                          "relais-ops": {"Write", "Describe"}}   # replay of its dead letters
    for code in topics.operators:
        names = {a.name for a in users[f"operator-{code}"].acls}
        assert not {n for n in names if n.startswith("privacy")}, code


def test_service_groups_are_covered_by_their_prefix() -> None:
    from relais_notifications.service_layer import handlers
    assert handlers.GROUP.startswith("relais-notifications")
    source = (ROOT / "services/referral/relais_referral/app.py").read_text()
    groups = re.findall(r'consume\(\s*"([^"]+)"', source)
    assert groups and all(g.startswith("relais-referral-") for g in groups)


def test_table_typo_is_refused(topics: TopicsFile) -> None:
    with pytest.raises(ValueError, match="not in the topics file"):
        generate.platform_user(generate.PlatformUser("x", "typo", reads=("referral",)), topics)


# --------------------------------------------------------------------------- files

def test_every_topic_has_a_kafka_topic(topics: TopicsFile, files: dict[str, str]) -> None:
    docs = list(yaml.safe_load_all(files[generate.TOPICS_FILE]))
    assert all(d["apiVersion"] == "kafka.strimzi.io/v1beta2" and d["kind"] == "KafkaTopic" for d in docs)
    by_name = {d["spec"]["topicName"]: d for d in docs}
    assert len(by_name) == len(docs)
    assert set(by_name) == set(topics.names())
    for spec in topics.topics:
        doc = by_name[spec.name]
        assert doc["metadata"]["labels"] == {"strimzi.io/cluster": "relais"}
        assert doc["spec"]["partitions"] == spec.partitions
        assert doc["spec"]["replicas"] == spec.replication_factor
        assert doc["spec"]["config"] == spec.config
    assert by_name["sites"]["spec"]["config"]["cleanup.policy"] == "compact"
    assert "cleanup.policy" not in by_name["sites.dlq"]["spec"]["config"]


def test_kafka_users_match_the_model(users: dict[str, generate.User], files: dict[str, str]) -> None:
    docs = list(yaml.safe_load_all(files[generate.USERS_FILE]))
    assert [d["metadata"]["name"] for d in docs] == list(users)
    for doc in docs:
        assert doc["apiVersion"] == "kafka.strimzi.io/v1beta2" and doc["kind"] == "KafkaUser"
        assert doc["metadata"]["labels"] == {"strimzi.io/cluster": "relais"}
        assert doc["spec"]["authentication"] == {"type": "scram-sha-512"}
        assert doc["spec"]["authorization"]["type"] == "simple"
        user = users[doc["metadata"]["name"]]
        acls = [(a["resource"]["type"], a["resource"]["name"], a["resource"]["patternType"],
                 tuple(a["operations"])) for a in doc["spec"]["authorization"]["acls"]]
        assert acls == [(a.resource_type, a.name, a.pattern_type, a.operations) for a in user.acls]


def test_namespace_and_cluster_options() -> None:
    files = generate.render(TOPICS_PATH, namespace="prod", cluster="kafka-prod")
    for name in (generate.TOPICS_FILE, generate.USERS_FILE):
        for doc in yaml.safe_load_all(files[name]):
            assert doc["metadata"]["namespace"] == "prod"
            assert doc["metadata"]["labels"]["strimzi.io/cluster"] == "kafka-prod"


def test_committed_output_is_up_to_date(files: dict[str, str]) -> None:
    assert generate.stale_files(GENERATED, files) == []
    assert generate.main(["--out", str(GENERATED), "--check"]) == 0


def test_check_mode_detects_stale_output(tmp_path: Path, files: dict[str, str],
                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert generate.main(["--out", str(tmp_path), "--check"]) == 1
    assert generate.main(["--out", str(tmp_path)]) == 0
    assert generate.main(["--out", str(tmp_path), "--check"]) == 0
    (tmp_path / generate.USERS_FILE).write_text(files[generate.USERS_FILE] + "# edited\n")
    (tmp_path / "strimzi" / "extra.yaml").write_text("{}\n")
    capsys.readouterr()
    assert generate.main(["--out", str(tmp_path), "--check"]) == 1
    err = capsys.readouterr().err
    assert "strimzi/users.yaml: differs" in err and "strimzi/extra.yaml: not produced" in err


def test_acls_script(users: dict[str, generate.User], files: dict[str, str]) -> None:
    script = files[generate.SCRIPT_FILE]
    lines = script.splitlines()
    assert lines[0] == "#!/usr/bin/env bash"
    assert "GENERATED" in script and "deploy/topics.yaml" in script
    assert "set -euo pipefail" in lines
    assert not re.search(r"password=(?!\$\{KAFKA_PASSWORD_[A-Z0-9_]+\}\])", script)

    add_lines = [line for line in lines if " --add " in line]
    assert all(line.startswith("kafka-acls.sh ") for line in add_lines)
    assert len(add_lines) == sum(len(u.acls) for u in users.values())
    # Every ACL of the model has exactly its line.
    expected = set()
    for user in users.values():
        for acl in user.acls:
            pattern = "literal" if acl.pattern_type == "literal" else "prefixed"
            expected.add((user.name, acl.resource_type, acl.name, pattern, acl.operations))
    seen = set()
    for line in add_lines:
        argv = shlex.split(line)
        principal = argv[argv.index("--allow-principal") + 1]
        kind = "topic" if "--topic" in argv else "group"
        name = argv[argv.index(f"--{kind}") + 1]
        pattern = argv[argv.index("--resource-pattern-type") + 1]
        ops = tuple(argv[i + 1] for i, a in enumerate(argv) if a == "--operation")
        assert principal.startswith("User:")
        seen.add((principal.removeprefix("User:"), kind, name, pattern, ops))
    assert seen == expected

    scram = [line for line in lines if line.startswith("kafka-configs.sh ")]
    assert len(scram) == len(users)
    for user in users.values():
        env = user.password_env
        assert f'"SCRAM-SHA-512=[password=${{{env}}}]" --entity-type users --entity-name {user.name}' in script
        assert f': "${{{env}:?' in script
