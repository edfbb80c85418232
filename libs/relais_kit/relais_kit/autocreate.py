"""Our Kafka clients never create a topic by asking for it.

A broker with automatic topic creation (tansu always, Apache Kafka unless
`auto.create.topics.enable=false`) creates an unknown topic the moment a client asks
for its metadata, with the broker's default partitions and configuration (tansu: 4
partitions, no compaction). After the broker is lost, a producer or a consumer asking
before `deploy/topics.yaml` is applied again would create `sites` without compaction
or `notifications` with 4 partitions instead of 3, for good. aiokafka sends metadata
requests that allow it and has no setting to say otherwise, so the request it builds
is made to say `allow_auto_topic_creation=false` (Metadata v4+; the brokers we use
speak it). A client then waits for a missing topic (a producer's send fails after
its request timeout and the outbox relay tries again) until it is created from the
file (relais_kit.recovery, the launcher, `python -m relais_kit.topics create`).

Imported by relais_kit.kafka: it applies to every client of the process."""

from __future__ import annotations

import functools

import aiokafka.client
from aiokafka.protocol.metadata import MetadataRequest


def never_create_topics() -> None:
    if getattr(aiokafka.client.MetadataRequest, "relais_no_autocreate", False):
        return
    request = functools.partial(MetadataRequest, allow_auto_topic_creation=False)
    request.relais_no_autocreate = True  # type: ignore[attr-defined]
    aiokafka.client.MetadataRequest = request  # type: ignore[misc]


never_create_topics()
