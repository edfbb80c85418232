"""Wiring: the FastAPI app, and at start-up the database, the outbox relay and the
consumers (routing, operators' replies, notifications, the sites view)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from relais_kit import jwks
from relais_kit.auth import REFERRAL_ISSUER, TokenVerifier, api_audience
from relais_kit.logs import configure_logging
from relais_kit.runtime import Runtime, serving
from relais_kit.sealing import OperatorKeys
from relais_kit.sessions import SESSIONS_MIGRATIONS
from relais_kit.throttle import SignInThrottle
from relais_kit.tokens import signer_from
from relais_kit.topics import load_topics
from relais_kit.tracing import FASTAPI_TELEMETRY, configure_tracing
from relais_kit.web import documentation, prepare_app
from relais_referral.adapters import store
from relais_referral.adapters.sealed import SEALED
from relais_referral.domain.catalogue import load_catalogue
from relais_referral.entrypoints import consumers, ui
from relais_referral.entrypoints.api import router
from relais_referral.service_layer import retention
from relais_referral.service_layer.accounts import seed_demo_accounts, token_alive
from relais_referral.service_layer.context import Context
from relais_referral.service_layer.inbox_gauges import inbox_gauges
from relais_referral.service_layer.overdue import overdue_watch
from relais_referral.settings import ReferralSettings

MIGRATIONS = Path(__file__).parent / "migrations"


def create_app(settings: ReferralSettings | None = None) -> FastAPI:
    settings = settings or ReferralSettings()
    operators = load_topics(settings.topics_file).operators
    # Fails at once, naming the operators concerned, if a key is missing or unusable.
    keys = OperatorKeys.from_folder(settings.operator_keys_dir, operators)
    if settings.production and (demo := keys.demo_operators()):
        raise ValueError(f"RELAIS_OPERATOR_KEYS_DIR: the keys of {', '.join(demo)} are public demo keys "
                         "(wherever copied): production needs the operators' registered keys")

    def context_of(runtime: Runtime) -> Context:
        return Context(runtime.contract, load_catalogue(), keys, runtime.vault, settings.public_address)

    async def start(app: FastAPI) -> Runtime:
        runtime = await Runtime.start(
            "referral", settings, [SESSIONS_MIGRATIONS, MIGRATIONS], schema=settings.db_schema, sealed=SEALED,
            retention=lambda runtime: retention.steps(context_of(runtime), retention.periods_of(settings)))
        ctx = context_of(runtime)
        app.state.context = ctx
        if not settings.production:
            async with runtime.pool.acquire() as conn:
                await seed_demo_accounts(conn)
        async with runtime.pool.acquire() as conn, conn.transaction():
            await store.index_missing(conn, runtime.vault)  # rows older than migration 010
        runtime.consume("relais-referral-router", ["referrals"], consumers.router_handlers(ctx))
        runtime.consume("relais-referral-operators", [f"operator.{o}.outbox" for o in operators],
                        consumers.operator_handlers(ctx))
        runtime.consume("relais-referral-notifications", ["notifications"],
                        consumers.notification_handlers(ctx))
        runtime.consume("relais-referral-sites", ["sites"], consumers.site_handlers(), from_beginning=True)
        runtime.supervise("overdue-watch", overdue_watch(runtime.pool, ctx, settings.overdue_check_s))
        gauges = inbox_gauges(runtime.pool, operators)
        runtime.supervise("inbox-gauges", lambda: gauges.run(settings.ops_gauges_s))
        app.state.inbox_gauges = gauges
        return runtime

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging("referral", settings.log_level)
        configure_tracing("referral")
        async with serving(app, lambda: start(app)):
            yield

    app = FastAPI(title="Relais — referral service", version="1.0.0", lifespan=lifespan, **documentation(settings),
                  telemetry=FASTAPI_TELEMETRY,
                  description="Visits and referrals of France Services advisers, routed to operators.")
    app.state.settings = settings
    app.state.signin_throttle = SignInThrottle(settings.signin_limit_per_account, settings.signin_limit_per_address)
    # The issuer of the platform's bearer tokens: signs with its private keys, publishes
    # the public ones (JWKS), checks its own tokens with them, no fetch needed.
    app.state.token_signer = signer = signer_from(settings, "referral", REFERRAL_ISSUER)
    app.state.token_verifier = TokenVerifier(signer, audience=api_audience("referral"))
    # Bearer tokens name a session: refused once it ended (revoked, account closed or changed).
    app.state.token_check = lambda user: token_alive(app.state.runtime.pool, user)
    prepare_app(app, settings, lambda: getattr(app.state, "runtime", None))
    jwks.publish(app, signer)
    app.include_router(router)
    ui.install(app, settings)  # the adviser's pages (HTML)
    return app
