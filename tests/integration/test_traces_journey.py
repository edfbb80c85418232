"""One referral's journey is one trace across three processes: the adviser's request to
the referral service, the routing, the operator's reply (the simulator, a process of its
own that passes the record's `traceparent` on), the notification. The services and the
simulator export their spans by OTLP/HTTP, configured only by the standard OTEL_*
variables, to a receiver in this test; the spans are checked from what it received."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from deploy.local.launcher import LocalPlatform

SITE = "agen-leon-blum-poste"
OPERATOR = "caf"
DEADLINE_S = 90.0
TRACE_ID = uuid.uuid4().hex  # the trace the adviser's browser (this test) started
CALLER_SPAN_ID = uuid.uuid4().hex[:16]
CONSUMER, PRODUCER, SERVER = 5, 4, 2  # OTLP's span kinds


@dataclass(frozen=True)
class Span:
    service: str
    name: str
    kind: int
    trace_id: str
    span_id: str
    parent_id: str
    attributes: dict[str, Any]
    error: bool


class SpanReceiver(ThreadingHTTPServer):
    """An OTLP/HTTP (protobuf) trace receiver: POST /v1/traces, the spans kept."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Export)
        self.spans: list[Span] = []
        self.lock = threading.Lock()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def of_trace(self, trace_id: str) -> list[Span]:
        with self.lock:
            return [s for s in self.spans if s.trace_id == trace_id]


class _Export(BaseHTTPRequestHandler):
    server: SpanReceiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.path != "/v1/traces" or self.headers.get("Content-Encoding") not in (None, "identity"):
            self.send_error(415 if self.path == "/v1/traces" else 404)
            return
        request = ExportTraceServiceRequest.FromString(body)
        received = []
        for resource_spans in request.resource_spans:
            service = next(a.value.string_value for a in resource_spans.resource.attributes
                           if a.key == "service.name")
            for scope_spans in resource_spans.scope_spans:
                for s in scope_spans.spans:
                    attributes = {a.key: getattr(a.value, a.value.WhichOneof("value") or "string_value")
                                  for a in s.attributes}
                    received.append(Span(service, s.name, s.kind, s.trace_id.hex(), s.span_id.hex(),
                                         s.parent_span_id.hex(), attributes, s.status.code == 2))
        with self.server.lock:
            self.server.spans += received
        answer = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture(scope="module")
def receiver() -> Iterator[SpanReceiver]:
    server = SpanReceiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def platform(kafka_bootstrap: str, module_database_url: str, receiver: SpanReceiver,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPlatform]:
    data = Path(tmp_path_factory.mktemp("traced-platform"))
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "200",
           "OTEL_TRACES_EXPORTER": "", "OTEL_SDK_DISABLED": "", "RELAIS_SIMULATOR_ANSWER_DELAY": "0"}
    with LocalPlatform(data, bootstrap=kafka_bootstrap, database_url=module_database_url, ports="free",
                       simulated_operators=OPERATOR, demo_data=True, extra_env=env) as p:
        yield p


async def eventually(check: Any, what: str, timeout: float = DEADLINE_S) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result, done = await check()
        if done:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last: {result}")
        await asyncio.sleep(0.3)


async def refer_with_a_trace_of_our_own(platform: LocalPlatform) -> str:
    async with httpx.AsyncClient(base_url=platform.referral_url, timeout=30) as api:
        signed_in = await api.post("/api/v1/auth/token", data={"username": "demo-adviser", "password": "demo"})
        assert signed_in.status_code == 200, signed_in.text
        api.headers["Authorization"] = f"Bearer {signed_in.json()['access_token']}"
        citizen = {"given_name": "Camille", "family_name": "Martin-Tracé", "birth_date": "1990-03-14",
                   "contact": {"channel": "email", "email": f"camille.trace.{uuid.uuid4().hex[:6]}@example.fr",
                               "postal_address": {"street": "3 rue des Lilas", "postcode": "47000", "city": "Agen"}}}

        async def visit_opened() -> tuple[Any, bool]:  # the demo site reaches the service through `sites`
            visit = await api.post("/api/v1/visits", json={"site_id": SITE, "channel": "in_person",
                                                           "citizen": citizen})
            return visit, visit.status_code == 201

        visit = await eventually(visit_opened, f"site {SITE} to reach the referral service", timeout=60)
        created = await api.post(
            f"/api/v1/visits/{visit.json()['visit_id']}/referrals",
            headers={"traceparent": f"00-{TRACE_ID}-{CALLER_SPAN_ID}-01"},
            json={"operator": OPERATOR, "procedure": "caf.prime-activite", "consent": {"given": True},
                  "summary": "La personne a besoin d'aide pour sa demande de prime d'activité."})
        assert created.status_code == 201, created.text
        referral_id: str = created.json()["referral_id"]

        async def answered() -> tuple[str, bool]:
            shown = await api.get(f"/api/v1/referrals/{referral_id}")
            return shown.json()["status"], shown.json()["status"] == "answered"

        await eventually(answered, "the simulator's answer")
        return referral_id


