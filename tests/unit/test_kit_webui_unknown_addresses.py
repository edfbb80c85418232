"""Unknown addresses of a server-rendered UI: a browser gets the UI's "Page introuvable"
(its layout, in French), while the API and other clients keep FastAPI's JSON."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import Response

from relais_kit import webui
from relais_kit.auth import REFERRAL_ISSUER
from relais_kit.tokenkeys import TokenKeySet, new_key
from relais_kit.tokens import FixedKeys, TokenSigner

KEY = TokenSigner(FixedKeys(TokenKeySet.of(new_key("k1"))), REFERRAL_ISSUER)
BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}


@pytest.fixture
def app(tmp_path: Path) -> FastAPI:
    (tmp_path / "problem.html.j2").write_text('<html lang="fr"><h1>{{ title }}</h1><p>{{ message }}</p></html>')
    pages = webui.Pages(tmp_path, signer=KEY, label="tests", production=False, registry=lambda request: None)
    app = FastAPI()
    pages.install_handlers(app)
    webui.security_headers(app)

    @app.get("/api/v1/things/{thing}")
    async def thing(thing: str) -> dict[str, str]:
        raise HTTPException(404, f"thing {thing} not found")

    @app.post("/deconnexion")
    async def sign_out(request: Request) -> Response:
        return pages.redirect(request, "/")

    return app


async def test_a_browser_gets_the_page_and_the_api_json(app: FastAPI) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ui") as client:
        page = await client.get("/nulle-part", headers=BROWSER)
        assert page.status_code == 404 and page.headers["content-type"].startswith("text/html")
        assert "<h1>Page introuvable</h1>" in page.text
        assert "default-src 'self'" in page.headers["content-security-policy"]  # a page like the others

        gone = await client.get("/deconnexion", headers=BROWSER)  # a form's address, typed in
        assert gone.status_code == 405 and "Page introuvable" in gone.text and gone.headers["allow"] == "POST"

        for path, headers in (("/nulle-part", {"Accept": "application/json"}), ("/nulle-part", {}),
                              ("/api/v1/nulle-part", BROWSER)):
            answer = await client.get(path, headers=headers)
            assert answer.status_code == 404 and answer.json() == {"detail": "Not Found"}, (path, headers)
        api = await client.get("/api/v1/things/t1", headers=BROWSER)  # the API's own 404 keeps its words
        assert api.status_code == 404 and api.json() == {"detail": "thing t1 not found"}


@pytest.mark.parametrize(("path", "accept", "page"), [
    ("/x", "text/html", True), ("/x", "application/json", False), ("/x", "", False),
    ("/api/v1/x", "text/html", False), ("/static/ui/none.css", "text/html", False)])
def test_who_wants_a_page(path: str, accept: str, page: bool) -> None:
    request = Request({"type": "http", "method": "GET", "path": path, "query_string": b"",
                       "headers": [(b"accept", accept.encode())] if accept else []})
    assert webui.wants_page(request) is page
