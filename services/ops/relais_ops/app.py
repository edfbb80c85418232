"""The ops service's FastAPI application and its lifespan: logging, the lag monitor
(sampling the broker in the background from the first second), the API."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from relais_kit.auth import api_verifier
from relais_kit.kafka import KafkaSecurity
from relais_kit.logs import configure_logging, log
from relais_kit.metrics import HttpMetrics
from relais_kit.web import BodyLimit, ResponseHeaders, documentation
from relais_ops.adapters.kafka_offsets import KafkaOffsets
from relais_ops.entrypoints import api
from relais_ops.service_layer.lag_monitor import LagMonitor, default_metrics
from relais_ops.settings import OpsSettings, load_settings

DESCRIPTION = """\
Operations of the platform, seen from outside the services.

The lag monitor samples the broker every `RELAIS_LAG_INTERVAL_S` seconds: every consumer
group (the platform's and every operator's), its committed offsets against each
partition's end, the age of the oldest record it has not read, and a status per group
in the manner of LinkedIn's Burrow (OK, WARN, STALL, STOP, ERR) over a window of
`RELAIS_LAG_WINDOW` samples. Served as Prometheus metrics at `/metrics` and as JSON at
`/api/lag` (the ops role)."""


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
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await source.close()
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
    app.include_router(api.router)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(ResponseHeaders, hsts=settings.production)
    app.add_middleware(HttpMetrics)
    return app
