"""The sites service's FastAPI application and its lifespan: logging, the runtime
(pool, migrations, producer, outbox relay; the whole registry announced again after a
broker loss), demo data when asked for."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

from fastapi import FastAPI

from relais_kit.auth import api_verifier
from relais_kit.logs import configure_logging
from relais_kit.runtime import Runtime, serving
from relais_kit.tracing import FASTAPI_TELEMETRY, configure_tracing
from relais_kit.web import documentation, prepare_app
from relais_sites.entrypoints import api
from relais_sites.entrypoints.demo import seed_demo_sites
from relais_sites.service_layer.sites import reannounce_registry
from relais_sites.settings import SitesSettings, load_settings

MIGRATIONS = Path(__file__).parent / "migrations"

DESCRIPTION = """\
The registry of France Services sites: fixed sites, post offices, mobile permanences
(an adviser holding rotating permanences in town halls, public digital spaces…) and
buses, with the operators each serves and their schedules.

Every change is published on the compacted Kafka topic `sites` (record key: the site
id) as a CloudEvent `fr.franceservices.site.upserted.v1` or
`fr.franceservices.site.retired.v1`; see `schemas/events/`. When the broker comes back
empty, the whole registry is announced again (every site, retired ones as retired).

Authentication: a bearer token (JWT) issued by the referral service. Sites are public
information: reading needs any valid token. Writing is a supervisor's, within their own
department (the token's `department` claim): they create, change and retire only sites
whose department is theirs, as described in the body and as the registry holds them, and
a permanence or bus of theirs depends only on a site of their department. Ops are
read-only; advisers and supervisors without a department write nothing. A refused write
is a 403 whose `detail` says why, and changes and publishes nothing."""


def create_app(settings: SitesSettings | None = None) -> FastAPI:
    settings = settings or load_settings()

    async def start() -> Runtime:
        runtime = await Runtime.start("sites", settings, MIGRATIONS,
                                      on_broker_lost=lambda rt: [partial(reannounce_registry, rt)])
        if settings.demo_data:
            await seed_demo_sites(runtime, settings.demo_file)
        return runtime

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging("sites", settings.log_level)
        configure_tracing("sites")
        async with serving(app, start):
            yield

    app = FastAPI(
        title="Relais — sites", version="1.0.0", description=DESCRIPTION, lifespan=lifespan,
        **documentation(settings), telemetry=FASTAPI_TELEMETRY,
        openapi_tags=[
            {"name": "sites", "description": "France Services sites, permanences and buses."},
            {"name": "ops", "description": "Health of the service."},
        ],
    )
    app.state.token_verifier = api_verifier(settings, "sites")
    app.include_router(api.router)
    return prepare_app(app, settings, lambda: getattr(app.state, "runtime", None))
