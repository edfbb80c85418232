"""Kafka clients with the settings that do not lose data, set on purpose:
producers wait for every in-sync replica (`acks=all`); consumers commit by hand,
after the work. The embedded broker refuses idempotent producers, so duplicates
are dropped by consumers on `ce_id` instead."""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer


def producer(bootstrap: str, **overrides: object) -> AIOKafkaProducer:
    options: dict[str, object] = {
        "bootstrap_servers": bootstrap,
        "acks": "all",
        "enable_idempotence": False,
        "linger_ms": 2,
        "request_timeout_ms": 30000,
        "retry_backoff_ms": 200,
    }
    options.update(overrides)
    return AIOKafkaProducer(**options)  # type: ignore[arg-type]


def consumer(bootstrap: str, group_id: str, *topics: str, **overrides: object) -> AIOKafkaConsumer:
    options: dict[str, object] = {
        "bootstrap_servers": bootstrap,
        "group_id": group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "isolation_level": "read_committed",
        "session_timeout_ms": 10000,
        "heartbeat_interval_ms": 1000,
        "rebalance_timeout_ms": 10000,
        "max_poll_interval_ms": 300000,
        # tansu holds a fetch for this long even when records arrive meanwhile (Apache
        # Kafka answers at once): the wait bounds the latency of every hop.
        "fetch_max_wait_ms": 25,
    }
    options.update(overrides)
    return AIOKafkaConsumer(*topics, **options)  # type: ignore[arg-type]
