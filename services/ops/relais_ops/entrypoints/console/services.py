"""The services whose ops API the console calls (journey, parked rows), by name, and
the client it calls them with: the signed-in user's own access token."""

from __future__ import annotations

from fastapi import Request

from relais_ops.adapters.services_api import HttpOpsApi
from relais_ops.entrypoints.console.pages import SignedIn
from relais_ops.service_layer.ops_api import OpsApi
from relais_ops.settings import OpsSettings

LABELS = {"referral": "Demandes", "sites": "Espaces France Services", "notifications": "Notifications"}


def settings_of(request: Request) -> OpsSettings:
    settings: OpsSettings = request.app.state.settings
    return settings


def service_urls(settings: OpsSettings) -> dict[str, str]:
    return {"referral": settings.referral_url, "sites": settings.sites_url,
            "notifications": settings.notifications_url}


def ops_api(request: Request, ops: SignedIn) -> OpsApi:
    """A test may set `app.state.ops_api` (a callable of the token)."""
    made = getattr(request.app.state, "ops_api", None)
    if made is not None:
        api: OpsApi = made(ops.token)
        return api
    settings = settings_of(request)
    return HttpOpsApi(service_urls(settings), ops.token, timeout_s=settings.console_timeout_s)
