"""OpenTelemetry traces: one referral's journey (the adviser's request, routing, the
operator's reply, the notification) is one trace across the services.

- `configure_tracing(service)` at process start: the exporter is chosen by the standard
  variables (`OTEL_TRACES_EXPORTER` otlp | console | none, `OTEL_SDK_DISABLED`,
  `OTEL_EXPORTER_OTLP_ENDPOINT` / `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, `OTEL_BSP_*`).
  Nothing set: no exporter and no SDK, spans are the API's no-op ones.
- The context travels as W3C Trace Context: HTTP `traceparent` / `tracestate` headers,
  and the same two Kafka record headers. The context of the request that caused an event
  is stored with its outbox row (`current_traceparent`); the relay sends the record in a
  `send {topic}` span child of it (`send_traced`), a consumer handles it in a
  `process {topic}` span child of the record's context (`processing`), and the events that
  handler writes carry that span's context in turn.
- Span names and attributes follow the messaging and HTTP semantic conventions. Ids
  (record keys, event ids) may be attributes; personal data never: exceptions are
  recorded by type only (their text could quote a value).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterator, Mapping, MutableMapping, Sequence
from contextlib import contextmanager
from typing import Any, Protocol

from fastapi.telemetry import TelemetryConfig
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

TRACER_NAME = "relais_kit"
TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
# The CloudEvents distributed-tracing extension in binary mode: read when `traceparent`
# is absent (an operator may send the extension instead of the W3C header).
CE_TRACEPARENT = "ce_traceparent"
MESSAGING_SYSTEM = "kafka"

PROPAGATOR = TraceContextTextMapPropagator()
# FastAPI's own telemetry, off: its spans record the path and the query string (which may
# hold personal data) and add three spans per request. `TraceRequests` is the platform's.
FASTAPI_TELEMETRY: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}
_configured = False

RecordHeaders = Sequence[tuple[str, bytes | None]]


def _tracer() -> trace.Tracer:
    return trace.get_tracer(TRACER_NAME)


# ------------------------------------------------------------------ configuration

def exporter_names(environ: Mapping[str, str]) -> list[str]:
    """The exporters the standard variables ask for; [] when tracing is off."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    asked = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if not asked:
        endpoint = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        return ["otlp"] if endpoint else []
    names = [n.strip() for n in asked.split(",") if n.strip()]
    unknown = [n for n in names if n not in ("otlp", "console", "none")]
    if unknown:
        raise ValueError(f"OTEL_TRACES_EXPORTER: unknown exporter(s) {', '.join(unknown)} "
                         "(this platform knows otlp, console, none)")
    return [] if "none" in names else names


def configure_tracing(service: str, environ: Mapping[str, str] | None = None) -> bool:
    """Installs the SDK when an exporter is asked for; True if traces are exported.
    Idempotent (a second call in the same process does nothing)."""
    global _configured
    propagate.set_global_textmap(PROPAGATOR)
    names = exporter_names(os.environ if environ is None else environ)
    if _configured or not names:
        return _configured
    # Imported only when on: a process without tracing does not load the SDK.
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

    attributes: dict[str, str] = {"service.name": f"relais-{service}"}
    if instance := (os.environ if environ is None else environ).get("RELAIS_INSTANCE"):
        attributes["service.instance.id"] = instance
    provider = TracerProvider(resource=Resource.create(attributes))
    for name in names:
        exporter: SpanExporter
        if name == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            exporter = OTLPSpanExporter()  # reads OTEL_EXPORTER_OTLP_* itself
        else:
            exporter = ConsoleSpanExporter()
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    _configured = True
    return True


# ------------------------------------------------------------------ logs

