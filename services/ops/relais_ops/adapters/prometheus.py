"""Prometheus' HTTP API, as the console reads it: instant queries (`/api/v1/query`) and
range queries (`/api/v1/query_range`), with a timeout. Anything but an answer (refused
connection, timeout, an error status, a malformed body) is `PrometheusUnavailable`:
the console then says that Prometheus does not answer and shows what it knows itself."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Protocol

import httpx

from relais_ops.domain.series import Sample, Series

__all__ = ["Prometheus", "PrometheusClient", "PrometheusUnavailable", "Sample", "Series"]


class PrometheusUnavailable(Exception):
    """Prometheus did not answer the query (the message says why)."""


class Prometheus(Protocol):
    async def query(self, expr: str) -> list[Sample]: ...

    async def query_range(self, expr: str, start: float, end: float, step_s: float) -> list[Series]: ...


def _value(raw: Any) -> float | None:
    """A sample's value (`[time, "1.5"]`); None for NaN and what is not a number."""
    try:
        value = float(raw[1])
    except (TypeError, ValueError, IndexError):
        return None
    return None if math.isnan(value) else value


def _labels(item: Mapping[str, Any]) -> dict[str, str]:
    metric = item.get("metric") or {}
    return {str(k): str(v) for k, v in metric.items()} if isinstance(metric, Mapping) else {}


def parse_vector(body: Any) -> list[Sample]:
    samples = []
    for item in _result(body, "vector"):
        value = _value(item.get("value"))
        if value is not None:
            samples.append(Sample(_labels(item), value))
    return samples


def parse_matrix(body: Any) -> list[Series]:
    series = []
    for item in _result(body, "matrix"):
        points = []
        for raw in item.get("values") or []:
            value = _value(raw)
            if value is not None:
                points.append((float(raw[0]), value))
        series.append(Series(_labels(item), tuple(points)))
    return series


def _result(body: Any, kind: str) -> list[Mapping[str, Any]]:
    if not isinstance(body, Mapping) or body.get("status") != "success":
        error = body.get("error") if isinstance(body, Mapping) else None
        raise PrometheusUnavailable(f"the query failed: {error or 'no success status'}")
    data = body.get("data")
    if not isinstance(data, Mapping) or data.get("resultType") != kind or not isinstance(data.get("result"), list):
        raise PrometheusUnavailable(f"the answer is not a {kind}")
    return [item for item in data["result"] if isinstance(item, Mapping)]


class PrometheusClient:
    def __init__(self, base_url: str, *, timeout_s: float = 5.0,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.transport = transport

    async def _get(self, path: str, params: Mapping[str, str]) -> Any:
        try:
            async with httpx.AsyncClient(base_url=self.base_url, timeout=self.timeout_s,
                                         transport=self.transport) as client:
                response = await client.get(path, params=dict(params))
        except httpx.HTTPError as exc:
            raise PrometheusUnavailable(f"{type(exc).__name__}: {exc}") from exc
        if response.status_code != 200:
            raise PrometheusUnavailable(f"Prometheus answered {response.status_code}")
        try:
            return response.json()
        except ValueError as exc:
            raise PrometheusUnavailable("Prometheus' answer is not JSON") from exc

    async def query(self, expr: str) -> list[Sample]:
        return parse_vector(await self._get("/api/v1/query", {"query": expr}))

    async def query_range(self, expr: str, start: float, end: float, step_s: float) -> list[Series]:
        return parse_matrix(await self._get("/api/v1/query_range", {
            "query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step_s:g}"}))
