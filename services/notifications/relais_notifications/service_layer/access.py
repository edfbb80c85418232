"""Who may read which delivery — decided here and nowhere else in this service — and
the audit row of every read of personal data, in the reader's transaction.

The rule is the platform's (relais_kit.access): ops read everything, a supervisor their
department, an adviser their home site and the sites that depend on it; applied to this
service's view of the sites registry. A delivery whose site the view does not know
(yet) is an adviser's only on an exact match of the site, never a supervisor's."""

from __future__ import annotations

import uuid
from datetime import date, datetime, time, timedelta
from typing import Any

import asyncpg

from relais_kit.access import scope_of
from relais_kit.auth import User
from relais_kit.vault import Vault
from relais_notifications.adapters import audit, store
from relais_notifications.domain.french import PARIS


class NoSuchLetter(Exception):
    """No letter with this id that the reader may see: missing, not a letter, or out of
    their scope — the same answer for all three."""


class LetterErased(Exception):
    """The letter's content was erased (retention period over, or the citizen's request)."""

    def __init__(self, erased_at: datetime | None) -> None:
        super().__init__("letter erased")
        self.erased_at = erased_at


async def deliveries(conn: asyncpg.Connection, vault: Vault, user: User, *, referral_id: uuid.UUID | None,
                     adviser_id: str | None, limit: int) -> list[dict[str, Any]]:
    """The deliveries of a referral and/or an adviser that `user` may see, newest first."""
    found = await store.visible(conn, vault, scope_of(user), referral_id=referral_id,
                                adviser_id=adviser_id, limit=limit)
    await audit.record(conn, user_id=user.user_id, role=user.role, action="list",
                       referral_ids=(d["referral_id"] for d in found))
    return found


async def facts(conn: asyncpg.Connection, user: User, referral_id: uuid.UUID) -> list[dict[str, Any]]:
    """The facts of a referral's deliveries that `user` may see, oldest first, without
    any content (the ops console's view); audited as a list."""
    found = await store.facts(conn, scope_of(user), referral_id)
    await audit.record(conn, user_id=user.user_id, role=user.role, action="list",
                       referral_ids=(d["referral_id"] for d in found))
    return found


async def letter(conn: asyncpg.Connection, vault: Vault, user: User, delivery_id: uuid.UUID) -> str:
    """The printable text of a letter `user` may see (read and audited as printable_letter)."""
    return (await printable_letter(conn, vault, user, delivery_id)).text or ""  # never erased there


async def printable_letter(conn: asyncpg.Connection, vault: Vault, user: User,
                           delivery_id: uuid.UUID) -> store.PrintableLetter:
    """A letter `user` may see, with its sender, to print as a PDF (audited as `letter`);
    NoSuchLetter, or LetterErased once its text was erased."""
    found = await store.printable_letter(conn, vault, scope_of(user), delivery_id)
    if found is None:
        raise NoSuchLetter(str(delivery_id))
    if found.text is None:
        raise LetterErased(found.erased_at)
    await audit.record(conn, user_id=user.user_id, role=user.role, action="letter",
                       referral_ids=[found.referral_id], delivery_id=delivery_id)
    return found


async def letters_of_day(conn: asyncpg.Connection, vault: Vault, user: User, site_id: str,
                         day: date) -> list[store.PrintableLetter]:
    """The letters of `site_id` written on `day` (Paris time) that `user` may see, one
    audit row per letter; NoSuchLetter when there is none (none written, or none in
    the reader's scope: the same answer)."""
    start = datetime.combine(day, time(0), tzinfo=PARIS)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=PARIS)
    found = await store.letters_of_day(conn, vault, scope_of(user), site_id, start, end)
    if not found:
        raise NoSuchLetter(site_id)
    for letter_ in found:
        await audit.record(conn, user_id=user.user_id, role=user.role, action="letter",
                           referral_ids=[letter_.referral_id], delivery_id=letter_.id)
    return found
