"""The ops service's HTTP surface: `/metrics` (Prometheus' text format, for the scraper),
`/healthz` (the lag monitor's last sampling succeeded recently) and `/api/lag` (every
consumer group's status and lag per partition, for the ops role). Nothing here names a
person: groups, topics, partitions, offsets."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field

from relais_kit.auth import User, require_role
from relais_ops.domain.lag import GroupLag
from relais_ops.service_layer.lag_monitor import LagMonitor

router = APIRouter()
Ops = Annotated[User, Depends(require_role("ops"))]

_AUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "No or invalid bearer token."},
    403: {"description": "The token's role is not ops."},
}


class PartitionLagView(BaseModel):
    topic: str
    partition: int
    committed_offset: int
    end_offset: int
    lag_records: int
    lag_seconds: float = Field(description="Age of the oldest unread record; 0 when none is unread.")
    status: str
    reason: str


class GroupLagView(BaseModel):
    group: str
    status: str = Field(description="OK, WARN, STALL, STOP or ERR (the worst of its partitions).")
    reason: str
    state: str = Field(description="The group's state as the broker tells it (Stable, Empty...).")
    members: int
    lag_records: int
    max_lag_seconds: float
    partitions: list[PartitionLagView]


class TopicEndView(BaseModel):
    topic: str
    partition: int
    end_offset: int


class LagView(BaseModel):
    sampled_at: float | None = Field(description="Unix time of the last successful sampling.")
    interval_s: float
    window: int
    groups: list[GroupLagView]
    ends: list[TopicEndView]


def monitor_of(request: Request) -> LagMonitor:
    monitor: LagMonitor = request.app.state.lag_monitor
    return monitor


def group_view(group: GroupLag) -> GroupLagView:
    return GroupLagView(
        group=group.name, status=group.status.value, reason=group.reason, state=group.state,
        members=group.members, lag_records=group.lag_records, max_lag_seconds=group.max_lag_seconds,
        partitions=[PartitionLagView(topic=p.partition.topic, partition=p.partition.partition,
                                     committed_offset=p.committed, end_offset=p.end, lag_records=p.lag_records,
                                     lag_seconds=p.lag_seconds, status=p.status.value, reason=p.reason)
                    for p in group.partitions])


@router.get("/api/lag", response_model=LagView, tags=["lag"], responses=_AUTH_ERRORS,
            summary="Every consumer group's status and lag, and every partition's end")
async def lag(request: Request, _: Ops) -> LagView:
    monitor = monitor_of(request)
    return LagView(sampled_at=monitor.sampled_at, interval_s=monitor.interval_s, window=monitor.book.size,
                   groups=[group_view(g) for g in monitor.groups],
                   ends=[TopicEndView(topic=pid.topic, partition=pid.partition, end_offset=end)
                         for pid, end in sorted(monitor.ends.items())])


@router.get("/healthz", tags=["ops"], summary="Whether the lag monitor's last sampling succeeded recently")
async def healthz(request: Request) -> JSONResponse:
    monitor: LagMonitor | None = getattr(request.app.state, "lag_monitor", None)
    if monitor is None:
        return JSONResponse({"status": "starting"}, status_code=503)
    problem = monitor.health.problem(monitor.healthy_within_s)
    if problem is not None:
        return JSONResponse({"status": "unhealthy", "reason": problem}, status_code=503)
    return JSONResponse({"status": "ok", "groups": len(monitor.groups)})


@router.get("/livez", tags=["ops"], summary="The process answers (an orchestrator's liveness)")
async def livez() -> JSONResponse:
    return JSONResponse({"status": "ok"})


@router.get("/readyz", tags=["ops"], summary="The service has started (an orchestrator's readiness)")
async def readyz(request: Request) -> JSONResponse:
    started = getattr(request.app.state, "lag_monitor", None) is not None
    return JSONResponse({"status": "ok" if started else "starting"}, status_code=200 if started else 503)


@router.get("/metrics", tags=["ops"], summary="Prometheus metrics (text format)")
async def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
