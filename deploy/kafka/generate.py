"""Per-operator Kafka isolation, generated from the one topics file (`deploy/topics.yaml`).

Writes, under --out:
  strimzi/topics.yaml  one KafkaTopic per topic of the file, dead-letter twins included;
  strimzi/users.yaml   one KafkaUser (SCRAM-SHA-512, simple authorization) per operator,
                       per platform service and per operator desk, with its ACLs;
  strimzi/kustomization.yaml  both, for `kubectl apply -k` (deploy/k8s/ includes it);
  acls.sh              the same users and ACLs for a Kafka outside Kubernetes
                       (kafka-configs.sh + kafka-acls.sh), passwords read from env vars.

An operator's user reads its own inbox, writes its own outbox and uses its own consumer
group prefix, nothing else. The platform users come from the small table PLATFORM_USERS;
each operator desk (`relais-desk-<code>`, run by the platform for an operator without IT)
has the operator's topic rights and only the desk's own consumer group. Platform users
and desks, not operators, may also create (and describe the configuration of) the topics
they read or write: after a broker loss the platform recreates its topics from the
topics file. The simulator is not a production principal: it has no user here.

    python deploy/kafka/generate.py --out deploy/kafka/generated
    python deploy/kafka/generate.py --out deploy/kafka/generated --check   # CI: stale?
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from relais_kit.topics import TopicsFile, load_topics

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_TOPICS = REPO_ROOT / "deploy" / "topics.yaml"
DEFAULT_OUT = Path(__file__).resolve().parent / "generated"
DLQ_SUFFIX = ".dlq"

STRIMZI_API = "kafka.strimzi.io/v1beta2"
TOPICS_FILE = "strimzi/topics.yaml"
USERS_FILE = "strimzi/users.yaml"
KUSTOMIZATION_FILE = "strimzi/kustomization.yaml"
SCRIPT_FILE = "acls.sh"

# Canonical order of operations inside one ACL entry.
OPERATIONS = ("Read", "Write", "Create", "Describe", "DescribeConfigs")
# What a platform principal needs on a topic to recreate it from the topics file after a
# broker loss: CreateTopics, and DescribeConfigs to compare a surviving topic's config.
RECREATE = ("Create", "DescribeConfigs")
_K8S_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


# --------------------------------------------------------------------------- the table

@dataclass(frozen=True)
class PlatformUser:
    """A platform service's user. Topic entries may use the placeholders
    `{operator}` (one name per operator code), `{dlq}` (every dead-letter topic) and
    `{source}` (every topic that is not a dead-letter topic); every expanded name must
    be a topic of the file. `dead_letters_of_reads`: the user may write `<topic>.dlq`
    for each topic it reads (a consumer dead-letters what it refuses).
    `recreates_topics`: Create and DescribeConfigs on every topic it reads or writes.
    `schema`: the service's PostgreSQL schema, whose broker-loss marker (see
    `marker_acls`) this user leaves on the broker. `describes_groups`: Describe on every
    consumer group (list them, describe them, read their committed offsets), nothing
    more on any group: it never joins one nor commits."""

    name: str
    purpose: str
    reads: tuple[str, ...] = ()
    writes: tuple[str, ...] = ()
    group_prefix: str | None = None
    dead_letters_of_reads: bool = False
    recreates_topics: bool = True
    schema: str | None = None
    describes_groups: bool = False


PLATFORM_USERS: tuple[PlatformUser, ...] = (
    PlatformUser(
        "relais-referral",
        "referral service: owns visits and referrals, routes to each operator inbox, "
        "reads operator outboxes, notifications and sites; writes privacy requests and "
        "its ops tooling reads the answers",
        reads=("referrals", "notifications", "sites", "privacy", "operator.{operator}.outbox"),
        writes=("visits", "referrals", "privacy", "operator.{operator}.inbox"),
        group_prefix="relais-referral-",
        dead_letters_of_reads=True,
        schema="referral",
    ),
    PlatformUser(
        "relais-notifications",
        "notifications service: reads referrals, writes notifications; reads sites (who "
        "may read a site's deliveries); reads privacy requests and writes its answers",
        reads=("referrals", "sites", "privacy"),
        writes=("notifications", "privacy"),
        group_prefix="relais-notifications",
        dead_letters_of_reads=True,
        schema="notifications",
    ),
    PlatformUser(
        "relais-sites",
        "sites service: writes the compacted sites topic",
        writes=("sites",),
        schema="sites",
    ),
    PlatformUser(
        "relais-ops",
        "operations (python -m relais_kit.dlq, python -m relais_kit.topics, python -m relais_ops): "
        "reads every dead-letter topic and replays a record onto its source topic, (re)creates the "
        "topics; the lag monitor describes every consumer group and its offsets and reads the "
        "oldest unread record of each (its time only) and each partition's end, on every topic; "
        "reads without a consumer group, so Describe only on groups",
        reads=("{dlq}", "{source}"),
        writes=("{source}",),
        describes_groups=True,
    ),
)


# --------------------------------------------------------------------------- the model

@dataclass(frozen=True)
class Acl:
    resource_type: str          # "topic" | "group"
    name: str
    pattern_type: str           # "literal" | "prefix" (Strimzi spelling)
    operations: tuple[str, ...]


@dataclass(frozen=True)
class User:
    name: str
    purpose: str
    acls: tuple[Acl, ...]
    operator: str | None = None      # an operator's own user (outside the platform)
    desk: str | None = None          # the desk the platform runs for this operator

    def on_topic(self, topic: str) -> frozenset[str]:
        """The operations this user may do on `topic` (every topic ACL is literal)."""
        return frozenset(op for a in self.acls if a.resource_type == "topic" and a.name == topic
                         for op in a.operations)

    @property
    def password_env(self) -> str:
        return "KAFKA_PASSWORD_" + re.sub(r"[^A-Z0-9]", "_", self.name.upper())


def operator_user_name(code: str) -> str:
    return f"operator-{code}"


def operator_group_prefix(code: str) -> str:
    return f"operator-{code}-"


def desk_user_name(code: str) -> str:
    return f"relais-desk-{code}"


def desk_group(code: str) -> str:
    """The desk's consumer group (services/desk: `inbox.group`), inside its operator's
    prefix: the desk consumes as that operator would."""
    return f"{operator_group_prefix(code)}desk"


def is_dlq(topic: str) -> bool:
    return topic.endswith(DLQ_SUFFIX)


def marker_group(schema: str) -> str:
    """The consumer group in which a service's schema leaves its broker-loss marker
    (relais_kit.recovery.BrokerWatch)."""
    return f"relais-{schema}-broker-marker"


def marker_topic(reads: Iterable[str], writes: Iterable[str]) -> str:
    """The topic whose partition 0 carries the marker: the first, by name, of the
    topics the service reads or publishes through its outbox (relais_kit.recovery
    takes `min` of them; dead letters never go through an outbox)."""
    return min(n for n in (*reads, *writes) if not is_dlq(n))


def marker_acls(schema: str, reads: list[str], writes: list[str], group_prefix: str | None) -> list[Acl]:
    """Committing the marker (OffsetCommit) needs Read on its group and on its topic;
    reading it back (OffsetFetch), Describe on both. So the marker's topic is readable
    even when the service only writes it (sites: `sites`; notifications: `notifications`),
    and its group is granted unless the service's group prefix covers it."""
    acls = []
    topic = marker_topic(reads, writes)
    if topic not in reads:
        reads.append(topic)
    group = marker_group(schema)
    if not (group_prefix and group.startswith(group_prefix)):
        acls.append(Acl("group", group, "literal", ("Read",)))
    return acls


