"""What every service process holds while it runs: the database pool, the producer,
the contract, the vault of its personal data, and supervised background loops
(outbox relay, re-sealing, consumers). A loop that fails is logged and started again;
stopping is bounded in time."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError
from fastapi import APIRouter, FastAPI
from fastapi.responses import JSONResponse

from relais_kit import kafka, metrics
from relais_kit.consumer import EventConsumer, Handler
from relais_kit.contract import Contract, load_contract
from relais_kit.db import DATABASE_AWAY, create_pool, migrate
from relais_kit.leadership import Leadership
from relais_kit.logs import log
from relais_kit.outbox import SEALED_DATA, OutboxRelay
from relais_kit.progress import Attempts, Progress
from relais_kit.recovery import BrokerWatch, LostHook
from relais_kit.resealing import Resealer, SealedColumn
from relais_kit.retention import Periods, RetentionJob, Step, check_periods, kit_steps
from relais_kit.settings import PlatformSettings
from relais_kit.topics import load_topics
from relais_kit.vault import FileKeyRing, Vault

Loop = Callable[[], Awaitable[None]]
T = TypeVar("T")


@dataclass
class Runtime:
    service: str
    settings: PlatformSettings
    contract: Contract
    pool: asyncpg.Pool
    producer: AIOKafkaProducer
    relay: OutboxRelay
    vault: Vault
    loops: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    attempts: dict[str, Attempts] = field(default_factory=dict)
    progress: dict[str, Progress] = field(default_factory=dict)
    consumers: list[EventConsumer] = field(default_factory=list)
    source_uri: str | None = None
    retention_steps: list[tuple[str, Step]] = field(default_factory=list)
    broker_watch: BrokerWatch | None = None
    on_broker_lost: list[LostHook] = field(default_factory=list)  # see relais_kit.recovery.LostHook

    @property
    def source(self) -> str:
        """`ce_source` of what this process publishes: `/relais/<service>`, unless it
        speaks for someone else (the operator desk: `/operators/<code>`)."""
        return self.source_uri or f"/relais/{self.service}"

    @classmethod
    async def start(cls, service: str, settings: PlatformSettings, migrations: Path | Sequence[Path],
                    *, schema: str | None = None, source: str | None = None,
                    sealed: Sequence[SealedColumn] = (),
                    retention: Callable[[Runtime], Sequence[tuple[str, Step]]] | None = None,
                    on_broker_lost: Callable[[Runtime], Sequence[LostHook]] | None = None) -> Runtime:
        """Waits for the database and the broker as long as it takes (callers run this
        in the background: see `serving`). `sealed`: the service's columns of
        personal data, kept under the current data key by the re-sealing loop;
        `retention`: the service's own steps of the retention job (the kit's run too);
        `on_broker_lost`: what the service writes once per broker loss, in the repair's
        transaction (relais_kit.recovery: e.g. re-announcing a compacted topic's state)."""
        security = kafka.KafkaSecurity.from_env()
        if settings.production and not security.encrypted_and_authenticated:
            raise kafka.KafkaSettingsError(
                "RELAIS_ENV=production needs an encrypted, authenticated Kafka connection: "
                "KAFKA_SECURITY_PROTOCOL=SASL_SSL with this service's own KAFKA_SASL_USERNAME, or SSL "
                f"with a client certificate (got {security.protocol})")
        log.info("kafka_connection", service=service, **security.describe())
        contract = load_contract(settings.schemas_dir)
        periods = Periods(timedelta(days=settings.retention_outbox_days),
                          timedelta(days=settings.retention_processed_events_days))
        check_periods(periods, load_topics(settings.topics_file))
        vault = open_vault(settings, schema or service)
        pool = await _patiently("database", lambda: create_pool(settings.database_url, schema or service))
        await migrate(pool, *([migrations] if isinstance(migrations, Path) else migrations))
        producer = kafka.producer(settings.kafka_bootstrap_servers)
        try:
            await _patiently("broker", producer.start)
        except asyncio.CancelledError:  # stopped while waiting for the broker
            await asyncio.wait([asyncio.ensure_future(producer.stop()), asyncio.ensure_future(pool.close())],
                               timeout=2)
            raise
        relay = OutboxRelay(pool, producer, source=source or f"/relais/{service}", vault=vault,
                            leadership=Leadership.dedicated("outbox", settings.database_url, schema or service))
        runtime = cls(service, settings, contract, pool, producer, relay, vault, source_uri=source)
        runtime.supervise("outbox-relay", relay.run, progress=relay.progress)
        runtime.supervise("resealing", Resealer(pool, vault, (SEALED_DATA, *sealed)).run)
        runtime.retention_steps = [*kit_steps(periods), *(retention(runtime) if retention else ())]
        runtime.supervise("retention", RetentionJob(pool, runtime.retention_steps, settings.retention_check_s).run)
        runtime.on_broker_lost.extend(on_broker_lost(runtime) if on_broker_lost else ())
        runtime.broker_watch = BrokerWatch(
            pool, bootstrap=settings.kafka_bootstrap_servers, schema=schema or service,
            topics=load_topics(settings.topics_file), topics_in_use=runtime.consumed_topics,
            on_new_broker=runtime.restart_consumers, outbox_days=settings.retention_outbox_days,
            override_days=settings.republish_window_days, check_s=settings.broker_check_s,
            on_lost=runtime.on_broker_lost)
        runtime.supervise("broker-watch", runtime.broker_watch.run)
        return runtime

    def consumed_topics(self) -> list[str]:
        return [topic for consumer in self.consumers for topic in consumer.topics]

    async def restart_consumers(self) -> None:
        """After the broker was lost (relais_kit.recovery): each consumer starts again
        with a new client, reading the new topics from their beginning once."""
        for consumer in self.consumers:
            name = f"consumer:{consumer.name}"
            old = self.loops.get(name)
            if old is not None:
                old.cancel()
                await asyncio.wait([old], timeout=6)
            consumer.rewind_next_run = True
            self.supervise(name, consumer.run, progress=consumer.progress)

    def supervise(self, name: str, loop: Loop, *, progress: Progress | None = None) -> None:
        """Runs `loop` in the background, started again whenever it fails. `progress`:
        what the loop says of its own steps (relais_kit.progress), for /healthz."""
        self.attempts[name] = attempts = Attempts()
        if progress is not None:
            self.progress[name] = progress
        self.loops[name] = asyncio.create_task(
            _forever(name, loop, attempts, self.settings.stall_after_s), name=name)
        metrics.loop_healthy.labels(name).set_function(lambda: 1.0 if self.loop_state(name) == "running" else 0.0)

    def loop_state(self, name: str) -> str:
        """`running`, or why not: stopped, failing (restarts that fail at once), stalled
        (no step finished for `stall_after_s` while it has work)."""
        task = self.loops.get(name)
        if task is None or task.done():
            return "stopped"
        after = self.settings.stall_after_s
        failing = self.attempts[name].failing(after)
        if failing:
            return f"failing: {failing}"
        progress = self.progress.get(name)
        stalled = progress.stalled(after) if progress is not None else None
        return f"stalled: {stalled}" if stalled else "running"

    def consume(self, group: str, topics: list[str], handlers: Mapping[str, Handler],
                *, from_beginning: bool = False) -> EventConsumer:
        """Starts an idempotent consumer in group `group`, supervised."""
        consumer = EventConsumer(name=group, bootstrap=self.settings.kafka_bootstrap_servers,
                                 topics=topics, producer=self.producer, pool=self.pool,
                                 contract=self.contract, handlers=handlers, from_beginning=from_beginning)
        self.consumers.append(consumer)
        self.supervise(f"consumer:{group}", consumer.run, progress=consumer.progress)
        return consumer

    async def stop(self, timeout: float = 10.0) -> None:
        self.relay.request_stop()
        relay = self.loops.get("outbox-relay")
        if relay is not None:
            await asyncio.wait([relay], timeout=timeout / 3)
        for task in self.loops.values():
            task.cancel()
        if self.loops:
            await asyncio.wait(self.loops.values(), timeout=timeout / 3)
        for closing in (self.producer.stop(), self.pool.close()):
            try:
                await asyncio.wait_for(closing, timeout / 6)
            except (TimeoutError, Exception) as exc:  # broker or database already gone
                log.warning("stop_incomplete", error=repr(exc))
        self.pool.terminate()  # whatever a cut-short close left open

    async def health(self) -> dict[str, Any]:
        checks: dict[str, Any] = {}
        try:
            async with self.pool.acquire(timeout=2) as conn:
                await conn.fetchval("SELECT 1")
            checks["database"] = "ok"
        except Exception as exc:
            checks["database"] = f"down: {type(exc).__name__}"
        checks["loops"] = {name: self.loop_state(name) for name in self.loops}
        # One instance per schema publishes the outbox; the others stand by for its lock.
        checks["outbox_relay"] = "leader" if self.relay.leading else "standby"
        checks["outbox_parked_rows"] = self.relay.parked  # set aside by this instance since it started
        healthy = checks["database"] == "ok" and all(state == "running" for state in checks["loops"].values())
        return {"status": "ok" if healthy else "degraded", "service": self.service, **checks}


def open_vault(settings: PlatformSettings, schema: str) -> Vault:
    """The vault of a service's schema: its key file, created in dev and test when
    missing (never in production: a lost key file is lost data)."""
    path = settings.data_keys_path(schema)
    if not path.exists() and not settings.production:
        log.info("data_keys_created", path=str(path))
        return Vault(FileKeyRing.create(path))
    return Vault(FileKeyRing(path))


async def _patiently(what: str, attempt: Callable[[], Awaitable[T]]) -> T:
    delay = 0.5
    while True:
        try:
            return await attempt()
        except (*DATABASE_AWAY, KafkaConnectionError) as exc:
            log.warning(f"{what}_unreachable", error=repr(exc))
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


@asynccontextmanager
async def serving(app: FastAPI, start: Callable[[], Awaitable[Runtime]]) -> AsyncIterator[None]:
    """A lifespan body: starts the service in the background, so that the HTTP server
    answers at once (503 until ready) and a stop signal is obeyed even while the
    database or the broker is still out of reach; stops it, bounded in time."""
    app.state.ready = asyncio.Event()
    app.state.runtime = None

    async def start_and_mark() -> Runtime:
        try:
            runtime = await start()
        except Exception as exc:
            log.error("start_failed", error=repr(exc))
            app.state.start_error = repr(exc)
            raise
        app.state.runtime = runtime
        app.state.ready.set()
        log.info("service_started")
        return runtime

    starting = asyncio.create_task(start_and_mark(), name="start")
    try:
        yield
    finally:
        runtime = app.state.runtime
        app.state.runtime = None
        if runtime is not None:
            await runtime.stop()
        else:
            starting.cancel()
            await asyncio.wait([starting], timeout=5)
        log.info("service_stopped")


async def until_ready(app: FastAPI, timeout: float = 60.0) -> None:
    """For tests and tools running an app in-process: wait for its background start."""
    await asyncio.wait_for(app.state.ready.wait(), timeout)


async def _forever(name: str, loop: Loop, attempts: Attempts, stall_after_s: float) -> None:
    delay = 0.5
    while True:
        try:
            await loop()
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise asyncio.CancelledError from exc  # stopping: an error on the way out ends it
            attempts.failed(type(exc).__name__, stall_after_s)
            log.error("loop_failed", loop=name, error=repr(exc), failures_in_a_row=attempts.failures_in_a_row)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)
            attempts.restarted()
            metrics.loop_restarts.labels(name).inc()


def health_router(get_runtime: Callable[[], Runtime | None]) -> APIRouter:
    router = APIRouter()

    @router.get("/healthz", tags=["ops"])
    async def healthz() -> JSONResponse:
        runtime = get_runtime()
        if runtime is None:
            return JSONResponse({"status": "starting", "waiting_for": "the database and the broker"},
                                status_code=503)
        report = await runtime.health()
        return JSONResponse(report, status_code=200 if report["status"] == "ok" else 503)

    # For an orchestrator, which restarts what fails its liveness and stops routing to
    # what fails its readiness: /healthz is the whole truth for people and alerts, but a
    # broker away (every loop stalled) must neither restart every process nor stop the
    # API, which still records referrals in the outbox.
    @router.get("/livez", tags=["ops"])
    async def livez() -> JSONResponse:
        return JSONResponse({"status": "ok"})  # the event loop answers

    @router.get("/readyz", tags=["ops"])
    async def readyz() -> JSONResponse:
        runtime = get_runtime()
        if runtime is None:
            return JSONResponse({"status": "starting"}, status_code=503)
        database = (await runtime.health())["database"]
        return JSONResponse({"status": "ok" if database == "ok" else "degraded", "database": database},
                            status_code=200 if database == "ok" else 503)

    return router
