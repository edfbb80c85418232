"""The notifications service's process: the consumers of `referrals`, `sites` (the view
of the registry) and `privacy`, the delivery loop, the outbox relay, re-sealing and
retention (started by the runtime) and the HTTP API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from relais_kit.auth import api_verifier
from relais_kit.logs import configure_logging, log
from relais_kit.runtime import Runtime, serving
from relais_kit.tracing import FASTAPI_TELEMETRY, configure_tracing
from relais_kit.web import documentation, prepare_app
from relais_notifications.adapters import store, templates
from relais_notifications.adapters.kannel import KannelSettings, KannelSmsGateway
from relais_notifications.adapters.mailer import SmtpMailer
from relais_notifications.adapters.ports import SmsGateway
from relais_notifications.adapters.sms import SpoolSmsGateway
from relais_notifications.entrypoints import api, kannel, ops
from relais_notifications.service_layer import handlers, privacy, retention, sites_view
from relais_notifications.service_layer.delivery import DeliveryLoop
from relais_notifications.settings import NotificationsSettings

MIGRATIONS = Path(__file__).parent / "migrations"


def sms_gateway(settings: NotificationsSettings) -> SmsGateway:
    if settings.sms_gateway == "kannel":
        log.info("sms_gateway", gateway="kannel", sendsms_url=settings.kannel_sendsms_url)
        return KannelSmsGateway(KannelSettings(
            sendsms_url=settings.kannel_sendsms_url, user=settings.kannel_user, password=settings.kannel_password,
            sender=settings.sms_sender, dlr_url=settings.kannel_dlr_url, dlr_secret=settings.kannel_dlr_secret))
    log.info("sms_gateway", gateway="spool", spool=str(settings.sms_spool))
    return SpoolSmsGateway(settings.sms_spool)


def create_app(settings: NotificationsSettings | None = None) -> FastAPI:
    settings = settings or NotificationsSettings()

    # A broken template stops the service here, named, before any message is lost to it.
    wordings = templates.wordings(settings.templates_dir)

    async def start(app: FastAPI) -> Runtime:
        runtime = await Runtime.start("notifications", settings, MIGRATIONS, sealed=store.SEALED,
                                      retention=lambda _: retention.steps(settings.retention_delivery_days))
        loop = DeliveryLoop(
            pool=runtime.pool, contract=runtime.contract, source=runtime.source, vault=runtime.vault,
            mailer=SmtpMailer(host=settings.smtp_host, port=settings.smtp_port,
                              mail_from=settings.mail_from, domain=settings.mail_domain,
                              timeout_s=settings.smtp_timeout_s),
            sms=sms_gateway(settings),
            max_attempts=settings.max_attempts, retry_base_s=settings.retry_base_s,
            retry_max_s=settings.retry_max_s, poll_s=settings.poll_s, workers=settings.delivery_workers,
            lease_s=max(120.0, 3 * settings.smtp_timeout_s), quiet=settings.quiet_hours)
        runtime.consume(sites_view.GROUP, sites_view.TOPICS, sites_view.handlers(), from_beginning=True)
        runtime.consume(handlers.GROUP, handlers.TOPICS,
                        handlers.handlers(runtime.contract, runtime.source, runtime.vault, wordings))
        runtime.consume(privacy.GROUP, privacy.TOPICS,
                        privacy.handlers(runtime.contract, runtime.source, runtime.vault))
        runtime.supervise("deliveries", loop.run)
        app.state.deliveries = loop
        return runtime

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging("notifications", settings.log_level)
        configure_tracing("notifications")
        async with serving(app, lambda: start(app)):
            yield

    app = FastAPI(title="Relais — notifications", version="1", lifespan=lifespan, **documentation(settings),
                  telemetry=FASTAPI_TELEMETRY)
    app.state.token_verifier = api_verifier(settings, "notifications")
    prepare_app(app, settings, lambda: getattr(app.state, "runtime", None))
    app.include_router(api.router)
    app.include_router(ops.router)
    app.state.kannel_dlr_secret = settings.kannel_dlr_secret if settings.sms_gateway == "kannel" else ""
    app.state.kannel_mo_secret = settings.kannel_mo_secret if settings.sms_gateway == "kannel" else ""
    app.include_router(kannel.router)
    return app
