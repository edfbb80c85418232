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
    groups = [(u, a) for u in users.values() for a in u.acls if a.resource_type == "group"]
    names = [a.name for _, a in groups]
    assert len(set(names)) == len(names)
    for user, acl in groups:
        for other, prefix in groups:
            if prefix.pattern_type != "prefix" or other is user or not acl.name.startswith(prefix.name):
                continue
            # The one overlap allowed: a desk's group inside its own operator's prefix
            # (the desk plays that operator), never another operator's.
            assert user.desk is not None and other.operator == user.desk, \
                f"group prefix {prefix.name!r} of {other.name} also covers {acl.name!r} of {user.name}"


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
    # `notifications`: only to leave its broker-loss marker there (see test_broker_loss_markers).
    assert readable(notifications) == {"referrals", "sites", "privacy", "notifications"}
    assert writable(notifications) == {"notifications", "privacy", "referrals.dlq", "sites.dlq", "privacy.dlq"}

    sites = users["relais-sites"]
    assert readable(sites) == {"sites"}   # its own topic, for its broker-loss marker only
    assert writable(sites) == {"sites"}

    ops = users["relais-ops"]
    # Every topic: the dead letters to list and replay them, every other topic for the lag
    # monitor (each partition's end, the time of the oldest unread record).
    assert readable(ops) == dlqs | sources
    assert writable(ops) == sources

    groups = {u.name: [(a.name, a.pattern_type) for a in u.acls if a.resource_type == "group"]
              for u in (referral, notifications, sites, ops)}
    assert groups == {"relais-referral": [("relais-referral-", "prefix")],
                      "relais-notifications": [("relais-notifications", "prefix")],
                      "relais-sites": [("relais-sites-broker-marker", "literal")],
                      "relais-ops": [("*", "literal")]}
    # Every group, to describe it and read its committed offsets; never to join or commit.
    assert [a.operations for a in ops.acls if a.resource_type == "group"] == [("Describe",)]


def test_privacy_is_for_the_platform_only(topics: TopicsFile, users: dict[str, generate.User]) -> None:
    # Erasure and access requests and answers (sealed personal data): short-lived, and
    # no operator may read or write them.
    spec = {t.name: t for t in topics.topics}["privacy"]
    assert spec.partitions == 3
    assert spec.config["retention.ms"] == "604800000"   # 7 days
    on_privacy = {u.name: topic_ops(u)["privacy"] for u in users.values() if "privacy" in topic_ops(u)}
    recreate = {"Create", "DescribeConfigs"}
    assert on_privacy == {"relais-referral": {"Read", "Write", "Describe"} | recreate,
                          "relais-notifications": {"Read", "Write", "Describe"} | recreate,
                          # replay of its dead letters; Read: the lag monitor (a record's time)
                          "relais-ops": {"Read", "Write", "Describe"} | recreate}
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


# --------------------------------------------------------------------------- least privilege

def holders(users: dict[str, generate.User], topic: str, operation: str) -> set[str]:
    return {u.name for u in users.values() if operation in u.on_topic(topic)}


def test_desk_users_play_their_operator_and_nothing_more(
        topics: TopicsFile, users: dict[str, generate.User]) -> None:
    from relais_desk.service_layer import actions, inbox
    for code in topics.operators:
        desk = users[f"relais-desk-{code}"]
        assert desk.desk == code and desk.operator is None
        assert topic_ops(desk) == {
            inbox.topic(code): {"Read", "Describe", "Create", "DescribeConfigs"},
            actions.topic(code): {"Write", "Describe", "Create", "DescribeConfigs"},
            f"{inbox.topic(code)}.dlq": {"Write", "Describe", "Create", "DescribeConfigs"},
        }
        groups = [(a.name, a.pattern_type, a.operations) for a in desk.acls if a.resource_type == "group"]
        schema = f"desk_{code.replace('-', '_')}"
        assert groups == [(inbox.group(code), "literal", ("Read",)),   # the group the desk really uses
                          (f"relais-{schema}-broker-marker", "literal", ("Read",))]


def test_nobody_but_the_referral_service_and_replay_writes_an_inbox(
        topics: TopicsFile, users: dict[str, generate.User]) -> None:
    # The attacker's case of the issue: a `referral.routed` forged on an inbox, or a
    # `referral.answered` forged on `referrals` (a mail sent as France Services).
    for code in topics.operators:
        assert holders(users, topics.inbox(code), "Write") == {"relais-referral", "relais-ops"}
    assert holders(users, "referrals", "Write") == {"relais-referral", "relais-ops"}
    assert "relais-notifications" not in {n for t in topics.names() if ".inbox" in t or ".outbox" in t
                                          for n in holders(users, t, "Write") | holders(users, t, "Read")}


def test_an_operators_inbox_is_read_by_that_operator_and_its_desk_only(
        topics: TopicsFile, users: dict[str, generate.User]) -> None:
    for code in topics.operators:
        # relais-ops: the lag monitor, which reads a record's time only (an operator that never
        # joins a group is still seen not reading its inbox).
        assert holders(users, topics.inbox(code), "Read") == {f"operator-{code}", f"relais-desk-{code}",
                                                             "relais-ops"}
        assert holders(users, topics.outbox(code), "Write") == {f"operator-{code}", f"relais-desk-{code}",
                                                               "relais-ops"}
        assert holders(users, topics.outbox(code), "Read") == {"relais-referral", "relais-ops"}


