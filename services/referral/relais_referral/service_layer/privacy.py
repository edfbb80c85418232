"""A citizen's rights over the personal data this service holds, and its erasure when
the retention period ends: finding their visits and referrals without their identity
in clear (blind indexes), exporting everything held about them (the right of access),
erasing it (the right to erasure, retention) — and asking the other services to do the
same through `privacy` events, in the same transaction."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import date, datetime
from typing import Any

import asyncpg
from joserfc.jwk import ECKey

from relais_kit import sealing
from relais_kit.envelope import CloudEvent
from relais_kit.vault import Vault
from relais_referral.adapters import privacy_store, store
from relais_referral.domain import identity, retention
from relais_referral.domain.lifecycle import Status
from relais_referral.domain.model import Citizen
from relais_referral.domain.retention import Erasure
from relais_referral.service_layer.context import Context

TOPIC = "privacy"
RETENTION = "retention"
ERASURE_REQUEST = "erasure_request"


@dataclass(frozen=True)
class Selector:
    """How a request names the citizen: `identity` (family name, given name, birth
    date), `email`, `phone`, `visit` or `referral` (an id)."""

    kind: str
    value: str = ""
    family_name: str = ""
    given_name: str = ""
    birth_date: date | None = None


async def visits_of(conn: asyncpg.Connection, vault: Vault, selector: Selector) -> list[str]:
    """The ids of the visits held about the citizen."""
    if selector.kind == "identity":
        key = identity.identity_key(selector.family_name, selector.given_name, selector.birth_date)
        return await privacy_store.visits_by_identity(conn, vault.blind_index(identity.IDENTITY, key))
    if selector.kind == "email":
        return await privacy_store.visits_by_contact(
            conn, vault.blind_index(identity.EMAIL, identity.email_key(selector.value)))
    if selector.kind == "phone":
        return await privacy_store.visits_by_contact(
            conn, vault.blind_index(identity.PHONE, identity.phone_key(selector.value)))
    if selector.kind == "visit":
        return await privacy_store.known_visits(conn, [selector.value])
    if selector.kind == "referral":
        visit_id = await privacy_store.visit_of_referral(conn, selector.value)
        return [visit_id] if visit_id else []
    raise ValueError(f"unknown selector {selector.kind!r}")


@dataclass(frozen=True)
class Held:
    """What the service holds about a citizen, without their data: for listing."""

    visits: list[dict[str, Any]]
    referrals: list[dict[str, Any]]

    @property
    def visit_ids(self) -> list[str]:
        return [v["visit_id"] for v in self.visits]

    @property
    def referral_ids(self) -> list[str]:
        return [r["referral_id"] for r in self.referrals]

    def in_progress(self) -> list[dict[str, Any]]:
        """The referrals not closed nor cancelled yet."""
        return [r for r in self.referrals if retention.in_progress(Status(r["status"]))]

    def groups(self) -> list[Erasure]:
        """Each visit with all its referrals: what travels together in an erasure request."""
        return [Erasure(tuple(r["referral_id"] for r in self.referrals if r["visit_id"] == v), (v,))
                for v in self.visit_ids]


VISIT_FACTS = ("site_id", "site_name", "adviser_id", "channel", "opened_at", "closed_at", "resolution",
               "anonymised_at")
REFERRAL_FACTS = ("operator", "procedure", "site_id", "site_name", "adviser_id", "status", "requested_at",
                  "consent_given_at", "due_at", "overdue_at", "updated_at", "closed_outcome",
                  "supersedes_referral_id", "anonymised_at")


async def held(conn: asyncpg.Connection, visit_ids: Sequence[str], *, for_update: bool = False) -> Held:
    visits = [{"visit_id": str(v["visit_id"]), **{k: v[k] for k in VISIT_FACTS}}
              for v in await privacy_store.visits(conn, visit_ids)]
    referrals = [{"referral_id": str(r["referral_id"]), "visit_id": str(r["visit_id"]),
                  **{k: _plain(r[k]) for k in REFERRAL_FACTS}}
                 for r in await privacy_store.referrals_of_visits(conn, visit_ids, for_update=for_update)]
    return Held(visits, referrals)


def _plain(value: Any) -> Any:
    return str(value) if isinstance(value, uuid.UUID) else value


async def everything_held(conn: asyncpg.Connection, vault: Vault, found: Held) -> dict[str, Any]:
    """The right of access: every visit with the citizen's identity and contact, every
    referral with its summary, its timeline (messages included) and who saw or changed it."""
    citizens = {str(row["visit_id"]): store.visit_of(row, vault).citizen
                for row in await privacy_store.visits(conn, found.visit_ids)}
    summaries = {str(row["referral_id"]): store.referral_of(row, vault).summary
                 for row in await privacy_store.referrals_of_visits(conn, found.visit_ids)}
    entries = await privacy_store.timelines(conn, found.referral_ids)
    audit = await privacy_store.audit_trail(conn, found.referral_ids)
    referrals = [{
        **referral, "summary": summaries.get(referral["referral_id"]),
        "timeline": [{"event": e["event"], "status": e["status"], "actor": e["actor"], "at": e["at"],
                      "detail": store.detail_of(e, vault)}
                     for e in entries if e["referral_id"] == referral["referral_id"]],
        "seen_or_changed_by": [{k: a[k] for k in ("at", "user_id", "role", "action", "channel")}
                               for a in audit if a["referral_id"] == referral["referral_id"]],
    } for referral in found.referrals]
    visits = [{**visit, "citizen": _citizen(citizens.get(visit["visit_id"]))} for visit in found.visits]
    return {"visits": visits, "referrals": referrals}


def _citizen(citizen: Citizen | None) -> dict[str, Any] | None:
    return asdict(citizen) if citizen is not None else None


@dataclass(frozen=True)
class Erased:
    referrals: list[str]  # the referrals whose personal data this erased
    visits: list[str]
    outbox_rows: int
    requests: list[str]  # the ids of the erasure requests published

    @property
    def counts(self) -> dict[str, int]:
        return {"referrals": len(self.referrals), "visits": len(self.visits), "outbox_rows": self.outbox_rows}


async def erase(conn: asyncpg.Connection, ctx: Context, groups: Iterable[Erasure], at: datetime, reason: str,
                request_id: str | None = None) -> Erased:
    """Erases the personal data of these referrals and visits and asks every other
    service to erase its copy (`personal_data.erasure_requested`, the first with
    `request_id`), in the caller's transaction."""
    requests = retention.erasures(groups)
    referral_ids = [r for e in requests for r in e.referral_ids]
    visit_ids = [v for e in requests for v in e.visit_ids]
    referrals = await privacy_store.anonymise_referrals(conn, ctx.vault, referral_ids, at, retention.stripped)
    visits = await privacy_store.anonymise_visits(conn, visit_ids, at)
    outbox_rows = await privacy_store.forget_published(conn, [*referral_ids, *visit_ids])
    ids = []
    for n, request in enumerate(requests):
        rid = request_id if n == 0 and request_id else str(uuid.uuid4())
        await ctx.publish(conn, TOPIC, "personal_data.erasure_requested", rid, {
            "request_id": rid, "reason": reason, "referral_ids": list(request.referral_ids),
            "visit_ids": list(request.visit_ids), "requested_at": at.isoformat()})
        ids.append(rid)
    return Erased(referrals, visits, outbox_rows, ids)


