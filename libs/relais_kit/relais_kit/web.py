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


class FieldProblem(Exception):
    """A request whose field is well-formed but wrong (unknown site…): a 422 naming it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


async def _field_problem(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, FieldProblem)
    return JSONResponse(status_code=422, content={
        "detail": str(exc), "errors": [{"field": exc.field, "message": exc.message}]})


def prepare_app(app: FastAPI, settings: PlatformSettings,
                runtime: Callable[[], Runtime | None]) -> FastAPI:
    app.state.jwt_secret = settings.jwt_secret
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(FieldProblem, _field_problem)
    app.include_router(health_router(runtime))

    @app.middleware("http")
    async def until_started(request: Request, call_next: Callable[[Request], Any]) -> Any:
        if runtime() is None and request.url.path.startswith("/api/"):
            return JSONResponse(status_code=503, headers={"Retry-After": "1"},
                                content={"detail": "starting: waiting for the database and the broker"})
        return await call_next(request)

    return app