def _topic_acls(reads: Iterable[str], writes: Iterable[str], *, recreates: bool = False) -> list[Acl]:
    """One literal ACL per topic, its operations merged (read and write on one topic
    give one entry Read, Write, Describe); `recreates` adds Create, DescribeConfigs."""
    ops: dict[str, set[str]] = {}
    for name in reads:
        ops.setdefault(name, set()).update(("Read", "Describe"))
    for name in writes:
        ops.setdefault(name, set()).update(("Write", "Describe"))
    if recreates:
        for wanted in ops.values():
            wanted.update(RECREATE)
    return [Acl("topic", name, "literal", tuple(o for o in OPERATIONS if o in wanted))
            for name, wanted in ops.items()]


def expand(entry: str, topics: TopicsFile) -> list[str]:
    known = topics.names()
    if entry == "{dlq}":
        names = [n for n in known if is_dlq(n)]
    elif entry == "{source}":
        names = [n for n in known if not is_dlq(n)]
    elif "{operator}" in entry:
        names = [entry.format(operator=o) for o in topics.operators]
    else:
        names = [entry]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"ACL table names topic(s) not in the topics file: {', '.join(unknown)}")
    return names


def _operator_topics(code: str, topics: TopicsFile) -> tuple[list[str], list[str]]:
    """What an operator (or its desk) reads and writes. Write-only on its inbox's
    dead-letter twin: a consumer that refuses a record sets it aside there with the
    reason (the operator desk does), for Relais ops to read."""
    return [topics.inbox(code)], [topics.outbox(code), topics.inbox(code) + DLQ_SUFFIX]


def operator_user(code: str, topics: TopicsFile) -> User:
    acls = _topic_acls(*_operator_topics(code, topics))
    acls.append(Acl("group", operator_group_prefix(code), "prefix", ("Read",)))
    return User(operator_user_name(code),
                f"operator {code}: reads its inbox, writes its outbox (and its inbox's dead letters), nothing else",
                tuple(acls), operator=code)


