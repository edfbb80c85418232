"""GET /console: the overview of the platform (domain/overview.py for what it shows,
service_layer/overview.py for where it comes from)."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from fastapi.responses import Response

from relais_ops.adapters.prometheus import Prometheus
from relais_ops.entrypoints.console.pages import HOME, OpsUser, render
from relais_ops.service_layer.lag_monitor import LagMonitor
from relais_ops.service_layer.overview import overview

router = APIRouter()


@router.get(HOME, include_in_schema=False)
async def overview_page(request: Request, ops: OpsUser) -> Response:
    monitor: LagMonitor | None = getattr(request.app.state, "lag_monitor", None)
    prometheus: Prometheus = request.app.state.prometheus
    at = time.time()
    view = await overview(monitor, prometheus, at=at)
    return render(request, "overview.html.j2", view=view, at=at)
