"""The services' ops API (`/api/v1/ops/...`, the ops role), called over HTTP with the
signed-in console user's own access token, so that each service checks and audits who
asks. A service that does not answer, answers an error or something unreadable raises
Unanswered with a short reason (no body is repeated: it could hold anything)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import quote

import httpx

from relais_ops.domain.journey import Consumed, Published, ServiceJourney
from relais_ops.domain.messages import Delivery
from relais_ops.service_layer.ops_api import Action, NotParked, ParkedRow, ServiceParked, Unanswered

NOTIFICATIONS = "notifications"  # the service that knows each message's delivery


class HttpOpsApi:
    def __init__(self, urls: Mapping[str, str], token: str, *, timeout_s: float = 5.0,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.urls = dict(urls)
        self.token = token
        self.timeout_s = timeout_s
        self.transport = transport

    def _client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(timeout=self.timeout_s, transport=self.transport, follow_redirects=False,
                                 headers={"Authorization": f"Bearer {self.token}"})

    def _url(self, service: str, path: str) -> str:
        return self.urls[service].rstrip("/") + path

    async def _request(self, method: str, service: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            async with self._client() as client:
                return await client.request(method, self._url(service, path), **kwargs)
        except httpx.TimeoutException as exc:
            raise Unanswered(f"pas de réponse en {self.timeout_s:g} s") from exc
        except httpx.HTTPError as exc:
            raise Unanswered(f"injoignable ({type(exc).__name__})") from exc

    @staticmethod
    def _decoded(response: httpx.Response) -> Any:
        if response.status_code in (401, 403):
            raise Unanswered(f"accès refusé ({response.status_code}) : reconnectez-vous")
        if response.status_code != 200:
            raise Unanswered(f"erreur {response.status_code}")
        try:
            return response.json()
        except ValueError as exc:
            raise Unanswered("réponse illisible") from exc

    @classmethod
    def _json(cls, response: httpx.Response) -> dict[str, Any]:
        body = cls._decoded(response)
        if not isinstance(body, dict):
            raise Unanswered("réponse illisible")
        return body

    async def journey(self, service: str, subject: str) -> ServiceJourney:
        response = await self._request("GET", service, f"/api/v1/ops/journey/{quote(subject, safe='')}")
        body = self._json(response)
        try:
            return ServiceJourney(
                str(body.get("service") or service),
                [Published(str(p["event_id"]), str(p["event_type"]), str(p["topic"]), _int(p.get("partition")),
                           _int(p.get("offset")), _time(p.get("created_at")), _time(p.get("published_at")),
                           p.get("traceparent") or None, p.get("status") or None)
                 for p in body.get("published") or []],
                [Consumed(str(c["consumer"]), str(c["event_id"]), str(c.get("event_type") or ""), str(c["topic"]),
                          _int(c.get("partition")), _int(c.get("offset")), _time(c.get("processed_at")))
                 for c in body.get("consumed") or []])
        except (KeyError, TypeError, ValueError) as exc:
            raise Unanswered("réponse illisible") from exc

    async def parked(self, service: str) -> ServiceParked:
        body = self._json(await self._request("GET", service, "/api/v1/ops/parked"))
        try:
            rows = [ParkedRow(int(r["id"]), str(r["topic"]), str(r["event_type"]), _time(r.get("created_at")),
                              _time(r.get("parked_at")), str(r.get("reason") or ""), int(r.get("waiting_behind") or 0))
                    for r in body.get("rows") or []]
        except (KeyError, TypeError, ValueError) as exc:
            raise Unanswered("réponse illisible") from exc
        return ServiceParked(service, str(body.get("schema") or ""), rows)

    async def act(self, service: str, row_id: int, action: Action, reason: str) -> None:
        response = await self._request("POST", service, f"/api/v1/ops/parked/{row_id}/{action}",
                                       json={"reason": reason})
        if response.status_code == 404:
            raise NotParked(f"{service}: row {row_id} is not parked")
        if response.status_code in (401, 403):
            raise Unanswered(f"accès refusé ({response.status_code}) : reconnectez-vous")
        if response.status_code not in (200, 204):
            raise Unanswered(f"erreur {response.status_code}")

    async def deliveries(self, referral_id: str) -> list[Delivery]:
        """The notifications service's `GET /api/v1/ops/deliveries`: facts only."""
        if NOTIFICATIONS not in self.urls:
            raise Unanswered("adresse du service inconnue")
        response = await self._request("GET", NOTIFICATIONS, "/api/v1/ops/deliveries",
                                       params={"referral_id": referral_id})
        body = self._decoded(response)
        if not isinstance(body, list):
            raise Unanswered("réponse illisible")
        try:
            return [Delivery(str(d["id"]), str(d["recipient"]), str(d["channel"]), str(d["status"]),
                             int(d.get("attempts") or 0), _text(d.get("reason")), _time(d.get("created_at")),
                             _time(d.get("sent_at")), _time(d.get("delivered_at")), _time(d.get("failed_at")),
                             _time(d.get("next_attempt_at")), _text(d.get("report")), _time(d.get("erased_at")))
                    for d in body]
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise Unanswered("réponse illisible") from exc


def _int(value: object) -> int | None:
    return None if value is None else int(str(value))


def _text(value: object) -> str | None:
    return None if value is None or value == "" else str(value)


def _time(value: object) -> datetime | None:
    if value is None or value == "":
        return None
    return datetime.fromisoformat(str(value))