def test_sites_reads_nothing_and_notifications_cannot_read_what_it_has_no_use_for(
        users: dict[str, generate.User]) -> None:
    assert holders(users, "referrals", "Read") == {"relais-referral", "relais-notifications", "relais-ops"}
    assert "relais-sites" not in holders(users, "referrals", "Read")
    assert readable(users["relais-sites"]) == {"sites"}
    assert holders(users, "sites", "Write") == {"relais-sites", "relais-ops"}
    assert holders(users, "visits", "Read") == {"relais-ops"}   # no consumer yet: only the lag monitor
    assert holders(users, "notifications", "Write") == {"relais-notifications", "relais-ops"}


def test_dead_letters_are_read_by_ops_only(topics: TopicsFile, users: dict[str, generate.User]) -> None:
    for name in topics.names():
        if name.endswith(".dlq"):
            assert holders(users, name, "Read") == {"relais-ops"}, name


def test_only_platform_principals_may_create_topics_and_only_their_own(
        topics: TopicsFile, users: dict[str, generate.User]) -> None:
    for user in users.values():
        for name, ops in topic_ops(user).items():
            if user.operator is not None:   # an operator's own system, outside the platform
                assert not ops & {"Create", "DescribeConfigs"}, (user.name, name)
            else:   # recreate after a broker loss what it reads or writes, nothing else
                assert {"Create", "DescribeConfigs"} <= ops, (user.name, name)
                assert ops & {"Read", "Write"}, (user.name, name)


LAG_MONITOR_GROUPS = generate.Acl("group", "*", "literal", ("Describe",))


def test_no_cluster_rights_no_wildcards_no_all(users: dict[str, generate.User]) -> None:
    for user in users.values():
        for acl in user.acls:
            assert acl.resource_type in ("topic", "group"), (user.name, acl)
            if acl == LAG_MONITOR_GROUPS and user.name == "relais-ops":
                continue  # the one wildcard: Describe (never Read) on every group, for the lag monitor
            assert "*" not in acl.name and acl.name, (user.name, acl)
            assert not {"All", "Alter", "AlterConfigs", "Delete", "ClusterAction"} & set(acl.operations), \
                (user.name, acl)
            if acl.resource_type == "topic":
                assert acl.pattern_type == "literal", (user.name, acl)


def test_the_simulator_is_not_a_production_principal(users: dict[str, generate.User]) -> None:
    assert not [name for name in users if "simulator" in name]
    assert set(users) == ({f"operator-{c}" for c in generate.load_topics(TOPICS_PATH).operators}
                          | {f"relais-desk-{c}" for c in generate.load_topics(TOPICS_PATH).operators}
                          | {"relais-referral", "relais-notifications", "relais-sites", "relais-ops"})


def test_broker_loss_markers(topics: TopicsFile, users: dict[str, generate.User]) -> None:
    # relais_kit.recovery commits a marker offset in `relais-<schema>-broker-marker` on
    # partition 0 of one of the service's topics (recovery.marker_topic): OffsetCommit
    # needs Read on that group and that topic.
    from relais_desk.settings import DeskSettings
    from relais_kit import recovery
    schemas = {"relais-referral": "referral", "relais-notifications": "notifications", "relais-sites": "sites"}
    for code in topics.operators:
        desk = DeskSettings.model_construct(operator=code, db_schema=None)
        schemas[f"relais-desk-{code}"] = desk.schema_name
    for name, schema in schemas.items():
        user = users[name]
        own = [t for t, ops in topic_ops(user).items() if not t.endswith(".dlq") and ops & {"Read", "Write"}]
        readable_topics = {t for t in own if "Read" in user.on_topic(t)}
        marker = recovery.marker_topic(set(own), readable_topics)
        assert {"Read", "Describe"} <= user.on_topic(marker), (name, marker)
        group = recovery.marker_group(schema)
        assert any(a.resource_type == "group" and "Read" in a.operations
                   and (a.name == group or (a.pattern_type == "prefix" and group.startswith(a.name)))
                   for a in user.acls), (name, group)


def test_every_group_of_notifications_is_covered() -> None:
    from relais_notifications.service_layer import handlers, privacy, sites_view
    for group in (handlers.GROUP, privacy.GROUP, sites_view.GROUP):
        assert group.startswith("relais-notifications"), group


def test_a_widened_table_is_caught(topics: TopicsFile, monkeypatch: pytest.MonkeyPatch) -> None:
    # The checks above must fail on a table that gives too much: here, notifications
    # allowed to write every inbox.
    leaky = [generate.PlatformUser("relais-notifications", "leaky", reads=("referrals",),
                                   writes=("notifications", "operator.{operator}.inbox"))]
    monkeypatch.setattr(generate, "PLATFORM_USERS", tuple(
        leaky[0] if spec.name == "relais-notifications" else spec for spec in generate.PLATFORM_USERS))
    widened = {u.name: u for u in generate.build_users(topics)}
    with pytest.raises(AssertionError):
        test_nobody_but_the_referral_service_and_replay_writes_an_inbox(topics, widened)