def reply_key(request_id: str) -> ECKey:
    """A one-off key: the other services seal their answers for its public half, and
    only the command that asked holds the private half."""
    return ECKey.generate_key("P-256", parameters={"kid": f"ops-access-{request_id}"}, private=True)


async def ask_access(conn: asyncpg.Connection, ctx: Context, request_id: str, found: Held, key: ECKey,
                     at: datetime) -> None:
    """`personal_data.access_requested` to every other service, in the caller's transaction."""
    if len(found.referral_ids) > retention.MAX_IDS or len(found.visit_ids) > retention.MAX_IDS:
        raise ValueError(f"more than {retention.MAX_IDS} visits or referrals: name the citizen more precisely")
    await ctx.publish(conn, TOPIC, "personal_data.access_requested", request_id, {
        "request_id": request_id, "referral_ids": found.referral_ids, "visit_ids": found.visit_ids,
        "requested_at": at.isoformat(), "reply_key": key.as_dict(private=False)})


def open_answer(ctx: Context, event: CloudEvent, key: ECKey) -> dict[str, Any]:
    """A service's `personal_data.access_answered`, opened with the request's key and
    checked against the contract: its records by kind."""
    plaintext = sealing.unseal(event.data["personal_data"], key, request_id=event.data["request_id"])
    ctx.contract.check_personal("personal_data.access_answered", plaintext)
    if plaintext["service"] != event.data["service"]:
        raise sealing.SealingError("the answer's personal data names another service")
    records: dict[str, Any] = plaintext["records"]
    return records
