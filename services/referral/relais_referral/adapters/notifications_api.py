"""The notifications service's HTTP API, called on behalf of a signed-in adviser with a
short-lived token of theirs, so that the notifications service decides and audits the
read as that adviser: here, the text of a letter to print."""

from __future__ import annotations

import httpx

TIMEOUT_S = 5.0


class LetterUnavailable(Exception):
    """Why no letter: `missing` (no such letter for this adviser), `erased` (retention
    or erasure), `down` (the service did not answer)."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


async def letter(base_url: str, token: str, delivery_id: str, *, timeout_s: float = TIMEOUT_S) -> str:
    url = f"{base_url.rstrip('/')}/api/v1/notifications/{delivery_id}/letter"
    try:
        async with httpx.AsyncClient(timeout=timeout_s) as client:
            response = await client.get(url, headers={"Authorization": f"Bearer {token}"})
    except httpx.HTTPError:
        raise LetterUnavailable("down") from None
    if response.status_code == 200:
        return response.text
    if response.status_code == 410:
        raise LetterUnavailable("erased")
    if response.status_code in (403, 404):
        raise LetterUnavailable("missing")
    raise LetterUnavailable("down")