def names(spans: list[Span]) -> set[tuple[str, str]]:
    return {(s.service, s.name) for s in spans}


async def test_one_referrals_journey_is_one_trace_across_the_services_and_the_operator(
        platform: LocalPlatform, receiver: SpanReceiver) -> None:
    referral_id = await refer_with_a_trace_of_our_own(platform)
    inbox, outbox = f"operator.{OPERATOR}.inbox", f"operator.{OPERATOR}.outbox"
    expected = {
        ("relais-referral", "POST /api/v1/visits/{visit_id}/referrals"),
        ("relais-referral", "send referrals"),            # referral.requested
        ("relais-referral", "process referrals"),         # the router
        ("relais-referral", f"send {inbox}"),             # referral.routed, to the operator
        ("operator-simulator", f"process {inbox}"),
        ("operator-simulator", f"send {outbox}"),         # acknowledged, answered
        ("relais-referral", f"process {outbox}"),
        ("relais-notifications", "process referrals"),    # the answer: a mail to the citizen queued
        ("relais-notifications", "deliver email"),        # sent by the delivery loop
        ("relais-notifications", "send notifications"),   # notification.sent
    }

    async def whole_journey() -> tuple[set[tuple[str, str]], bool]:
        spans = receiver.of_trace(TRACE_ID)
        seen = names(spans)
        # The citizen is told twice (sent, answered): a span may come before its parent's
        # batch is exported; wait for every parent too, then check the links below.
        ids = {s.span_id for s in spans}
        orphans = {(s.service, s.name) for s in spans if s.parent_id and s.parent_id not in ids
                   and s.parent_id != CALLER_SPAN_ID}
        return (expected - seen) | orphans, expected <= seen and not orphans

    await eventually(whole_journey, "every span of the journey, in the request's trace")
    spans = receiver.of_trace(TRACE_ID)
    by_id = {s.span_id: s for s in spans}

    request = next(s for s in spans if s.kind == SERVER and s.name.startswith("POST "))
    assert request.parent_id == CALLER_SPAN_ID  # the incoming traceparent was honoured
    assert request.attributes["http.route"] == "/api/v1/visits/{visit_id}/referrals"
    assert request.attributes["http.response.status_code"] == 201

    # Every hop is a child of the one before: each `process T` span's parent is a `send T`
    # span (in another process), each `send` span's parent the request, a `process` span or
    # (notification.sent) the delivery, whose parent is the `process` span that queued it.
    for span in spans:
        if span.name.startswith("process "):
            topic = span.name.removeprefix("process ")
            parent = by_id.get(span.parent_id)
            assert parent is not None and parent.name == f"send {topic}" and parent.kind == PRODUCER, span
            assert span.kind == CONSUMER and not span.error, span
            assert span.attributes["messaging.system"] == "kafka"
            assert span.attributes["messaging.destination.name"] == topic
            assert span.attributes["messaging.consumer.group.name"]
        elif span.name.startswith("send ") and span.service.startswith("relais-"):
            parent = by_id.get(span.parent_id)
            assert parent is not None and (parent is request or parent.name.startswith(("process ", "deliver "))), \
                span
            assert span.attributes["messaging.destination.name"] == span.name.removeprefix("send ")
        elif span.name.startswith("deliver "):
            parent = by_id.get(span.parent_id)
            assert parent is not None and (parent.service, parent.name) == ("relais-notifications",
                                                                            "process referrals"), span
    relayed = [s for s in spans if s.name == f"send {inbox}"]
    assert {s.attributes["messaging.kafka.message.key"] for s in relayed} == {referral_id}
    assert {s.attributes["messaging.consumer.group.name"] for s in spans if s.name == f"process {outbox}"} == {
        "relais-referral-operators"}

    # No personal data in any span the services exported, this trace's or another's.
    with receiver.lock:
        exported = repr(receiver.spans)
    for value in ("Camille", "Martin-Tracé", "camille.trace", "1990-03-14", "prime d'activité"):
        assert value not in exported

    # The services' log lines of this journey carry its trace id.
    log_text = platform.log_path("notifications").read_text()
    assert f'"trace_id": "{TRACE_ID}"' in log_text or f'"trace_id":"{TRACE_ID}"' in log_text