def add_trace_ids(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: the trace and span ids of the current span on every line."""
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event_dict["trace_id"] = trace.format_trace_id(context.trace_id)
        event_dict["span_id"] = trace.format_span_id(context.span_id)
    return event_dict


# ------------------------------------------------------------------ stored context

def current_traceparent() -> str | None:
    """The `traceparent` of the current span (for the outbox row being written), or None
    without a valid one."""
    carrier: dict[str, str] = {}
    PROPAGATOR.inject(carrier)
    return carrier.get(TRACEPARENT)


def context_of(traceparent: str | None, tracestate: str | None = None) -> Context | None:
    """The context a stored or received `traceparent` names; None if absent or invalid."""
    if not traceparent:
        return None
    carrier = {TRACEPARENT: traceparent, **({TRACESTATE: tracestate} if tracestate else {})}
    context = PROPAGATOR.extract(carrier)
    return context if trace.get_current_span(context).get_span_context().is_valid else None


def record_context(headers: RecordHeaders | None) -> Context | None:
    """The context a Kafka record carries: `traceparent` (W3C), else `ce_traceparent`
    (the CloudEvents extension); None without a valid one."""
    found: dict[str, str] = {}
    for name, raw in headers or ():
        lowered = name.lower()
        if lowered in (TRACEPARENT, TRACESTATE, CE_TRACEPARENT) and raw is not None and lowered not in found:
            found[lowered] = raw.decode("ascii", "replace")
    return context_of(found.get(TRACEPARENT) or found.get(CE_TRACEPARENT), found.get(TRACESTATE))


def record_headers(span: trace.Span) -> list[tuple[str, bytes]]:
    """`traceparent` (and `tracestate` when there is one) naming `span`; [] for an
    invalid span (tracing off and no incoming context)."""
    carrier: dict[str, str] = {}
    PROPAGATOR.inject(carrier, trace.set_span_in_context(span))
    return [(name, carrier[name].encode()) for name in (TRACEPARENT, TRACESTATE) if carrier.get(name)]


# ------------------------------------------------------------------ messaging spans

def _messaging(operation: str, topic: str) -> dict[str, Any]:
    return {"messaging.system": MESSAGING_SYSTEM, "messaging.operation.type": operation,
            "messaging.operation.name": operation, "messaging.destination.name": topic}


def _failed(span: trace.Span, error: str) -> None:
    span.set_attribute("error.type", error)
    span.set_status(Status(StatusCode.ERROR, error))


class _Producer(Protocol):
    async def send(self, topic: str, value: bytes | None = ..., key: bytes | None = ...,
                   partition: int | None = ..., timestamp_ms: int | None = ...,
                   headers: list[tuple[str, bytes]] | None = ...) -> asyncio.Future[Any]: ...


async def send_traced(producer: _Producer, topic: str, traceparent: str | None, *, key: bytes, value: bytes,
                      headers: list[tuple[str, bytes]]) -> asyncio.Future[Any]:
    """`producer.send` inside a `send {topic}` PRODUCER span, child of the stored
    `traceparent` (none: a root, or nothing when tracing is off); the record carries the
    span's context. The span ends when the broker acknowledges (or refuses) the record."""
    attributes = _messaging("send", topic)
    attributes["messaging.kafka.message.key"] = key.decode("utf-8", "replace")
    event_id = next((v for n, v in headers if n == "ce_id"), None)
    if event_id is not None:
        attributes["messaging.message.id"] = event_id.decode("utf-8", "replace")
    span = _tracer().start_span(f"send {topic}", context=context_of(traceparent) or Context(),
                                kind=SpanKind.PRODUCER, attributes=attributes)
    try:
        future = await producer.send(topic, value=value, key=key, headers=[*headers, *record_headers(span)])
    except Exception as exc:
        _failed(span, type(exc).__name__)
        span.end()
        raise
    future.add_done_callback(lambda done: _sent(span, done))
    return future


def _sent(span: trace.Span, done: asyncio.Future[Any]) -> None:
    if done.cancelled():
        _failed(span, "cancelled")
    elif (exc := done.exception()) is not None:
        _failed(span, type(exc).__name__)
    else:
        metadata = done.result()
        span.set_attribute("messaging.destination.partition.id", str(getattr(metadata, "partition", "")))
        if (offset := getattr(metadata, "offset", None)) is not None:
            span.set_attribute("messaging.kafka.offset", offset)
    span.end()


class _Record(Protocol):
    topic: str
    partition: int
    offset: int
    key: bytes | None
    headers: RecordHeaders | None


@contextmanager
def processing(record: _Record, group: str) -> Iterator[trace.Span]:
    """A `process {topic}` CONSUMER span, child of the context the record carries, current
    while the record is handled (events written meanwhile carry it). An exception leaving
    the block marks it failed, by type only."""
    attributes = _messaging("process", record.topic)
    attributes.update({"messaging.consumer.group.name": group,
                       "messaging.destination.partition.id": str(record.partition),
                       "messaging.kafka.offset": record.offset})
    if record.key:
        attributes["messaging.kafka.message.key"] = record.key.decode("utf-8", "replace")
    event_id = next((v for n, v in record.headers or () if n == "ce_id" and v is not None), None)
    if event_id is not None:
        attributes["messaging.message.id"] = event_id.decode("utf-8", "replace")
    span = _tracer().start_span(f"process {record.topic}", context=record_context(record.headers) or Context(),
                                kind=SpanKind.CONSUMER, attributes=attributes)
    with trace.use_span(span, end_on_exit=True, record_exception=False, set_status_on_exception=False):
        try:
            yield span
        except Exception as exc:
            _failed(span, type(exc).__name__)
            raise


def dead_lettered(error: str) -> None:
    """Marks the current span (the record's `process` span) failed with the dead-letter code."""
    span = trace.get_current_span()
    if span.is_recording():
        span.add_event("dead_lettered", {"error.type": error})
        _failed(span, error)


@contextmanager
def resumed(name: str, traceparent: str | None, attributes: Mapping[str, Any] | None = None) -> Iterator[trace.Span]:
    """An INTERNAL span, current in the block, child of a stored `traceparent`: work that
    a loop picks up later (a delivery its consumer queued) stays in the trace that
    caused it. An exception leaving the block marks it failed, by type only."""
    span = _tracer().start_span(name, context=context_of(traceparent) or Context(), kind=SpanKind.INTERNAL,
                                attributes=dict(attributes or {}))
    with trace.use_span(span, end_on_exit=True, record_exception=False, set_status_on_exception=False):
        try:
            yield span
        except Exception as exc:
            _failed(span, type(exc).__name__)
            raise


# ------------------------------------------------------------------ HTTP

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Any], Callable[[Message], Any]], Any]
UNTRACED = ("/healthz", "/metrics")  # probes and scrapes: every few seconds, nobody's journey


