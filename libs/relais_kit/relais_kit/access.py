"""Who may see what, the same in every service: ops see everything (and change
nothing); a supervisor, their department; an adviser, their home site and the sites
that depend on it (its permanences, its bus). Each service applies this rule to its own
view of the sites registry (site, parent site, department); nothing here does I/O."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

ROLES = ("adviser", "supervisor", "ops")


@dataclass(frozen=True)
class User:
    """Who is asking: an account, its role, an adviser's home site, a supervisor's
    department, and the server-side session its token or cookie belongs to."""

    user_id: str
    role: str
    site_id: str | None
    display_name: str
    department: str | None = None
    session_id: str | None = None

    @property
    def read_only(self) -> bool:
        """Ops see everything and change nothing."""
        return self.role == "ops"


@dataclass(frozen=True)
class Scope:
    """`everything`, or the referrals of one adviser's home site (and the sites whose
    parent it is), or of one department; `nothing` when the account names neither."""

    everything: bool = False
    home_site: str | None = None
    department: str | None = None

    def covers(self, site_id: str, parent_site_id: str | None, department: str | None) -> bool:
        if self.everything:
            return True
        if self.home_site is not None:
            return self.home_site in (site_id, parent_site_id)
        if self.department is not None:
            return department == self.department
        return False

    def where(self, site_column: str, parent_column: str, department_column: str,
              args: list[Any] | None = None) -> tuple[list[str], list[Any]]:
        """SQL conditions for this scope over the given columns, and their arguments
        numbered after `args`."""
        args = list(args or [])
        if self.everything:
            return [], args
        if self.home_site is not None:
            args.append(self.home_site)
            return [f"({site_column} = ${len(args)} OR {parent_column} = ${len(args)})"], args
        if self.department is not None:
            args.append(self.department)
            return [f"{department_column} = ${len(args)}"], args
        return ["false"], args


EVERYTHING = Scope(everything=True)
NOTHING = Scope()


def scope_of(user: User) -> Scope:
    if user.role == "ops":
        return EVERYTHING
    if user.role == "supervisor":
        # A supervisor without a department sees nothing rather than every department.
        return Scope(department=user.department) if user.department else NOTHING
    if user.role == "adviser" and user.site_id:
        return Scope(home_site=user.site_id)
    return NOTHING


def may_see(user: User, site_id: str, parent_site_id: str | None, department: str | None) -> bool:
    return scope_of(user).covers(site_id, parent_site_id, department)


def works_at(user: User, site_id: str, parent_site_id: str | None) -> bool:
    """An adviser may act for the visits of their home site and of the sites that
    depend on it; nobody else acts for a site."""
    return user.role == "adviser" and user.site_id is not None and user.site_id in (site_id, parent_site_id)
