"""The ops service's FastAPI application and its lifespan: logging, the lag monitor
(sampling the broker in the background from the first second), the API."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from relais_kit.auth import api_verifier
from relais_kit.db import DATABASE_AWAY, create_pool, migrate
from relais_kit.kafka import KafkaSecurity
from relais_kit.logs import configure_logging, log
from relais_kit.metrics import HttpMetrics
from relais_kit.sessions import SESSIONS_MIGRATIONS
from relais_kit.tokens import signer_from
from relais_kit.web import BodyLimit, ResponseHeaders, documentation
from relais_kit.webui import mount_dsfr
from relais_ops.adapters import console_tokens
from relais_ops.adapters.kafka_offsets import KafkaOffsets
from relais_ops.adapters.prometheus import PrometheusClient
from relais_ops.adapters.referral_auth import ReferralAuth
from relais_ops.entrypoints import api, console
from relais_ops.entrypoints.console import pages
from relais_ops.service_layer.lag_monitor import LagMonitor, default_metrics
from relais_ops.settings import OpsSettings, load_settings

DESCRIPTION = """\
Operations of the platform, seen from outside the services.

The lag monitor samples the broker every `RELAIS_LAG_INTERVAL_S` seconds: every consumer
group (the platform's and every operator's), its committed offsets against each
partition's end, the age of the oldest record it has not read, and a status per group
in the manner of LinkedIn's Burrow (OK, WARN, STALL, STOP, ERR) over a window of
`RELAIS_LAG_WINDOW` samples. Served as Prometheus metrics at `/metrics` and as JSON at
`/api/lag` (the ops role).

The console, for people of the ops role, is at `/console` (HTML pages, not part of
this API)."""

HERE = Path(__file__).parent
MIGRATIONS = HERE / "migrations"
SCHEMA = "ops"
# How long the service waits before trying its database again.
DATABASE_RETRY_S = 2.0
SESSIONS_PRUNE_S = 3600.0


async def keep_database(app: FastAPI, settings: OpsSettings) -> None:
    """The ops schema's pool, migrated, on `app.state.pool`, tried again until it works
    (the lag monitor and /metrics never wait for the database, the console's pages say
    it is starting meanwhile); then, every hour, the expired console sessions go."""
    await open_database(app, settings)
    while True:
        await asyncio.sleep(SESSIONS_PRUNE_S)
        try:
            pruned = await console_tokens.prune_expired(app.state.pool)
        except (*DATABASE_AWAY, asyncpg.InterfaceError, asyncpg.PostgresError) as exc:
            log.warning("console_sessions_prune_failed", error=type(exc).__name__)
        else:
            if pruned:
                log.info("console_sessions_pruned", sessions=pruned)


async def open_database(app: FastAPI, settings: OpsSettings) -> None:
    while True:
        try:
            pool = await create_pool(settings.database_url, SCHEMA, max_size=5)
            try:
                applied = await migrate(pool, SESSIONS_MIGRATIONS, MIGRATIONS)
            except BaseException:
                await pool.close()
                raise
        except DATABASE_AWAY as exc:
            log.warning("ops_database_away", error=type(exc).__name__, retry_in_s=DATABASE_RETRY_S)
        except Exception as exc:  # a role without rights, a broken migration: said, tried again
            log.error("ops_database_unusable", error=f"{type(exc).__name__}: {exc}", retry_in_s=DATABASE_RETRY_S * 5)
            await asyncio.sleep(DATABASE_RETRY_S * 4)
        else:
            app.state.pool = pool
            log.info("ops_database_ready", migrations_applied=len(applied))
            return
        await asyncio.sleep(DATABASE_RETRY_S)


def create_app(settings: OpsSettings | None = None) -> FastAPI:
    settings = settings or load_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging("ops", settings.log_level)
        security = KafkaSecurity.from_env()
        log.info("ops_starting", bootstrap=settings.kafka_bootstrap_servers, interval_s=settings.lag_interval_s,
                 window=settings.lag_window, **security.describe())
        source = KafkaOffsets(settings.kafka_bootstrap_servers, security, ignore_groups=settings.ignore_groups)
        monitor = LagMonitor(source, interval_s=settings.lag_interval_s, window=settings.lag_window,
                             metrics=default_metrics())
        app.state.lag_monitor = monitor
        task = asyncio.create_task(monitor.run(), name="lag-monitor")
        database = asyncio.create_task(keep_database(app, settings), name="ops-database")
        try:
            yield
        finally:
            for running in (database, task):
                running.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await running
            await source.close()
            pool: asyncpg.Pool | None = getattr(app.state, "pool", None)
            if pool is not None:
                app.state.pool = None
                await pool.close()
            log.info("ops_stopped")

    app = FastAPI(
        title="Relais — ops", version="1.0.0", description=DESCRIPTION, lifespan=lifespan,
        **documentation(settings),
        openapi_tags=[
            {"name": "lag", "description": "Consumer lag, measured from outside the consumers."},
            {"name": "ops", "description": "Health and metrics of the service."},
        ],
    )
    app.state.token_verifier = api_verifier(settings, "ops")
    app.state.pool = None
    app.state.token_issuer = ReferralAuth(settings.referral_url, timeout_s=settings.console_timeout_s)
    app.state.prometheus = PrometheusClient(settings.prometheus_url, timeout_s=settings.console_timeout_s)
    app.state.settings = settings
    app.include_router(api.router)
    # The console's session cookie is signed with the ops service's own keys: nothing it
    # signs opens an API, nothing an API accepts opens the console.
    pages.install(app, signer_from(settings, "ops", "relais-ops"), production=settings.production)
    app.include_router(console.router)
    app.mount("/static/ops", StaticFiles(directory=HERE / "static"), name="ops-static")
    mount_dsfr(app)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(ResponseHeaders, hsts=settings.production)
    app.add_middleware(HttpMetrics)
    return app
