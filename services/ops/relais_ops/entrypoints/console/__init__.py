"""The ops console: server-rendered pages under /console (French, DSFR), for the ops
role. `router` includes every page of it."""

from __future__ import annotations

from fastapi import APIRouter

from relais_ops.entrypoints.console import dead_letters, journey, overview, parked, signin

router = APIRouter()
for _module in (signin, overview, dead_letters, journey, parked):
    router.include_router(_module.router)

__all__ = ["router"]
