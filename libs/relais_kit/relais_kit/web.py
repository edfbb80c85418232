"""What every service's HTTP API shares: error bodies that name the offending field,
the health route, and the JWT secret for bearer tokens."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from relais_kit.runtime import Runtime, health_router
from relais_kit.settings import PlatformSettings


def field_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    errors = []
    for error in exc.errors():
        location = [str(p) for p in error.get("loc", ()) if p not in ("body", "query", "path", "form")]
        errors.append({"field": ".".join(location) or "(body)", "message": error.get("msg", "invalid")})
    return errors


async def _invalid_request(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = field_errors(exc)
    summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
    return JSONResponse(status_code=422, content={"detail": summary, "errors": errors})


def prepare_app(app: FastAPI, settings: PlatformSettings,
                runtime: Callable[[], Runtime | None]) -> FastAPI:
    app.state.jwt_secret = settings.jwt_secret
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.include_router(health_router(runtime))
    return app
