"""The citizen's status pages, public (no account, no cookie, no script): /suivi, where
the code of the receipt is typed, and /suivi/{code}, where the request stands. A code
that opens nothing — unknown, mistyped, expired, replaced — gets one and the same page
(404), and every client address may try only so many codes (429 past the limit). The
pages are not cached, not indexed, and send no referrer (the code is in the address)."""

from __future__ import annotations

import math
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from limits import parse
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter

from relais_kit.envelope import now
from relais_kit.logs import log
from relais_kit.throttle import client_address
from relais_referral.domain import status_link
from relais_referral.entrypoints.ui.pages import context, pages, transaction
from relais_referral.service_layer import status_links

router = APIRouter()
HEADERS = {"Cache-Control": "no-store", "X-Robots-Tag": "noindex, nofollow", "Referrer-Policy": "no-referrer"}


class CodeThrottle:
    """How many codes one client address may try (the service's memory: per instance)."""

    def __init__(self, per_address: str) -> None:
        self._item = parse(per_address)
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    async def retry_after(self, address: str) -> int | None:
        """None when the address may try one more code (counted); else seconds to wait."""
        key = f"status-code:{address}"
        if await self._limiter.hit(self._item, key):
            return None
        stats = await self._limiter.get_window_stats(self._item, key)
        return max(1, math.ceil(stats.reset_time - time.time()))


def _throttle(request: Request) -> CodeThrottle:
    found: CodeThrottle | None = getattr(request.app.state, "status_throttle", None)
    if found is None:
        found = request.app.state.status_throttle = CodeThrottle(request.app.state.settings.status_limit_per_address)
    return found


def _page(request: Request, template: str, status_code: int = 200, headers: dict[str, str] | None = None,
          **values: Any) -> Response:
    html = pages(request).env.get_template(template).render(
        expires_days=status_link.EXPIRES_AFTER.days, opening_words=status_link.opening_words, **values)
    return HTMLResponse(html, status_code=status_code, headers={**HEADERS, **(headers or {})})


@router.get("/suivi")
async def ask_code(request: Request, code: str = "") -> Response:
    """The form; submitted (GET ?code=…), the code's own page."""
    if not code.strip():
        return _page(request, "ui/suivi_code.html.j2")
    canonical = status_link.typed_code(code[:40])
    if canonical is None:
        return await _missing(request)
    return RedirectResponse(f"/suivi/{status_link.grouped(canonical)}", status_code=303, headers=HEADERS)


@router.get("/suivi/{code}")
async def show(request: Request, code: str) -> Response:
    wait = await _throttle(request).retry_after(client_address(request))
    if wait is not None:
        log.warning("status_code_throttled")
        return _page(request, "ui/suivi_code.html.j2", 429, {"Retry-After": str(wait)}, throttled=True)
    at = now()
    async with transaction(request) as conn:
        found = await status_links.read(conn, context(request), code[:40], at)
    if found is None:
        return _page(request, "ui/suivi_code.html.j2", 404, missing=True)
    return _page(request, "ui/suivi.html.j2", p=found, at=at)


async def _missing(request: Request) -> Response:
    wait = await _throttle(request).retry_after(client_address(request))
    if wait is not None:
        return _page(request, "ui/suivi_code.html.j2", 429, {"Retry-After": str(wait)}, throttled=True)
    return _page(request, "ui/suivi_code.html.j2", 404, missing=True)
