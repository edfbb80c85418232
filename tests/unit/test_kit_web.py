"""What every service's HTTP API shares (relais_kit.web) and the settings it starts
from: bodies bounded before anything reads them, no caching of API answers, HSTS and
no interactive documentation in production, RELAIS_ENV taken literally."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from fastapi import FastAPI, Request
from pydantic import BaseModel

from relais_kit.runtime import Runtime
from relais_kit.settings import PlatformSettings
from relais_kit.web import BodyLimit, documentation, prepare_app

LIMIT = 4096
CHUNK = 1000
SETTINGS_VARIABLES = ("RELAIS_ENV", "RELAIS_JWT_SECRET", "RELAIS_DATA_KEYS_FILE", "RELAIS_MAX_BODY_BYTES",
                      "RELAIS_TOKEN_KEYS_FILE", "RELAIS_TOKEN_JWKS_URL")


class Visit(BaseModel):
    note: str


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[pytest.MonkeyPatch]:
    for name in SETTINGS_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RELAIS_MAX_BODY_BYTES", str(LIMIT))
    yield monkeypatch


def production(environment: pytest.MonkeyPatch, tmp_path: Path) -> PlatformSettings:
    environment.setenv("RELAIS_ENV", "production")
    environment.setenv("RELAIS_DATA_KEYS_FILE", str(tmp_path / "keys.json"))
    return PlatformSettings()


class App:
    """A tiny service: what its routes saw of each request."""

    def __init__(self, settings: PlatformSettings) -> None:
        self.called: list[str] = []
        self.read = 0
        app = FastAPI(**documentation(settings))

        @app.post("/api/v1/visits")
        async def create(visit: Visit) -> dict[str, int]:
            self.called.append("create")
            return {"length": len(visit.note)}

        @app.post("/api/v1/upload")
        async def upload(request: Request) -> dict[str, int]:
            self.called.append("upload")
            async for chunk in request.stream():
                self.read += len(chunk)
            return {"read": self.read}

        @app.get("/api/v1/things")
        async def things() -> list[str]:
            return ["a"]

        @app.get("/api/v1/things/{thing_id}")
        async def thing(thing_id: str) -> dict[str, str]:
            return {"id": thing_id}

        @app.get("/aujourdhui")
        async def page() -> dict[str, str]:
            return {"page": "today"}

        running = cast(Runtime, object())  # started: the routes answer
        self.app = prepare_app(app, settings, lambda: running)

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://relais.test")


async def test_a_body_declared_too_large_is_refused_before_the_route_is_called(environment: Any) -> None:
    service = App(PlatformSettings())
    async with service.client() as client:
        answer = await client.post("/api/v1/visits", content=b'{"note": "' + b"x" * LIMIT + b'"}',
                                   headers={"content-type": "application/json"})
    assert answer.status_code == 413
    assert answer.json()["errors"] == [{"field": "(body)", "message": f"at most {LIMIT} bytes"}]
    assert service.called == []


async def test_a_body_at_the_limit_is_read(environment: Any) -> None:
    service = App(PlatformSettings())
    note = "x" * (LIMIT - len('{"note":""}'))
    async with service.client() as client:
        answer = await client.post("/api/v1/visits", content=f'{{"note":"{note}"}}'.encode(),
                                   headers={"content-type": "application/json"})
        assert answer.status_code == 200 and answer.json() == {"length": len(note)}
        assert (await client.post("/api/v1/visits", json={"note": "bonjour"})).json() == {"length": 7}


class Upload:
    """A chunked body of `total` bytes, counting what was taken from it."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.sent = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while self.sent < self.total:
            self.sent += CHUNK
            yield b"x" * CHUNK


async def test_a_chunked_body_is_cut_off_as_soon_as_it_passes_the_limit(environment: Any) -> None:
    service = App(PlatformSettings())
    body = Upload(100 * 1024 * 1024)
    async with service.client() as client:
        answer = await client.post("/api/v1/upload", content=body.__aiter__())
    assert answer.status_code == 413
    assert service.read <= LIMIT, "the route never saw a byte past the limit"
    assert body.sent <= LIMIT + CHUNK, "nothing more was taken from the client"


async def test_a_chunked_body_too_large_for_a_parsed_route_is_a_413_too(environment: Any) -> None:
    service = App(PlatformSettings())
    body = Upload(100 * 1024 * 1024)
    async with service.client() as client:
        answer = await client.post("/api/v1/visits", content=body.__aiter__(),
                                   headers={"content-type": "application/json"})
    assert answer.status_code == 413 and answer.json()["errors"][0]["field"] == "(body)"
    assert answer.headers["cache-control"] == "no-store"
    assert service.called == [] and body.sent <= LIMIT + CHUNK


async def test_a_chunked_body_under_the_limit_is_read_whole(environment: Any) -> None:
    service = App(PlatformSettings())
    body = Upload(3 * CHUNK)
    async with service.client() as client:
        answer = await client.post("/api/v1/upload", content=body.__aiter__())
    assert answer.status_code == 200 and answer.json() == {"read": 3 * CHUNK}


