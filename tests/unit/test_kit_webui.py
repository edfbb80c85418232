"""The kit's web UI plumbing: the signed session cookie and its CSRF token, local paths
after sign-in, French dates, the pages (422 re-render, 303, problem pages, 403 without
CSRF) and the security headers of HTML pages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import Response

from relais_kit import webui
from relais_kit.auth import REFERRAL_ISSUER, TokenVerifier, api_audience, read_token
from relais_kit.tokenkeys import TokenKeySet, new_key
from relais_kit.tokens import FixedKeys, TokenSigner

LABEL = "tests"
KEY = TokenSigner(FixedKeys(TokenKeySet.of(new_key("k1"))), REFERRAL_ISSUER)
AUD = f"relais-ui:{LABEL}"
NOW = datetime.now(UTC)


def test_a_session_round_trips_with_its_data() -> None:
    session = webui.new_session(NOW, timedelta(hours=1), user_id="u1", display_name="Sophie",
                                data={"role": "adviser"}).with_data(place_id="pont-du-casse-mairie")
    back = webui.decode(webui.encode(session, KEY, AUD), KEY, AUD)
    assert back is not None and back.signed_in and back.csrf == session.csrf
    assert (back.user_id, back.display_name, dict(back.data)) == (
        "u1", "Sophie", {"role": "adviser", "place_id": "pont-du-casse-mairie"})
    assert back.with_data(place_id=None).get("place_id") is None


def test_an_anonymous_session_has_its_own_csrf_token() -> None:
    one, two = webui.new_session(NOW, timedelta(hours=1)), webui.new_session(NOW, timedelta(hours=1))
    back = webui.decode(webui.encode(one, KEY, AUD), KEY, AUD)
    assert back is not None and not back.signed_in and len(back.csrf) >= 32 and one.csrf != two.csrf


@pytest.mark.parametrize("token", [None, "", "garbage", "a.b.c"])
def test_nonsense_is_no_session(token: str | None) -> None:
    assert webui.decode(token, KEY, AUD) is None


async def test_a_forged_expired_or_foreign_session_is_refused() -> None:
    session = webui.new_session(NOW, timedelta(hours=1), user_id="u1")
    token = webui.encode(session, KEY, AUD)
    header, payload, signature = token.split(".")
    assert webui.decode(f"{header}.{payload}.{signature[::-1]}", KEY, AUD) is None
    expired = webui.new_session(NOW - timedelta(hours=2), timedelta(hours=1), user_id="u1")
    assert webui.decode(webui.encode(expired, KEY, AUD), KEY, AUD) is None
    other = TokenSigner(FixedKeys(TokenKeySet.of(new_key("k1"))), REFERRAL_ISSUER)
    assert webui.decode(webui.encode(session, other, AUD), KEY, AUD) is None
    assert webui.decode(token, KEY, "relais-ui:another-app") is None
    with pytest.raises(HTTPException, match="invalid token"):  # never a bearer token of the APIs
        await read_token(token, TokenVerifier(KEY, audience=api_audience("referral")))


def test_csrf_token_must_match_the_session() -> None:
    session = webui.new_session(NOW, timedelta(hours=1))
    assert webui.csrf_ok(session, session.csrf)
    assert not webui.csrf_ok(session, None)
    assert not webui.csrf_ok(session, "")
    assert not webui.csrf_ok(session, session.csrf[:-1] + ("A" if session.csrf[-1] != "A" else "B"))
    assert not webui.csrf_ok(None, session.csrf)


@pytest.mark.parametrize(("candidate", "expected"), [
    ("/aujourdhui", "/aujourdhui"), ("/demandes?statut=rejected", "/demandes?statut=rejected"),
    (None, "/"), ("", "/"), ("//evil.example/x", "/"), ("https://evil.example", "/"), ("/\\evil", "/"),
    ("/a\nb", "/"), ("aujourdhui", "/")])
def test_only_local_paths_are_followed_after_sign_in(candidate: str | None, expected: str) -> None:
    assert webui.local_path(candidate) == expected


def test_french_dates() -> None:
    at = datetime(2026, 11, 27, 17, 0, tzinfo=UTC)
    assert webui.fr_long(at) == "vendredi 27 novembre 2026 à 18 h 00"
    assert webui.fr_datetime(at) == "27/11/2026 à 18:00"
    assert webui.fr_date("2026-11-27T17:00:00+00:00") == "27/11/2026"
    assert webui.fr_long(None) == ""


class MemorySessions:
    """A fake of the server-side session registry (the real one is a table)."""

    def __init__(self) -> None:
        self.alive_ids: dict[str, str] = {}

    async def open(self, user_id: str, ttl: timedelta) -> str:
        session_id = f"s{len(self.alive_ids) + 1}-{user_id}"
        self.alive_ids[session_id] = user_id
        return session_id

    async def alive(self, session_id: str, user_id: str) -> bool:
        return self.alive_ids.get(session_id) == user_id

    async def end(self, session_id: str) -> None:
        self.alive_ids.pop(session_id, None)


@pytest.fixture
def app(tmp_path: Path) -> FastAPI:
    (tmp_path / "problem.html.j2").write_text("<h1>{{ title }}</h1><p>{{ message }}</p>")
    (tmp_path / "form.html.j2").write_text(
        '<form><input name="csrf_token" value="{{ csrf_token }}">{{ errors.get("name", "") }}'
        '{{ who }}</form>')
    registry = MemorySessions()
    pages = webui.Pages(tmp_path, signer=KEY, label=LABEL, production=False, registry=lambda request: registry,
                        context=lambda request, session: {"who": session.user_id or "anonyme"})
    app = FastAPI()
    app.state.registry = registry
    pages.install_handlers(app)
    webui.security_headers(app)

    @app.get("/form")
    async def form(request: Request) -> Response:
        return pages.render(request, "form.html.j2", errors={})

    @app.post("/form")
    async def post(request: Request) -> Response:
        data = await pages.checked_form(request)
        if not data.get("name"):
            return pages.invalid(request, "form.html.j2", {"name": "Indiquez le nom."})
        await pages.sign_in(request, data["name"], data["name"])
        return pages.redirect(request, "/form")

    @app.post("/out")
    async def out(request: Request) -> Response:
        await pages.checked_form(request)
        await pages.sign_out(request)
        return pages.redirect(request, "/form")

    @app.get("/missing")
    async def missing(request: Request) -> Response:
        raise webui.PageProblem(404, "Introuvable", "Rien ici.")

    @app.get("/away")
    async def away(request: Request) -> Response:
        raise webui.RedirectTo("/form")

    return app


async def test_pages_csrf_errors_redirects_and_headers(app: FastAPI) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ui") as client:
        page = await client.get("/form")
        assert page.status_code == 200 and "anonyme" in page.text
        assert page.headers["cache-control"] == "no-store" and page.headers["x-frame-options"] == "DENY"
        assert "default-src 'self'" in page.headers["content-security-policy"]
        assert "form-action 'self';" in page.headers["content-security-policy"]
        cookie = page.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=lax" in cookie and "secure" not in cookie
        token = page.text.split('value="')[1].split('"')[0]
        assert (await client.post("/form", data={"name": "x"})).status_code == 403
        assert (await client.post("/form", data={"name": "x", "csrf_token": "forged" * 8})).status_code == 403
        invalid = await client.post("/form", data={"csrf_token": token, "name": ""})
        assert invalid.status_code == 422 and "Indiquez le nom." in invalid.text
        done = await client.post("/form", data={"csrf_token": token, "name": "sophie"})
        assert done.status_code == 303 and done.headers["location"] == "/form"
        signed = await client.get("/form")
        assert "sophie" in signed.text and token not in signed.text  # a new session, a new token
        missing = await client.get("/missing")
        assert missing.status_code == 404 and "Rien ici." in missing.text
        docs = await client.get("/docs")  # FastAPI's own page, with its CDN scripts: left alone
        assert docs.status_code == 200 and "content-security-policy" not in docs.headers
        away = await client.get("/away")
        assert away.status_code == 303 and away.headers["location"] == "/form"


async def test_signing_out_ends_the_session_for_every_copy_of_the_cookie(app: FastAPI) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ui") as client:
        token = (await client.get("/form")).text.split('value="')[1].split('"')[0]
        await client.post("/form", data={"csrf_token": token, "name": "sophie"})
        copied = dict(client.cookies)
        page = await client.get("/form")
        assert "sophie" in page.text
        token = page.text.split('value="')[1].split('"')[0]
        assert (await client.post("/out", data={"csrf_token": token})).status_code == 303
    assert app.state.registry.alive_ids == {}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ui",
                                 cookies=copied) as thief:
        again = await thief.get("/form")
        assert "sophie" not in again.text and "anonyme" in again.text


async def test_a_signed_in_cookie_without_a_live_server_session_is_anonymous(app: FastAPI) -> None:
    key = KEY
    forged = webui.new_session(webui.now(), timedelta(hours=1), user_id="sophie", display_name="Sophie")
    cookie = {"relais_test_ui_session": webui.encode(forged, key, f"relais-ui:{LABEL}")}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ui",
                                 cookies=cookie) as client:
        assert "anonyme" in (await client.get("/form")).text


async def test_forms_may_lead_only_to_the_named_identity_provider() -> None:
    app = FastAPI()
    webui.security_headers(app, form_targets=("https://auth.example.gouv.fr",))

    @app.get("/page")
    async def page() -> Response:
        return Response("<p>page</p>", media_type="text/html")

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ui") as client:
        csp = (await client.get("/page")).headers["content-security-policy"]
    assert "form-action 'self' https://auth.example.gouv.fr;" in csp


def test_the_cookie_is_secure_in_production(tmp_path: Path) -> None:
    pages = webui.Pages(tmp_path, signer=KEY, label=LABEL, production=True, registry=lambda request: None)
    assert pages.cookie.startswith("__Host-") and pages.production
