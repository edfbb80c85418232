"""The operator desk's process: the consumer of `operator.<code>.inbox`, the outbox
relay onto `operator.<code>.outbox` (started by the runtime) and the web pages."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

import structlog
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from relais_desk.adapters import store
from relais_desk.adapters.keys import OperatorKey
from relais_desk.entrypoints import web
from relais_desk.service_layer import accounts, inbox
from relais_desk.service_layer.actions import source
from relais_desk.service_layer.open_cases import open_cases_gauge
from relais_desk.settings import DeskSettings
from relais_kit import jwks
from relais_kit.logs import configure_logging, log
from relais_kit.runtime import Runtime, serving
from relais_kit.sessions import SESSIONS_MIGRATIONS
from relais_kit.tokens import signer_from
from relais_kit.topics import load_topics
from relais_kit.tracing import FASTAPI_TELEMETRY, configure_tracing
from relais_kit.web import prepare_app
from relais_kit.webui import mount_dsfr

HERE = Path(__file__).parent
MIGRATIONS = HERE / "migrations"
SERVICE = "desk"


def desk_issuer(operator: str) -> str:
    return f"relais-desk:{operator}"


async def start_runtime(settings: DeskSettings) -> Runtime:
    """The kit's runtime, publishing as the operator (`ce_source: /operators/<code>`)."""
    period = timedelta(days=settings.retention_days)
    return await Runtime.start(SERVICE, settings, [SESSIONS_MIGRATIONS, MIGRATIONS], schema=settings.schema_name,
                               source=source(settings.operator), sealed=store.SEALED,
                               retention=lambda _: store.retention_steps(period))


def create_app(settings: DeskSettings | None = None) -> FastAPI:
    settings = settings or DeskSettings()  # type: ignore[call-arg]  # RELAIS_DESK_OPERATOR from the environment
    operator = settings.operator
    known = load_topics(settings.topics_file).operators
    if operator not in known:
        raise ValueError(f"RELAIS_DESK_OPERATOR={operator!r} is not an operator of {settings.topics_file}")
    key = OperatorKey.from_file(settings.key_file, production=settings.production)  # now, not at the first event

    async def start(app: FastAPI) -> Runtime:
        runtime = await start_runtime(settings)
        if settings.demo_data and not settings.production:
            async with runtime.pool.acquire() as conn:
                await accounts.seed_demo_account(conn, operator)
        runtime.consume(inbox.group(operator), [inbox.topic(operator)],
                        inbox.handlers(operator, key, runtime.contract, runtime.vault))
        gauge = open_cases_gauge(runtime.pool, operator)
        runtime.supervise("open-cases-gauge", lambda: gauge.run(settings.ops_gauges_s))
        return runtime

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging(SERVICE, settings.log_level)
        configure_tracing(SERVICE)
        structlog.contextvars.bind_contextvars(operator=operator)
        log.info("desk_starting", inbox=inbox.topic(operator), key_id=key.kid, schema=settings.schema_name)
        async with serving(app, lambda: start(app)):
            yield

    app = FastAPI(title=f"Relais — guichet opérateur ({operator})", version="1", lifespan=lifespan,
                  docs_url=None, redoc_url=None, openapi_url=None, telemetry=FASTAPI_TELEMETRY)
    prepare_app(app, settings, lambda: getattr(app.state, "runtime", None))
    # The desk's own issuer and keys (its session cookies): nothing the referral service
    # signs opens the desk, nothing the desk signs opens an API.
    signer = signer_from(settings, f"desk-{operator}", desk_issuer(operator))
    app.state.token_signer = signer
    jwks.publish(app, signer)
    web.install(app, settings, key, signer)
    app.mount("/static/desk", StaticFiles(directory=HERE / "static"), name="desk-static")
    mount_dsfr(app)
    return app
