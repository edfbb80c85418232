"""The topics of `deploy/topics.yaml`, expanded per operator, each with its dead-letter
twin; `python -m relais_kit.topics create` creates the missing ones."""

from __future__ import annotations

import argparse
import asyncio
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from aiokafka.admin import NewTopic

from relais_kit import kafka
from relais_kit.settings import PlatformSettings


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication_factor: int
    config: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TopicsFile:
    operators: tuple[str, ...]
    topics: tuple[TopicSpec, ...]

    def names(self) -> list[str]:
        return [t.name for t in self.topics]

    def inbox(self, operator: str) -> str:
        return f"operator.{operator}.inbox"

    def outbox(self, operator: str) -> str:
        return f"operator.{operator}.outbox"


def load_topics(path: Path) -> TopicsFile:
    doc = yaml.safe_load(path.read_text())
    operators = tuple(doc["operators"])
    defaults = doc.get("defaults", {})
    dlq_config = {k: str(v) for k, v in (doc.get("dead_letters") or {}).items()}
    specs: list[TopicSpec] = []
    for entry in doc["topics"]:
        names = ([entry["name"].format(operator=o) for o in operators]
                 if "{operator}" in entry["name"] else [entry["name"]])
        config = {**defaults.get("config", {}), **(entry.get("config") or {})}
        config = {k: str(v) for k, v in config.items()}
        partitions = int(entry.get("partitions", defaults.get("partitions", 3)))
        replication = int(entry.get("replication_factor", defaults.get("replication_factor", 1)))
        for name in names:
            specs.append(TopicSpec(name, partitions, replication, config))
            dlq = {**{k: v for k, v in config.items() if k != "cleanup.policy"}, **dlq_config}
            specs.append(TopicSpec(f"{name}.dlq", partitions, replication, dlq))
    return TopicsFile(operators, tuple(specs))


async def create_topics(bootstrap: str, topics: TopicsFile, *, replication_factor: int | None = None,
                        security: kafka.KafkaSecurity | None = None) -> list[str]:
    """Creates the topics that do not exist yet; returns the names created."""
    admin = kafka.admin(bootstrap, security)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in topics.topics if t.name not in existing]
        if missing:
            await admin.create_topics([
                NewTopic(t.name, t.partitions,
                         replication_factor or t.replication_factor,
                         topic_configs=_broker_config(t.config, replication_factor))
                for t in missing
            ])
        return [t.name for t in missing]
    finally:
        await admin.close()


def _broker_config(config: dict[str, str], replication_factor: int | None) -> dict[str, str]:
    if replication_factor == 1:
        # A single broker cannot honour min.insync.replicas=2.
        return {k: v for k, v in config.items() if k != "min.insync.replicas"}
    return config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("command", choices=["create", "list"])
    parser.add_argument("--replication-factor", type=int, default=None,
                        help="override the file's replication factor (1 for a single broker)")
    args = parser.parse_args()
    settings = PlatformSettings()
    topics = load_topics(settings.topics_file)
    if args.command == "list":
        for t in topics.topics:
            print(f"{t.name}\tpartitions={t.partitions}\t{t.config}")
        return
    created = asyncio.run(create_topics(settings.kafka_bootstrap_servers, topics,
                                        replication_factor=args.replication_factor))
    print(f"{len(created)} topic(s) created, {len(topics.topics) - len(created)} already there")


if __name__ == "__main__":
    main()