@pytest.mark.parametrize("declared", [b"12abc", b"-1", b" 10"])
async def test_a_nonsense_content_length_is_refused(declared: bytes) -> None:
    called: list[str] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        called.append("inner")

    sent: list[dict[str, Any]] = []

    async def send(message: Any) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    await BodyLimit(inner, LIMIT)({"type": "http", "path": "/api/v1/visits", "headers": [
        (b"content-length", declared)]}, receive, send)
    assert called == [] and sent[0]["status"] == 413


async def test_api_answers_are_never_cached_and_pages_are_left_alone(environment: Any) -> None:
    service = App(PlatformSettings())
    async with service.client() as client:
        assert (await client.get("/api/v1/things")).headers["cache-control"] == "no-store"
        assert (await client.get("/api/v1/nothing-here")).headers["cache-control"] == "no-store"
        page = await client.get("/aujourdhui")
        assert page.status_code == 200 and "cache-control" not in page.headers


async def test_hsts_is_sent_in_production_only(environment: Any, tmp_path: Path) -> None:
    async with App(PlatformSettings()).client() as client:
        assert "strict-transport-security" not in (await client.get("/api/v1/things")).headers
    async with App(production(environment, tmp_path)).client() as client:
        for answer in (await client.get("/api/v1/things"), await client.get("/aujourdhui"),
                       await client.get("/api/v1/nothing-here"),
                       await client.post("/api/v1/visits", content=b"x" * (LIMIT + 1))):
            assert answer.headers["strict-transport-security"].startswith("max-age="), answer.status_code
            assert int(answer.headers["strict-transport-security"].split(";")[0].split("=")[1]) >= 31536000


@pytest.mark.parametrize("path", ["/docs", "/redoc", "/openapi.json"])
async def test_the_api_documentation_is_served_outside_production_only(environment: Any, tmp_path: Path,
                                                                       path: str) -> None:
    async with App(PlatformSettings()).client() as client:
        assert (await client.get(path)).status_code == 200
    async with App(production(environment, tmp_path)).client() as client:
        assert (await client.get(path)).status_code == 404


@pytest.mark.parametrize("env", ["dev", "test"])
def test_dev_and_test_are_not_production(environment: pytest.MonkeyPatch, env: str) -> None:
    environment.setenv("RELAIS_ENV", env)
    assert not PlatformSettings().production


def test_no_relais_env_means_dev(environment: Any) -> None:
    settings = PlatformSettings()
    assert settings.env == "dev" and not settings.production


@pytest.mark.parametrize("env", ["prod", "Production", "PRODUCTION", "production ", "staging", ""])
def test_an_unknown_relais_env_is_refused(environment: pytest.MonkeyPatch, env: str) -> None:
    environment.setenv("RELAIS_ENV", env)
    with pytest.raises(ValueError, match="RELAIS_ENV must be one of dev, test, production"):
        PlatformSettings()


def test_production_needs_a_data_key_file(environment: pytest.MonkeyPatch) -> None:
    environment.setenv("RELAIS_ENV", "production")
    with pytest.raises(ValueError, match="RELAIS_DATA_KEYS_FILE must be set"):
        PlatformSettings()


@pytest.mark.parametrize("env", ["dev", "test", "production"])
def test_the_shared_jwt_secret_of_old_is_refused(environment: pytest.MonkeyPatch, tmp_path: Path, env: str) -> None:
    environment.setenv("RELAIS_ENV", env)
    environment.setenv("RELAIS_DATA_KEYS_FILE", str(tmp_path / "keys.json"))
    environment.setenv("RELAIS_JWT_SECRET", "a-secret-every-service-once-shared-0123456789")
    with pytest.raises(ValueError, match="RELAIS_JWT_SECRET is no longer used"):
        PlatformSettings()


def test_production_with_its_keys_starts(environment: pytest.MonkeyPatch, tmp_path: Path) -> None:
    settings = production(environment, tmp_path)
    assert settings.production and settings.data_keys_path("referral") == tmp_path / "keys.json"


async def test_every_request_is_measured_by_route_template_never_by_path(environment: Any) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    service = App(PlatformSettings())
    async with service.client() as client:
        for _ in range(3):
            assert (await client.get("/api/v1/things/R-7f3a9c2e")).status_code == 200
        assert (await client.get("/nowhere/R-7f3a9c2e")).status_code == 404
        assert (await client.post("/api/v1/visits", content=b"x" * (LIMIT + 1))).status_code == 413
        scraped = await client.get("/metrics")
    assert scraped.status_code == 200 and scraped.headers["content-type"].startswith("text/plain")
    counts = {(s.labels["http_request_method"], s.labels["http_route"], s.labels["http_response_status_code"]): s.value
              for family in text_string_to_metric_families(scraped.text) for s in family.samples
              if s.name == "http_server_request_duration_seconds_count"}
    assert counts[("GET", "/api/v1/things/{thing_id}", "200")] >= 3
    assert counts[("GET", "unmatched", "404")] >= 1
    assert counts[("POST", "unmatched", "413")] >= 1, "refused before routing: measured all the same"
    assert "R-7f3a9c2e" not in scraped.text


async def test_liveness_and_readiness_are_not_the_whole_health(environment: Any) -> None:
    app = prepare_app(FastAPI(), PlatformSettings(), lambda: None)  # still waiting for its database
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://relais.test") as client:
        assert (await client.get("/livez")).status_code == 200
        assert (await client.get("/readyz")).status_code == 503
        assert (await client.get("/healthz")).status_code == 503
