"""Fixtures for the real broker and the real PostgreSQL.

PostgreSQL: `RELAIS_TEST_DATABASE_URL` if set; else a testcontainers PostgreSQL when a
Docker engine answers (or `RELAIS_TEST_DOCKER=1`); else the embedded `pgserver`.
Broker: a testcontainers Apache Kafka under the same rule; else an embedded tansu
started for the test module on a free port. Every test gets a database of its own."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
import pytest_asyncio

from relais_kit.embedded import free_port, start_broker, start_postgres
from relais_kit.topics import create_topics, load_topics

ROOT = Path(__file__).resolve().parents[1]

# The tests run at any hour: the SMS of a service started in the test process are not
# held by quiet hours (deploy/local does the same for the platforms it starts). The
# quiet-hours tests give the delivery loop its window and clock themselves.
os.environ.setdefault("RELAIS_SMS_QUIET_HOURS", "")


def docker_wanted() -> bool:
    if os.environ.get("RELAIS_TEST_DOCKER") in ("1", "0"):
        return os.environ["RELAIS_TEST_DOCKER"] == "1"
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=5).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    if url := os.environ.get("RELAIS_TEST_DATABASE_URL"):
        yield url
    elif docker_wanted():
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:16-alpine", driver=None) as pg:
            yield pg.get_connection_url()
    else:
        # A folder per test session: parallel sessions must not share a server.
        data_dir = Path(tempfile.mkdtemp(prefix="relais-test-pg-"))
        server, url = start_postgres(data_dir)
        yield url
        server.cleanup()
        shutil.rmtree(data_dir, ignore_errors=True)


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


async def _fresh_database(server_url: str) -> AsyncIterator[str]:
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    yield with_database(server_url, name)
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest_asyncio.fixture
async def database_url(postgres_server_url: str) -> AsyncIterator[str]:
    """A database of the test's own."""
    async for url in _fresh_database(postgres_server_url):
        yield url


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def module_database_url(postgres_server_url: str) -> AsyncIterator[str]:
    """A database for a test module whose services start once for all its tests."""
    async for url in _fresh_database(postgres_server_url):
        yield url


@pytest.fixture(scope="module")
def kafka_bootstrap() -> Iterator[str]:
    topics = load_topics(ROOT / "deploy" / "topics.yaml")
    if docker_wanted():
        from testcontainers.community.kafka import KafkaContainer

        # Confluent's packaging of Apache Kafka, in KRaft mode (no ZooKeeper).
        with KafkaContainer("confluentinc/cp-kafka:7.6.0").with_kraft() as kafka:
            bootstrap = kafka.get_bootstrap_server()
            asyncio.run(create_topics(bootstrap, topics, replication_factor=1))
            yield bootstrap
        return
    port = free_port()
    log_path = ROOT / ".data" / "test-logs" / f"tansu-{port}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        broker = start_broker(port, log)
        try:
            bootstrap = f"127.0.0.1:{port}"
            asyncio.run(create_topics(bootstrap, topics, replication_factor=1))
            yield bootstrap
        finally:
            broker.kill()
            broker.wait()