def desk_schema(code: str) -> str:
    """The desk's schema (services/desk: `DeskSettings.schema_name`, by default)."""
    return f"desk_{code.replace('-', '_')}"


def desk_user(code: str, topics: TopicsFile) -> User:
    reads, writes = _operator_topics(code, topics)
    markers = marker_acls(desk_schema(code), reads, writes, None)
    acls = _topic_acls(reads, writes, recreates=True)
    acls.append(Acl("group", desk_group(code), "literal", ("Read",)))
    acls += markers
    return User(desk_user_name(code),
                f"operator desk of {code} (python -m relais_desk, RELAIS_DESK_OPERATOR={code}): "
                f"reads its inbox, writes its outbox and its inbox's dead letters, "
                f"one consumer group {desk_group(code)}",
                tuple(acls), desk=code)


def platform_user(spec: PlatformUser, topics: TopicsFile) -> User:
    reads = [n for e in spec.reads for n in expand(e, topics)]
    writes = [n for e in spec.writes for n in expand(e, topics)]
    if spec.dead_letters_of_reads:
        writes += [n + DLQ_SUFFIX for n in reads if not is_dlq(n)]
        missing = [n for n in writes if n not in topics.names()]
        if missing:
            raise ValueError(f"{spec.name}: no dead-letter topic for {', '.join(missing)}")
    markers = marker_acls(spec.schema, reads, writes, spec.group_prefix) if spec.schema else []
    acls = _topic_acls(reads, writes, recreates=spec.recreates_topics)
    if spec.group_prefix:
        acls.append(Acl("group", spec.group_prefix, "prefix", ("Read",)))
    if spec.describes_groups:
        acls.append(Acl("group", "*", "literal", ("Describe",)))  # Kafka's wildcard: every group
    acls += markers
    return User(spec.name, spec.purpose, tuple(acls))


def build_users(topics: TopicsFile) -> list[User]:
    users = [operator_user(code, topics) for code in topics.operators]
    users += [platform_user(spec, topics) for spec in PLATFORM_USERS]
    users += [desk_user(code, topics) for code in topics.operators]
    names = [u.name for u in users]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate user names: {names}")
    return users


# --------------------------------------------------------------------------- rendering

def _header(source: str, comment: str = "#") -> str:
    return (f"{comment} GENERATED by deploy/kafka/generate.py from {source}: do not edit by hand.\n"
            f"{comment} Regenerate: python deploy/kafka/generate.py --out deploy/kafka/generated\n")


def _k8s_name(name: str) -> str:
    if not _K8S_NAME.match(name) or len(name) > 253:
        raise ValueError(f"{name!r} is not a valid Kubernetes resource name")
    return name


