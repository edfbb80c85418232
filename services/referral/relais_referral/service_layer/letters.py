"""The letters a referral's citizen was sent (the `letter` channel): which one a user
may ask the notifications service to print. The delivery id must be one this
referral's timeline names (noted from `notification.sent`), and the referral one of the
user's scope: a delivery id taken from another referral is not found."""

from __future__ import annotations

import asyncpg

from relais_kit.auth import User
from relais_kit.vault import Vault
from relais_referral.adapters import store
from relais_referral.service_layer.errors import NotFound
from relais_referral.service_layer.scope import may_see


def letter_ids(timeline: list[dict[str, object]]) -> list[str]:
    """The delivery ids of the letters on a timeline (store.timeline's entries), in order."""
    found = []
    for entry in timeline:
        detail = entry.get("detail")
        if entry.get("event") == "notification.sent" and isinstance(detail, dict) \
                and detail.get("channel") == "letter" and detail.get("notification_id"):
            found.append(str(detail["notification_id"]))
    return found


async def check_letter(conn: asyncpg.Connection, vault: Vault, user: User, referral_id: str,
                       delivery_id: str) -> None:
    """Raises NotFound unless `user` may see the referral and it was sent that letter."""
    site_id = await conn.fetchval("SELECT site_id FROM referrals WHERE referral_id = $1", referral_id)
    if site_id is None or not await may_see(conn, user, site_id):
        raise NotFound(f"referral {referral_id} not found")
    if delivery_id not in letter_ids(await store.timeline(conn, vault, referral_id)):
        raise NotFound(f"no letter {delivery_id} for referral {referral_id}")