class TraceRequests:
    """A SERVER span per HTTP request, named `{method} {route template}` (just `{method}`
    for a path no route matched), child of the request's `traceparent` if it has one.
    Plain ASGI (like `relais_kit.web`'s middlewares). The path and query are not
    recorded: the route template says what was asked."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Callable[[], Any], send: Callable[[Message], Any]) -> None:
        if scope["type"] != "http" or scope.get("path") in UNTRACED:
            await self.app(scope, receive, send)
            return
        carrier = {name.decode("latin-1").lower(): value.decode("latin-1")
                   for name, value in scope.get("headers") or () if name.lower() in (b"traceparent", b"tracestate")}
        method = str(scope.get("method", "GET"))
        span = _tracer().start_span(method, context=PROPAGATOR.extract(carrier) if carrier else Context(),
                                    kind=SpanKind.SERVER,
                                    attributes={"http.request.method": method,
                                                "url.scheme": str(scope.get("scheme", "http"))})
        status = 0

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        with trace.use_span(span, end_on_exit=True, record_exception=False, set_status_on_exception=False):
            try:
                await self.app(scope, receive, send_status)
            except Exception as exc:
                _failed(span, type(exc).__name__)
                raise
            finally:
                route = getattr(scope.get("route"), "path", None)
                if isinstance(route, str) and route:
                    span.update_name(f"{method} {route}")
                    span.set_attribute("http.route", route)
                if status:
                    span.set_attribute("http.response.status_code", status)
                    if status >= 500:
                        _failed(span, str(status))
