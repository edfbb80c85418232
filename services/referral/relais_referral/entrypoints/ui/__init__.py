"""The adviser's pages: server-rendered French HTML (Jinja2, DSFR) next to the JSON API,
calling the service layer directly. Every module of this package that defines
`router` (a FastAPI APIRouter) is plugged in by `install`: adding a screen is adding a
module, nothing else."""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, FastAPI
from fastapi.staticfiles import StaticFiles

from relais_kit.webui import mount_dsfr, security_headers
from relais_referral.entrypoints.ui.pages import make_pages
from relais_referral.service_layer.audit import ui_channel
from relais_referral.settings import ReferralSettings

STATIC = Path(__file__).resolve().parents[2] / "static" / "ui"


def routers() -> list[APIRouter]:
    """The `router` of every module of this package, in module name order."""
    found = []
    for module in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        loaded = importlib.import_module(f"{__name__}.{module.name}")
        router = getattr(loaded, "router", None)
        if isinstance(router, APIRouter):
            found.append(router)
    return found


def install(app: FastAPI, settings: ReferralSettings) -> None:
    ui = make_pages(app.state.token_signer, settings.production)
    app.state.ui_pages = ui
    ui.install_handlers(app)
    # The ProConnect button and the sign-out lead the browser to the provider.
    issuer = urlsplit(settings.oidc_issuer) if settings.oidc_enabled and settings.oidc_issuer else None
    security_headers(app, form_targets=(f"{issuer.scheme}://{issuer.netloc}",) if issuer else ())
    for router in routers():  # what they record in the audit is marked as done in the pages
        app.include_router(router, include_in_schema=False, dependencies=[Depends(ui_channel)])
    app.mount("/static/ui", StaticFiles(directory=STATIC), name="ui-static")
    mount_dsfr(app)