def _metadata(name: str, namespace: str, cluster: str,
              annotations: Mapping[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": _k8s_name(name), "namespace": namespace,
                            "labels": {"strimzi.io/cluster": cluster}}
    if annotations:
        meta["annotations"] = dict(annotations)
    return meta


def kafka_topics(topics: TopicsFile, namespace: str, cluster: str) -> list[dict[str, Any]]:
    return [{
        "apiVersion": STRIMZI_API,
        "kind": "KafkaTopic",
        "metadata": _metadata(t.name, namespace, cluster),
        "spec": {"topicName": t.name, "partitions": t.partitions,
                 "replicas": t.replication_factor, "config": dict(t.config)},
    } for t in topics.topics]


def kafka_users(users: Iterable[User], namespace: str, cluster: str) -> list[dict[str, Any]]:
    return [{
        "apiVersion": STRIMZI_API,
        "kind": "KafkaUser",
        "metadata": _metadata(u.name, namespace, cluster,
                              {"relais.franceservices.fr/purpose": u.purpose}),
        "spec": {
            "authentication": {"type": "scram-sha-512"},
            "authorization": {"type": "simple", "acls": [{
                "resource": {"type": a.resource_type, "name": a.name, "patternType": a.pattern_type},
                "operations": list(a.operations),
                "host": "*",
            } for a in u.acls]},
        },
    } for u in users]


def _yaml_documents(docs: list[dict[str, Any]], source: str) -> str:
    body = yaml.safe_dump_all(docs, sort_keys=False, default_flow_style=False,
                              explicit_start=True, width=1000)
    return _header(source) + body


_CLI_PATTERN = {"literal": "literal", "prefix": "prefixed"}


def acl_command(user: User, acl: Acl) -> str:
    ops = " ".join(f"--operation {o}" for o in acl.operations)
    return (f'kafka-acls.sh --bootstrap-server "$BOOTSTRAP" --command-config "$ADMIN_CONFIG" '
            f"--add --allow-principal User:{user.name} --allow-host '*' "
            f"--{acl.resource_type} '{acl.name}' --resource-pattern-type {_CLI_PATTERN[acl.pattern_type]} {ops}")


def scram_command(user: User) -> str:
    env = user.password_env
    return (f'kafka-configs.sh --bootstrap-server "$BOOTSTRAP" --command-config "$ADMIN_CONFIG" '
            f'--alter --add-config "SCRAM-SHA-512=[password=${{{env}}}]" '
            f"--entity-type users --entity-name {user.name}")


def acls_script(users: list[User], source: str) -> str:
    envs = [u.password_env for u in users]
    lines = [
        "#!/usr/bin/env bash",
        _header(source).rstrip("\n"),
        "#",
        "# Per-operator isolation on a Kafka outside Kubernetes: one SCRAM-SHA-512 user per",
        "# operator, per platform service and per operator desk, and its ACLs (the same as",
        "# strimzi/users.yaml).",
        "# Needs: kafka-configs.sh and kafka-acls.sh on PATH, a broker with an authorizer,",
        "#   BOOTSTRAP     the brokers, e.g. kafka-1:9093",
        "#   ADMIN_CONFIG  a client properties file with admin (super user) credentials",
        "#   one password per user, in the env vars below (never written here).",
        "# Topics are created beforehand: python -m relais_kit.topics create.",
        "set -euo pipefail",
        "",
        ': "${BOOTSTRAP:?set BOOTSTRAP to the bootstrap servers}"',
        ': "${ADMIN_CONFIG:?set ADMIN_CONFIG to an admin client properties file}"',
        *[f': "${{{e}:?set {e}}}"' for e in envs],
    ]
    for user in users:
        lines += ["", f"# {user.name}: {user.purpose}", scram_command(user)]
        lines += [acl_command(user, acl) for acl in user.acls]
    return "\n".join(lines) + "\n"


def kustomization(source: str) -> str:
    """Lets deploy/k8s/ include this folder (kustomize loads other folders only when
    they are kustomizations), so the resources are used as generated, never copied."""
    doc = {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
           "resources": [Path(TOPICS_FILE).name, Path(USERS_FILE).name]}
    return _header(source) + yaml.safe_dump(doc, sort_keys=False)


def source_label(topics_path: Path) -> str:
    try:
        return topics_path.resolve().relative_to(REPO_ROOT).as_posix()
    except ValueError:
        return topics_path.name


def render(topics_path: Path = DEFAULT_TOPICS, *, namespace: str = "relais",
           cluster: str = "relais") -> dict[str, str]:
    """Every generated file, by path relative to --out."""
    topics = load_topics(topics_path)
    users = build_users(topics)
    source = source_label(topics_path)
    return {
        TOPICS_FILE: _yaml_documents(kafka_topics(topics, namespace, cluster), source),
        USERS_FILE: _yaml_documents(kafka_users(users, namespace, cluster), source),
        KUSTOMIZATION_FILE: kustomization(source),
        SCRIPT_FILE: acls_script(users, source),
    }


# --------------------------------------------------------------------------- CLI

def stale_files(out: Path, files: Mapping[str, str]) -> list[str]:
    """What differs between `files` and what is under `out` (empty: up to date)."""
    problems = []
    for rel, content in files.items():
        path = out / rel
        if not path.is_file():
            problems.append(f"{rel}: missing")
        elif path.read_text() != content:
            problems.append(f"{rel}: differs from what the generator produces")
    if out.is_dir():
        for path in sorted(p for p in out.rglob("*") if p.is_file()):
            rel = path.relative_to(out).as_posix()
            if rel not in files:
                problems.append(f"{rel}: not produced by the generator")
    return problems


def write(out: Path, files: Mapping[str, str]) -> None:
    for rel, content in files.items():
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
        if rel.endswith(".sh"):
            path.chmod(0o755)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--topics", type=Path, default=DEFAULT_TOPICS, help="the topics file")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where the files go")
    parser.add_argument("--namespace", default="relais", help="Kubernetes namespace")
    parser.add_argument("--cluster", default="relais", help="Strimzi Kafka cluster name")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if the files under --out are stale")
    args = parser.parse_args(argv)
    files = render(args.topics, namespace=args.namespace, cluster=args.cluster)
    if args.check:
        problems = stale_files(args.out, files)
        if problems:
            print(f"Kafka ACL files under {args.out} are stale:", file=sys.stderr)
            for p in problems:
                print(f"  {p}", file=sys.stderr)
            print("Regenerate: python deploy/kafka/generate.py "
                  f"--out {args.out} --namespace {args.namespace} --cluster {args.cluster}",
                  file=sys.stderr)
            return 1
        print(f"Kafka ACL files under {args.out} are up to date ({len(files)} files)")
        return 0
    write(args.out, files)
    print(f"wrote {', '.join(sorted(files))} under {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
