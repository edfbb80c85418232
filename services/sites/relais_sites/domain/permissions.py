"""Who may change the registry: the one place the sites service decides it.

Sites are public: any valid token reads them all. Changing one follows the platform's
scope rule (`relais_kit.access`), narrowed to writing: ops see everything and change
nothing; an adviser changes nothing; a supervisor changes the sites of their own
department only, so the site as described, the site as the registry holds it, and the
site it depends on must all be in that department. A supervisor whose account names
no department changes nothing. The service itself, loading its demo file, changes
anything. A refusal says why with nothing the public registry does not show."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from relais_kit.access import Scope, User, scope_of

if TYPE_CHECKING:
    from relais_sites.domain.model import Site


@dataclass(frozen=True)
class ServiceItself:
    """The sites service acting on its own (the demo data at start). No token can
    claim it: only code inside the service passes it."""

    user_id: str = "relais-sites"
    role: str = "service"


THE_SERVICE = ServiceItself()
Editor = User | ServiceItself


class NotAllowed(PermissionError):
    """A change its editor may not make; the message says why."""


def upsert_refusal(editor: Editor, site: Site, current: Site | None, parent: Site | None) -> str | None:
    """Why `editor` may not describe `site` so, given the registry's `current`
    description of it and the `parent` it names (each None when unknown); None if
    they may."""
    scope = _write_scope(editor)
    if isinstance(scope, str):
        return scope
    if current is not None and not _covers(scope, current):
        return _outside(scope, f"site {current.site_id} belongs to department {current.department}")
    if not _covers(scope, site):
        return _outside(scope, f"site {site.site_id} would belong to department {site.department}")
    if parent is not None and not _covers(scope, parent):
        return _outside(scope, f"parent site {parent.site_id} belongs to department {parent.department}")
    return None


def retire_refusal(editor: Editor, current: Site | None) -> str | None:
    """Why `editor` may not retire the site the registry describes as `current`
    (None when unknown: then only a refusal by role); None if they may."""
    scope = _write_scope(editor)
    if isinstance(scope, str):
        return scope
    if current is not None and not _covers(scope, current):
        return _outside(scope, f"site {current.site_id} belongs to department {current.department}")
    return None


def _write_scope(editor: Editor) -> Scope | str:
    """The sites `editor` may change, or why they may change none."""
    if isinstance(editor, ServiceItself):
        return Scope(everything=True)
    if editor.read_only:
        return "ops have read-only access: they may not change the registry"
    if editor.role != "supervisor":
        return f"role {editor.role!r} may not change the registry; the supervisor of its department may"
    scope = scope_of(editor)
    if scope.department is None:
        return "your account names no department: you may not change the registry"
    return scope


def _covers(scope: Scope, site: Site) -> bool:
    return scope.covers(site.site_id, site.parent_site_id, site.department)


def _outside(scope: Scope, fact: str) -> str:
    return f"{fact}; your scope is {scope.department}"
