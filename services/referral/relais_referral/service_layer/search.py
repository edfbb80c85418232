"""Finding referrals: by status, operator, site, overdue flag and one search box — the
citizen's name, our reference or the operator's — within the user's scope, newest
first, a page at a time. Names and operator references are found through their keyed
hashes (migration 010), never compared in clear in the database."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from relais_kit import numbers
from relais_kit.auth import User
from relais_kit.vault import Vault
from relais_referral.adapters.store import visit_of
from relais_referral.domain import identity
from relais_referral.domain.lifecycle import Status
from relais_referral.service_layer import audit
from relais_referral.service_layer.scope import Scope

PAGE_SIZE = 50
STATUSES = tuple(s.value for s in Status)


_HEX = set("0123456789abcdef-")
_REFERENCE = re.compile(r"[0-9A-Za-z][0-9A-Za-z._/-]{2,59}")
_NAME = re.compile(r"[^\W\d_]+(?:[\s'’-]+[^\W\d_]+)*")
LONGEST_TEXT = 100
NAMES_FOR = ("adviser", "supervisor")  # ops find referrals by reference only


@dataclass(frozen=True)
class Searched:
    """What the search box's text was understood as: our reference's start, the
    operator's reference, words of a name — or nothing, with why (in French)."""

    reference: str = ""
    operator_reference: str = ""
    names: tuple[str, ...] = ()
    not_understood: str = ""


def understand(text: str) -> Searched:
    """« 3f2a », a whole uuid, « CAF-2026-B6D91E3C », « Dupont », « nadia dup »…"""
    text = text.strip()
    if not text:
        return Searched()
    if len(text) > LONGEST_TEXT:
        return Searched(not_understood="Le texte cherché est trop long : un nom ou une référence suffit.")
    lowered = text.lower()
    hexadecimal = len(lowered) <= 36 and set(lowered) <= _HEX and lowered.strip("-") != ""
    digits = any(c.isdigit() for c in text)
    if hexadecimal and digits:  # ours, or an operator's made of the same characters
        return Searched(reference=lowered, operator_reference=text)
    if digits and _REFERENCE.fullmatch(text):
        return Searched(operator_reference=text)
    if _NAME.fullmatch(text):
        # A single letter (the d of d'Arc, an initial) is not indexed: left out of the search.
        words = tuple(identity.searched_prefix(w) for w in identity.name_words(text)
                      if len(w) >= identity.SHORTEST_PREFIX)
        if not words:
            return Searched(not_understood="Tapez au moins deux lettres du nom ou du prénom.")
        return Searched(reference=lowered if hexadecimal else "", names=words)
    return Searched(not_understood=f"« {text} » n'est ni un nom ni une référence : tapez un nom de famille,"
                                   " un prénom, notre référence ou celle de l'opérateur.")


@dataclass(frozen=True)
class Filters:
    statut: str = ""
    operateur: str = ""
    site: str = ""
    en_retard: bool = False
    recherche: str = ""
    page: int = 1
    searched: Searched = field(default=Searched(), compare=False)

    @classmethod
    def parse(cls, query: dict[str, str]) -> Filters:
        """The GET form's fields; a status, operator or site not understood is ignored
        (a list, not a command); the search box's text is understood or said not to be.
        `reference` is the search box's former name (links kept in bookmarks)."""
        text = (query.get("recherche") or query.get("reference") or "").strip()
        status = query.get("statut", "")
        return cls(
            statut=status if status in STATUSES else "",
            operateur=_code(query.get("operateur", "")),
            site=_code(query.get("site", "")),
            en_retard=query.get("en_retard", "") in ("1", "on", "oui", "true"),
            recherche=text[:LONGEST_TEXT * 2],
            page=numbers.page(query.get("page")),
            searched=understand(text))

    def for_role(self, role: str) -> Searched:
        """What this user may search: names for advisers and supervisors only."""
        searched = self.searched
        if searched.names and role not in NAMES_FOR:
            if searched.reference:
                return Searched(reference=searched.reference)
            return Searched(not_understood="La recherche par nom est réservée aux conseillers et aux superviseurs :"
                                           " indiquez une référence.")
        return searched

    def query(self, **changes: Any) -> dict[str, str]:
        """The filters as query parameters (for the pagination links), without the empty ones."""
        values: dict[str, Any] = {"statut": self.statut, "operateur": self.operateur, "site": self.site,
                                  "en_retard": "1" if self.en_retard else "", "recherche": self.recherche,
                                  "page": self.page, **changes}
        return {k: str(v) for k, v in values.items() if v and not (k == "page" and v == 1)}


