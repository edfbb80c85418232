"""The notifications service's HTTP API, called on behalf of a signed-in adviser with a
short-lived token of theirs, so that the notifications service decides and audits the
read as that adviser: here, the text of a letter to print, or its PDF."""

from __future__ import annotations

import httpx

TIMEOUT_S = 5.0
PDF_TIMEOUT_S = 15.0  # making a PDF takes a moment more


class LetterUnavailable(Exception):
    """Why no letter: `missing` (no such letter for this adviser), `erased` (retention
    or erasure), `down` (the service did not answer)."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


async def letter(base_url: str, token: str, delivery_id: str, *, timeout_s: float = TIMEOUT_S) -> str:
    return (await _get(f"{base_url.rstrip('/')}/api/v1/notifications/{delivery_id}/letter", token,
                       timeout_s)).text


async def letter_pdf(base_url: str, token: str, delivery_id: str, *, timeout_s: float = PDF_TIMEOUT_S) -> bytes:
    """The letter as a PDF (A4, for a window envelope), made by the notifications service."""
    response = await _get(f"{base_url.rstrip('/')}/api/v1/notifications/{delivery_id}/letter.pdf", token,
                          timeout_s)
    if not response.headers.get("content-type", "").startswith("application/pdf"):
        raise LetterUnavailable("down")
    return response.content


async def letters_of_day(base_url: str, token: str, site_id: str, day: str, *,
                         timeout_s: float = PDF_TIMEOUT_S) -> bytes:
    """A site's letters of one day (`YYYY-MM-DD`) in one PDF; `missing` when there is
    none the adviser may read."""
    response = await _get(f"{base_url.rstrip('/')}/api/v1/notifications/letters.pdf", token, timeout_s,
                          params={"site_id": site_id, "date": day})
    if not response.headers.get("content-type", "").startswith("application/pdf"):
        raise LetterUnavailable("down")
    return response.content


async def _get(url: str, token: str, timeout_s: float, *, params: dict[str, str] | None = None) -> httpx.Response:
    try:
        async with httpx.AsyncClient(timeout=timeout_s) as client:
            response = await client.get(url, params=params, headers={"Authorization": f"Bearer {token}"})
    except httpx.HTTPError:
        raise LetterUnavailable("down") from None
    if response.status_code == 200:
        return response
    if response.status_code == 410:
        raise LetterUnavailable("erased")
    if response.status_code in (403, 404, 422):
        raise LetterUnavailable("missing")
    raise LetterUnavailable("down")
