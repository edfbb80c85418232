"""relais_kit.tracing: which exporter the OTEL_* variables ask for, the trace context an
outbox row stores and a record carries, the messaging and HTTP spans and their
parents, with the SDK's in-memory exporter and fakes of the producer and the database."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from aiokafka import ConsumerRecord
from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from relais_kit import tracing
from relais_kit.consumer import EventConsumer, Refused
from relais_kit.contract import load_contract
from relais_kit.envelope import CloudEvent, event_type, to_record
from relais_kit.settings import REPO_ROOT

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"
RETIRED = event_type("site.retired")
CONTRACT = load_contract(REPO_ROOT / "schemas")


MEMORY = InMemorySpanExporter()
PROVIDER = TracerProvider()  # not the global one: the rest of the test session traces nothing
PROVIDER.add_span_processor(SimpleSpanProcessor(MEMORY))
TEST_TRACER = PROVIDER.get_tracer("test")


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    monkeypatch.setattr(tracing, "_tracer", lambda: PROVIDER.get_tracer(tracing.TRACER_NAME))
    MEMORY.clear()
    yield MEMORY
    MEMORY.clear()


def only(memory: InMemorySpanExporter, name: str) -> ReadableSpan:
    found = [s for s in memory.get_finished_spans() if s.name == name]
    assert len(found) == 1, [s.name for s in memory.get_finished_spans()]
    return found[0]


def ids(traceparent: str) -> tuple[str, str]:
    version, trace_id, span_id, _flags = traceparent.split("-")
    assert version == "00"
    return trace_id, span_id


# ------------------------------------------------------------------ configuration

@pytest.mark.parametrize(("environ", "expected"), [
    ({}, []),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, ["otlp"]),
    ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, ["otlp"]),
    ({"OTEL_TRACES_EXPORTER": "console"}, ["console"]),
    ({"OTEL_TRACES_EXPORTER": "otlp,console"}, ["otlp", "console"]),
    ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, []),
    ({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}, []),
    ({"OTEL_SDK_DISABLED": "false", "OTEL_TRACES_EXPORTER": "otlp"}, ["otlp"]),
])
def test_the_standard_variables_choose_the_exporter(environ: dict[str, str], expected: list[str]) -> None:
    assert tracing.exporter_names(environ) == expected


def test_an_unknown_exporter_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="zipkin"):
        tracing.exporter_names({"OTEL_TRACES_EXPORTER": "zipkin"})


def test_without_any_variable_nothing_is_installed() -> None:
    assert tracing.configure_tracing("referral", {}) is False
    assert not isinstance(trace.get_tracer_provider(), TracerProvider)


# ------------------------------------------------------------------ stored and carried context

def test_no_traceparent_is_stored_outside_a_span() -> None:
    assert tracing.current_traceparent() is None


def test_the_current_span_is_what_an_outbox_row_stores(spans: InMemorySpanExporter) -> None:
    with TEST_TRACER.start_as_current_span("request") as span:
        stored = tracing.current_traceparent()
    assert stored is not None
    context = span.get_span_context()
    assert ids(stored) == (trace.format_trace_id(context.trace_id), trace.format_span_id(context.span_id))


@pytest.mark.parametrize("headers", [
    [("traceparent", TRACEPARENT.encode())],
    [("ce_traceparent", TRACEPARENT.encode())],  # the CloudEvents extension, when alone
    [("traceparent", TRACEPARENT.encode()), ("ce_traceparent", b"00-" + b"1" * 32 + b"-" + b"2" * 16 + b"-01")],
])
def test_a_record_carries_its_context_in_traceparent(headers: list[tuple[str, bytes]]) -> None:
    context = tracing.record_context([("ce_id", b"e1"), *headers])
    assert context is not None
    parent = trace.get_current_span(context).get_span_context()
    assert (trace.format_trace_id(parent.trace_id), trace.format_span_id(parent.span_id)) == (TRACE_ID, PARENT_ID)


@pytest.mark.parametrize("headers", [[], [("traceparent", b"garbage")], [("traceparent", None)],
                                     [("traceparent", f"00-{'0' * 32}-{PARENT_ID}-01".encode())]])
def test_a_record_without_a_valid_traceparent_has_no_context(headers: list[tuple[str, bytes | None]]) -> None:
    assert tracing.record_context(headers) is None


# ------------------------------------------------------------------ the relay's send span

class Metadata:
    partition, offset = 2, 41


class FakeProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, list[tuple[str, bytes]]]] = []
        self.future: asyncio.Future[Any] | None = None

    async def send(self, topic: str, value: bytes | None = None, key: bytes | None = None,
                   partition: int | None = None, timestamp_ms: int | None = None,
                   headers: list[tuple[str, bytes]] | None = None) -> asyncio.Future[Any]:
        assert key is not None
        self.sent.append((topic, key, list(headers or [])))
        self.future = asyncio.get_running_loop().create_future()
        return self.future


async def test_a_record_is_sent_in_a_producer_span_child_of_the_stored_context(
        spans: InMemorySpanExporter) -> None:
    producer = FakeProducer()
    future = await tracing.send_traced(producer, "operator.caf.inbox", TRACEPARENT, key=b"r-1", value=b"{}",
                                       headers=[("ce_id", b"e-1")])
    assert not spans.get_finished_spans()  # ends with the broker's answer
    assert producer.future is not None
    producer.future.set_result(Metadata())
    await future
    await asyncio.sleep(0)  # the future's callbacks run
    span = only(spans, "send operator.caf.inbox")
    assert span.kind is SpanKind.PRODUCER
    assert span.parent is not None and trace.format_span_id(span.parent.span_id) == PARENT_ID
    assert trace.format_trace_id(span.context.trace_id) == TRACE_ID
    assert span.attributes is not None
    assert {k: span.attributes[k] for k in ("messaging.system", "messaging.destination.name",
                                            "messaging.operation.type", "messaging.kafka.message.key",
                                            "messaging.message.id", "messaging.destination.partition.id",
                                            "messaging.kafka.offset")} == {
        "messaging.system": "kafka", "messaging.destination.name": "operator.caf.inbox",
        "messaging.operation.type": "send", "messaging.kafka.message.key": "r-1", "messaging.message.id": "e-1",
        "messaging.destination.partition.id": "2", "messaging.kafka.offset": 41}
    # The record carries the send span's own context, as `traceparent`.
    _, _, headers = producer.sent[0]
    assert headers[0] == ("ce_id", b"e-1")
    carried = dict(headers)["traceparent"].decode()
    assert ids(carried) == (TRACE_ID, trace.format_span_id(span.context.span_id))


async def test_a_row_without_context_is_sent_in_a_root_span_and_a_refusal_marks_it(
        spans: InMemorySpanExporter) -> None:
    producer = FakeProducer()
    with TEST_TRACER.start_as_current_span("unrelated"):  # not the row's context
        future = await tracing.send_traced(producer, "referrals", None, key=b"r-1", value=b"{}", headers=[])
    assert producer.future is not None
    producer.future.set_exception(RuntimeError("refused"))
    with pytest.raises(RuntimeError):
        await future
    await asyncio.sleep(0)
    span = only(spans, "send referrals")
    assert span.parent is None
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes is not None and span.attributes["error.type"] == "RuntimeError"


# ------------------------------------------------------------------ the consumer's process span

class FakeConn:
    def __init__(self, seen: set[str]) -> None:
        self.seen = seen

    @asynccontextmanager
    async def transaction(self) -> Any:
        yield

    async def fetchval(self, _sql: str, _name: str, event_id: str, *_where_from: object) -> bool | None:
        if event_id in self.seen:
            return None
        self.seen.add(event_id)
        return True


class FakePool:
    def __init__(self) -> None:
        self.seen: set[str] = set()

    @asynccontextmanager
    async def acquire(self) -> Any:
        yield FakeConn(self.seen)


class FakeDlqProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, bytes]]] = []

    async def send_and_wait(self, topic: str, value: Any, key: Any, headers: list[tuple[str, bytes]]) -> None:
        self.sent.append((topic, dict(headers)))


def retired_record(traceparent: str | None) -> ConsumerRecord:
    event = CloudEvent(type=RETIRED, source="/t", subject="vigny-poste", id="e-7",
                       data={"site_id": "vigny-poste", "retired_at": "2026-11-20T10:00:00+01:00"})
    key, value, headers = to_record(event)
    if traceparent:
        headers.append(("traceparent", traceparent.encode()))
    return ConsumerRecord("sites", 1, 12, 0, 0, key, value, None, len(key), len(value), headers)


def consumer_with(handler: Any) -> tuple[EventConsumer, FakeDlqProducer]:
    producer = FakeDlqProducer()
    consumer = EventConsumer(name="relais-referral-sites", bootstrap="unused", topics=["sites"],
                             producer=producer, pool=FakePool(), contract=CONTRACT,  # type: ignore[arg-type]
                             handlers={RETIRED: handler})
    return consumer, producer


async def test_a_record_is_handled_in_a_consumer_span_whose_context_the_handler_writes(
        spans: InMemorySpanExporter) -> None:
    stored: list[str | None] = []

    async def handler(_delivery: Any, _conn: Any) -> None:
        stored.append(tracing.current_traceparent())  # what outbox.record() keeps

    consumer, _ = consumer_with(handler)
    await consumer.handle(retired_record(TRACEPARENT))
    span = only(spans, "process sites")
    assert span.kind is SpanKind.CONSUMER
    assert span.parent is not None and trace.format_span_id(span.parent.span_id) == PARENT_ID
    assert span.attributes is not None
    assert span.attributes["messaging.consumer.group.name"] == "relais-referral-sites"
    assert span.attributes["messaging.destination.name"] == "sites"
    assert span.attributes["messaging.message.id"] == "e-7"
    assert span.attributes["messaging.kafka.offset"] == 12
    assert span.status.status_code is not StatusCode.ERROR
    assert stored[0] is not None
    assert ids(stored[0]) == (TRACE_ID, trace.format_span_id(span.context.span_id))


async def test_a_dead_lettered_record_leaves_a_failed_span(spans: InMemorySpanExporter) -> None:
    async def handler(_delivery: Any, _conn: Any) -> None:
        raise Refused("unknown_site", "no such site")

    consumer, producer = consumer_with(handler)
    await consumer.handle(retired_record(None))
    span = only(spans, "process sites")
    assert span.parent is None
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes is not None and span.attributes["error.type"] == "unknown_site"
    assert producer.sent and producer.sent[0][0] == "sites.dlq"


async def test_a_failing_handler_fails_its_span_by_type_only(spans: InMemorySpanExporter) -> None:
    async def handler(_delivery: Any, _conn: Any) -> None:
        raise KeyError("nadia.dupont@example.fr")

    consumer, _ = consumer_with(handler)
    with pytest.raises(KeyError):
        await consumer.handle(retired_record(TRACEPARENT))
    span = only(spans, "process sites")
    assert span.status.status_code is StatusCode.ERROR
    assert "nadia" not in str(span.to_json())


def test_work_picked_up_later_resumes_the_trace_that_queued_it(spans: InMemorySpanExporter) -> None:
    with tracing.resumed("deliver email", TRACEPARENT, {"relais.notification.channel": "email"}):
        written = tracing.current_traceparent()  # notification.sent, recorded meanwhile
    span = only(spans, "deliver email")
    assert span.parent is not None and trace.format_span_id(span.parent.span_id) == PARENT_ID
    assert written is not None and ids(written) == (TRACE_ID, trace.format_span_id(span.context.span_id))
    with pytest.raises(ValueError), tracing.resumed("deliver sms", None):
        raise ValueError("+33612345678 refused")
    failed = only(spans, "deliver sms")
    assert failed.parent is None and failed.status.status_code is StatusCode.ERROR
    assert "+33612345678" not in str(failed.to_json())


# ------------------------------------------------------------------ HTTP and logs

def traced_app() -> FastAPI:
    app = FastAPI(telemetry=tracing.FASTAPI_TELEMETRY)

    @app.get("/api/v1/referrals/{referral_id}")
    async def show(referral_id: str) -> dict[str, str]:
        return {"trace": tracing.current_traceparent() or ""}

    @app.get("/healthz")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    app.add_middleware(tracing.TraceRequests)
    return app


async def test_a_request_is_a_server_span_named_by_its_route_and_honours_traceparent(
        spans: InMemorySpanExporter) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=traced_app()), base_url="http://t") as api:
        answer = await api.get("/api/v1/referrals/r-1", headers={"traceparent": TRACEPARENT})
        missing = await api.get("/nowhere")
        await api.get("/healthz")
    span = only(spans, "GET /api/v1/referrals/{referral_id}")
    assert span.kind is SpanKind.SERVER
    assert span.parent is not None and trace.format_span_id(span.parent.span_id) == PARENT_ID
    assert span.attributes is not None
    assert span.attributes["http.route"] == "/api/v1/referrals/{referral_id}"
    assert span.attributes["http.response.status_code"] == 200
    assert ids(answer.json()["trace"]) == (TRACE_ID, trace.format_span_id(span.context.span_id))
    assert missing.status_code == 404
    unrouted = only(spans, "GET")
    assert unrouted.parent is None and unrouted.status.status_code is not StatusCode.ERROR
    assert len(spans.get_finished_spans()) == 2  # the health probe is not traced


def test_log_lines_carry_the_current_trace_and_span_ids(spans: InMemorySpanExporter) -> None:
    assert tracing.add_trace_ids(None, "info", {"event": "x"}) == {"event": "x"}
    with TEST_TRACER.start_as_current_span("work") as span:
        line = tracing.add_trace_ids(None, "info", {"event": "x"})
    context = span.get_span_context()
    assert line == {"event": "x", "trace_id": trace.format_trace_id(context.trace_id),
                    "span_id": trace.format_span_id(context.span_id)}
