"""Whose referrals a user may see in lists, statistics and the journal: ops, all;
a supervisor, their department's; an adviser, their site's and its permanences'."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import asyncpg

from relais_kit.auth import User
from relais_referral.adapters import store
from relais_referral.domain.model import Site

DEPARTMENT = re.compile(r"^(\d{2,3}|2[AB])$")


@dataclass(frozen=True)
class Scope:
    sites: frozenset[str] | None = None  # None: any site
    department: str | None = None  # None: any department

    def where(self, site_column: str, department_column: str,
              args: list[Any] | None = None) -> tuple[list[str], list[Any]]:
        """SQL conditions (and their arguments, numbered after `args`) for this scope."""
        args = list(args or [])
        clauses = []
        if self.sites is not None:
            args.append(sorted(self.sites))
            clauses.append(f"{site_column} = ANY(${len(args)}::text[])")
        if self.department is not None:
            args.append(self.department)
            clauses.append(f"{department_column} = ${len(args)}")
        return clauses, args

    def covers(self, site_id: str, site: Site | None) -> bool:
        if self.sites is not None and site_id not in self.sites:
            return False
        return self.department is None or (site is not None and site.department == self.department)


NOTHING = Scope(sites=frozenset())


async def scope_of(conn: asyncpg.Connection, user: User) -> Scope:
    if user.role == "ops":
        return Scope()
    if user.role == "supervisor":
        department = await _department(conn, user.site_id)
        # An account with no department sees nothing rather than every department
        # (that is the ops role's).
        return Scope(department=department) if department else NOTHING
    if user.role == "adviser" and user.site_id:
        rows = await conn.fetch("SELECT site_id FROM known_sites WHERE parent_site_id = $1", user.site_id)
        return Scope(sites=frozenset({user.site_id, *(r["site_id"] for r in rows)}))
    return NOTHING


async def _department(conn: asyncpg.Connection, site_or_department: str | None) -> str | None:
    """A supervisor's department: the one of the site their account names, or the
    department code itself; None when none is assigned."""
    if not site_or_department:
        return None
    site = await store.get_site(conn, site_or_department)
    if site is not None:
        return site.department
    return site_or_department if DEPARTMENT.match(site_or_department) else "(aucun)"


async def may_see(conn: asyncpg.Connection, user: User, site_id: str) -> bool:
    """The rule of a referral's page: the same as for lists."""
    return (await scope_of(conn, user)).covers(site_id, await store.get_site(conn, site_id))
