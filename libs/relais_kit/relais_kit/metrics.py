"""What every process tells Prometheus (`GET /metrics`, prometheus-client's text format).

Names follow the OpenTelemetry semantic conventions where they exist (HTTP server,
messaging: an attribute `messaging.destination.name` becomes the label
`messaging_destination_name`), `relais_*` for the platform's own. A label never holds a
referral id, an event id or anything about a person: topics, consumer groups, schemas,
loops, routes (the template, never the path), error codes.
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest
from starlette.requests import Request
from starlette.responses import Response

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

KAFKA = "kafka"
# The OpenTelemetry HTTP and messaging duration buckets (seconds).
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
# RELAIS_METRICS=0: the metrics counted per request and per record do nothing (what
# `make bench` runs against, to price them); those set on a timer stay.
PER_EVENT = os.environ.get("RELAIS_METRICS", "1") != "0"


class _Off:
    """Stands for a per-event metric when RELAIS_METRICS=0: every call does nothing."""

    def labels(self, *_: object) -> _Off:
        return self

    def inc(self, *_: object) -> None:
        pass

    observe = set = inc


def _per_event(make: Callable[[], Any]) -> Any:
    return make() if PER_EVENT else _Off()


http_server_request_duration = _per_event(lambda: Histogram(
    "http_server_request_duration_seconds", "Duration of HTTP server requests.",
    ["http_request_method", "http_route", "http_response_status_code"], buckets=DURATION_BUCKETS))

sent_messages = _per_event(lambda: Counter(
    "messaging_client_sent_messages_total",
    "Records handed to the broker and acknowledged by it (error_type set when refused).",
    ["messaging_system", "messaging_destination_name", "error_type"]))
consumed_messages = _per_event(lambda: Counter(
    "messaging_client_consumed_messages_total", "Records received by a consumer (duplicates included).",
    ["messaging_system", "messaging_destination_name", "messaging_consumer_group_name"]))
process_duration = _per_event(lambda: Histogram(
    "messaging_process_duration_seconds",
    "Time to handle one record, its transaction included (error_type set when it failed).",
    ["messaging_system", "messaging_destination_name", "messaging_consumer_group_name", "error_type"],
    buckets=DURATION_BUCKETS))

outbox_pending = Gauge("relais_outbox_pending_rows",
                       "Outbox rows committed and not yet published (parked rows excluded).", ["schema"])
outbox_oldest_age = Gauge("relais_outbox_oldest_pending_age_seconds",
                          "Age of the oldest outbox row waiting to be published (0 when none).", ["schema"])
outbox_published = _per_event(lambda: Counter("relais_outbox_published_total", "Outbox rows published.",
                                              ["schema"]))
outbox_parked = Gauge("relais_outbox_parked_rows",
                      "Outbox rows set aside because they can never be published, waiting for ops "
                      "(python -m relais_kit.parked: retry or discard).", ["schema"])

dead_letters = _per_event(lambda: Counter("relais_dead_letters_total",
                                          "Records sent to their topic's dead-letter twin.",
                                          ["source_topic", "consumer", "error"]))
consumer_retries = _per_event(lambda: Counter(
    "relais_consumer_retries_total",
    "Records tried again: kind=transient (database or broker away), handler_failed (a bug or a poison record).",
    ["consumer", "kind"]))
consumer_last_processed = _per_event(lambda: Gauge("relais_consumer_last_processed_timestamp_seconds",
                                                   "When the consumer last finished a record (Unix time).",
                                                   ["consumer"]))

loop_healthy = Gauge("relais_loop_healthy",
                     "1 when the background loop runs and makes progress; 0 when it is stalled, "
                     "failing or stopped (then /healthz is 503 and says why).", ["loop"])
loop_restarts = Counter("relais_loop_restarts_total", "Background loops started again after a failure.", ["loop"])


def route_of(scope: Scope) -> str:
    """The route's template (`/api/referrals/{referral_id}`), never the path: a path
    holds ids. Requests that matched no route share one label."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return str(path) if path else "unmatched"


class HttpMetrics:
    """Plain ASGI: the duration of every HTTP request, by method, route and status."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            http_server_request_duration.labels(
                str(scope.get("method", "")), route_of(scope), str(status)).observe(time.perf_counter() - started)


async def metrics_endpoint(_: Request) -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
