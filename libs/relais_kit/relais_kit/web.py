"""What every service's HTTP API shares: error bodies that name the offending field,
the health route, and the JWT secret for bearer tokens."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from relais_kit.db import DATABASE_AWAY
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


FIELD_ERRORS_SCHEMA: dict[str, Any] = {
    "title": "FieldErrors",
    "type": "object",
    "required": ["detail", "errors"],
    "properties": {
        "detail": {"type": "string", "description": "Every problem, in one line."},
        "errors": {"type": "array", "items": {
            "type": "object", "required": ["field", "message"],
            "properties": {"field": {"type": "string", "description": "e.g. citizen.contact.email"},
                           "message": {"type": "string"}}}},
    },
}


def _document_field_errors(app: FastAPI) -> None:
    """FastAPI documents its own 422 body; ours names the fields differently (above)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            schemas = schema.get("components", {}).get("schemas", {})
            if "HTTPValidationError" in schemas:
                schemas["HTTPValidationError"] = FIELD_ERRORS_SCHEMA
                schemas.pop("ValidationError", None)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


async def _unstorable_text(_: Request, exc: Exception) -> JSONResponse:
    return JSONResponse(status_code=422, content={
        "detail": "(body): text holds a character that cannot be stored (e.g. NUL)",
        "errors": [{"field": "(body)", "message": "text holds a character that cannot be stored"}]})


async def _database_away(_: Request, exc: Exception) -> JSONResponse:
    return JSONResponse(status_code=503, headers={"Retry-After": "2"},
                        content={"detail": f"the database is unavailable, try again ({type(exc).__name__})"})


def prepare_app(app: FastAPI, settings: PlatformSettings,
                runtime: Callable[[], Runtime | None]) -> FastAPI:
    app.state.jwt_secret = settings.jwt_secret
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(FieldProblem, _field_problem)
    # A backstop: fields should refuse control characters before PostgreSQL does.
    app.add_exception_handler(asyncpg.CharacterNotInRepertoireError, _unstorable_text)
    app.add_exception_handler(asyncpg.UntranslatableCharacterError, _unstorable_text)
    for away in DATABASE_AWAY:  # a restart of PostgreSQL is a 503 to retry, not a 500
        app.add_exception_handler(away, _database_away)
    _document_field_errors(app)
    app.include_router(health_router(runtime))

    @app.middleware("http")
    async def until_started(request: Request, call_next: Callable[[Request], Any]) -> Any:
        if runtime() is None and request.url.path.startswith("/api/"):
            return JSONResponse(status_code=503, headers={"Retry-After": "1"},
                                content={"detail": "starting: waiting for the database and the broker"})
        return await call_next(request)

    return app
