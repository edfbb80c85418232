"""What every service's HTTP API shares: error bodies that name the offending field,
the health route, a bound on request bodies (413
before anything reads them), and the headers every response needs (no caching of API
answers, which carry personal data; HSTS in production)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from relais_kit.db import DATABASE_AWAY
from relais_kit.metrics import HttpMetrics, metrics_endpoint
from relais_kit.ops_api import ops_router
from relais_kit.runtime import Runtime, health_router
from relais_kit.settings import PlatformSettings
from relais_kit.tracing import TraceRequests

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
HSTS = "max-age=63072000; includeSubDomains"


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


class BodyLimit:
    """Refuses a request body larger than `max_bytes` with 413, before the application
    reads it: at once from its Content-Length, else as soon as the bytes received pass
    the limit (chunked uploads). Nothing larger is ever held in memory."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await self._refuse(send)
            return
        received = 0
        started = refused = False

        # Past the limit, the 413 is sent from here and the application is told the
        # client has gone. An exception raised through the receive channel would not do:
        # `@app.middleware("http")` layers wrap it in an ExceptionGroup (a 500, or
        # FastAPI's 400 "error parsing the body").
        async def limited_receive() -> Message:
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    refused = True
                    if not started:
                        await self._refuse(send)
                    return {"type": "http.disconnect"}
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if refused:
                return  # the 413 was the answer
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except Exception:
            if not refused:
                raise
            # The application failed on the body it could not read: the 413 answered.

    async def _refuse(self, send: Send) -> None:
        body = json.dumps({"detail": f"the request body is larger than {self.max_bytes} bytes",
                           "errors": [{"field": "(body)", "message": f"at most {self.max_bytes} bytes"}]}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"connection", b"close"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


class ResponseHeaders:
    """`Cache-Control: no-store` on every API answer (they carry personal data: no
    browser or proxy cache may keep them), and HSTS on every response in production."""

    def __init__(self, app: ASGIApp, *, hsts: bool) -> None:
        self.app = app
        self.hsts = hsts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        api = str(scope.get("path", "")).startswith("/api/")

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or [])
                names = {name.lower() for name, _ in headers}
                if api and b"cache-control" not in names:
                    headers.append((b"cache-control", b"no-store"))
                if self.hsts:
                    headers.append((b"strict-transport-security", HSTS.encode()))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)


class UntilStarted:
    """The API answers 503 (retry in a second) while the service still waits for its
    database and broker. (Middlewares here are plain ASGI: Starlette's `BaseHTTPMiddleware`
    costs a task group and two streams per request.)"""

    def __init__(self, app: ASGIApp, runtime: Callable[[], Runtime | None]) -> None:
        self.app = app
        self.runtime = runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.runtime() is None and str(scope.get("path", "")).startswith("/api/"):
            starting = JSONResponse(status_code=503, headers={"Retry-After": "1"},
                                    content={"detail": "starting: waiting for the database and the broker"})
            await starting(scope, receive, send)
            return
        await self.app(scope, receive, send)


def documentation(settings: PlatformSettings) -> dict[str, Any]:
    """FastAPI's arguments for the interactive API documentation: served in dev and
    test, not in production (it maps every route for a visitor)."""
    if settings.production:
        return {"docs_url": None, "redoc_url": None, "openapi_url": None}
    return {}


def prepare_app(app: FastAPI, settings: PlatformSettings,
                runtime: Callable[[], Runtime | None]) -> FastAPI:
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(FieldProblem, _field_problem)
    # A backstop: fields should refuse control characters before PostgreSQL does.
    app.add_exception_handler(asyncpg.CharacterNotInRepertoireError, _unstorable_text)
    app.add_exception_handler(asyncpg.UntranslatableCharacterError, _unstorable_text)
    for away in DATABASE_AWAY:  # a restart of PostgreSQL is a 503 to retry, not a 500
        app.add_exception_handler(away, _database_away)
    _document_field_errors(app)
    app.include_router(health_router(runtime))
    app.include_router(ops_router(runtime))  # parked outbox rows, a subject's journey (role ops)
    # Prometheus' format, for the scraper inside the cluster (the ingress does not route it).
    app.add_route("/metrics", metrics_endpoint, include_in_schema=False)

    app.add_middleware(UntilStarted, runtime=runtime)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)  # before anything reads the body
    app.add_middleware(ResponseHeaders, hsts=settings.production)  # on every answer, 413 included
    app.add_middleware(TraceRequests)  # a span per request, 413 and 503 included
    app.add_middleware(HttpMetrics)  # outermost: every request measured, 413 and 503 included
    return app