def _code(raw: str) -> str:
    raw = raw.strip()
    return raw if 0 < len(raw) <= 100 and all(c.isalnum() or c in ".-_" for c in raw) else ""


async def search(conn: asyncpg.Connection, vault: Vault, scope: Scope, filters: Filters,
                 searched: Searched) -> tuple[list[dict[str, Any]], bool]:
    """One page of referrals, and whether there is a next page. Each row has the
    visit's id (`visit_id`), to name the citizen if the caller may."""
    where, args = scope.where("r.site_id", "s.parent_site_id", "s.department")
    for column, value in (("r.status", filters.statut), ("r.operator", filters.operateur),
                          ("r.site_id", filters.site)):
        if value:
            args.append(value)
            where.append(f"{column} = ${len(args)}")
    if filters.en_retard:
        where.append("r.overdue_at IS NOT NULL AND r.status IN ('routed', 'acknowledged', 'info_requested')")
    found: list[str] = []  # any of these (the text may be read several ways)
    if searched.reference:
        args.append(searched.reference + "%")
        found.append(f"r.referral_id::text LIKE ${len(args)}")
    if searched.operator_reference:
        args.append(vault.blind_index(identity.OPERATOR_REFERENCE, searched.operator_reference))
        found.append(f"r.operator_reference_index = ${len(args)}")
    if searched.names:
        args.append([vault.blind_index(identity.NAME_PREFIX, w) for w in searched.names])
        found.append(f"v.name_index @> ${len(args)}::text[]")
    if found:
        where.append(f"({' OR '.join(found)})")
    args += [PAGE_SIZE + 1, (filters.page - 1) * PAGE_SIZE]
    rows = await conn.fetch(
        "SELECT r.referral_id::text AS referral_id, r.operator, r.procedure, r.site_id, s.name AS site_name,"
        " r.status, r.requested_at, r.due_at, r.overdue_at, r.adviser_id, r.visit_id::text AS visit_id"
        " FROM referrals r LEFT JOIN known_sites s ON s.site_id = r.site_id"
        " JOIN visits v ON v.visit_id = r.visit_id"
        f" WHERE {' AND '.join(where) or 'true'}"
        f" ORDER BY r.requested_at DESC, r.referral_id LIMIT ${len(args) - 1} OFFSET ${len(args)}", *args)
    return [dict(r) for r in rows[:PAGE_SIZE]], len(rows) > PAGE_SIZE


async def citizen_names(conn: asyncpg.Connection, vault: Vault, user: User, searched: Searched,
                        rows: list[dict[str, Any]]) -> dict[str, str]:
    """The citizens' names of a page of results, by visit id, for an adviser or a
    supervisor (whose scope the rows already are); audited with the search — who, when,
    how many, a keyed hash of the words typed, never the words."""
    if user.role not in NAMES_FOR:
        return {}
    visit_ids = sorted({r["visit_id"] for r in rows})
    visits = await conn.fetch("SELECT * FROM visits WHERE visit_id = ANY($1::uuid[])", visit_ids)
    names = {}
    for row in visits:
        visit = visit_of(row, vault)
        if visit.citizen is not None:
            names[visit.visit_id] = f"{visit.citizen.given_name} {visit.citizen.family_name}"
    kind = kind_of(searched)
    typed = " ".join(searched.names) or searched.operator_reference or searched.reference
    await conn.execute(
        "INSERT INTO search_audit (user_id, role, kind, query_hash, results, channel) VALUES ($1, $2, $3, $4, $5, $6)",
        user.user_id, user.role, kind, vault.blind_index("search", typed) if typed else None, len(rows),
        audit.channel())
    return names


def kind_of(searched: Searched) -> str:
    return "name" if searched.names else "reference" if searched.reference or searched.operator_reference else "list"


async def sites_in(conn: asyncpg.Connection, scope: Scope) -> list[dict[str, Any]]:
    """The sites a user may filter by."""
    where, args = scope.where("s.site_id", "s.parent_site_id", "s.department")
    rows = await conn.fetch(
        f"SELECT s.site_id, s.name FROM known_sites s WHERE {' AND '.join(where) or 'true'} ORDER BY s.name", *args)
    return [dict(r) for r in rows]
