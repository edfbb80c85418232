"""The one scope rule of the platform (relais_kit.access), written out by hand: ops see
everything; a supervisor, their department (nothing without one); an adviser, their
home site and the sites whose parent it is; any other role, nothing."""

from __future__ import annotations

import pytest

from relais_kit.access import Scope, may_see, scope_of, works_at
from relais_kit.auth import User

# A small registry: (site, parent site, department).
AGEN = ("agen", None, "47")
AGEN_PERMANENCE = ("agen-permanence", "agen", "47")  # depends on Agen
AGEN_BUS_STOP = ("agen-bus-halte", "agen-permanence", "47")  # depends on the permanence, not on Agen
NERAC = ("nerac", None, "47")
MARTIGNAS = ("martignas", None, "33")
VIGNY = ("vigny", None, "95")
NOWHERE = ("sans-departement", None, None)
SITES = (AGEN, AGEN_PERMANENCE, AGEN_BUS_STOP, NERAC, MARTIGNAS, VIGNY, NOWHERE)


def user(role: str, site_id: str | None = None, department: str | None = None) -> User:
    return User("u1", role, site_id, "Camille", department)


OPS = user("ops")
SUPERVISOR_47 = user("supervisor", department="47")
SUPERVISOR_47_AT_MARTIGNAS = user("supervisor", site_id="martignas", department="47")
SUPERVISOR_WITHOUT_DEPARTMENT = user("supervisor")
ADVISER_AGEN = user("adviser", site_id="agen")
ADVISER_AGEN_WITH_A_DEPARTMENT = user("adviser", site_id="agen", department="47")
ADVISER_AT_THE_PERMANENCE = user("adviser", site_id="agen-permanence")
ADVISER_WITHOUT_SITE = user("adviser", department="47")
AUDITOR = user("auditor", site_id="agen", department="47")
NO_ROLE = user("", site_id="agen", department="47")

# Who sees which sites, by hand from the rule.
SEES = [
    (OPS, {"agen", "agen-permanence", "agen-bus-halte", "nerac", "martignas", "vigny", "sans-departement"}),
    (SUPERVISOR_47, {"agen", "agen-permanence", "agen-bus-halte", "nerac"}),
    (SUPERVISOR_47_AT_MARTIGNAS, {"agen", "agen-permanence", "agen-bus-halte", "nerac"}),
    (SUPERVISOR_WITHOUT_DEPARTMENT, set()),
    (ADVISER_AGEN, {"agen", "agen-permanence"}),
    (ADVISER_AGEN_WITH_A_DEPARTMENT, {"agen", "agen-permanence"}),
    (ADVISER_AT_THE_PERMANENCE, {"agen-permanence", "agen-bus-halte"}),
    (ADVISER_WITHOUT_SITE, set()),
    (AUDITOR, set()),
    (NO_ROLE, set()),
]


@pytest.mark.parametrize(("who", "visible"), SEES)
def test_who_sees_which_sites(who: User, visible: set[str]) -> None:
    assert {site for site, parent, department in SITES if may_see(who, site, parent, department)} == visible
    scope = scope_of(who)
    assert {site for site, parent, department in SITES if scope.covers(site, parent, department)} == visible


# Who acts for which sites' visits: advisers only, for their home site and its dependents.
WORKS_AT = [
    (OPS, set()),
    (SUPERVISOR_47, set()),
    (SUPERVISOR_47_AT_MARTIGNAS, set()),
    (ADVISER_AGEN, {"agen", "agen-permanence"}),
    (ADVISER_AT_THE_PERMANENCE, {"agen-permanence", "agen-bus-halte"}),
    (ADVISER_WITHOUT_SITE, set()),
    (AUDITOR, set()),
]


@pytest.mark.parametrize(("who", "sites"), WORKS_AT)
def test_who_acts_for_which_sites(who: User, sites: set[str]) -> None:
    assert {site for site, parent, _ in SITES if works_at(who, site, parent)} == sites


def test_only_ops_are_read_only() -> None:
    assert OPS.read_only
    assert not SUPERVISOR_47.read_only and not ADVISER_AGEN.read_only


COLUMNS = ("r.site_id", "s.parent_site_id", "s.department")


def test_the_sql_of_an_advisers_scope_names_the_home_site_once_after_the_callers_arguments() -> None:
    given = ["referral-1"]
    clauses, args = scope_of(ADVISER_AGEN).where(*COLUMNS, given)
    assert clauses == ["(r.site_id = $2 OR s.parent_site_id = $2)"]
    assert args == ["referral-1", "agen"]
    assert given == ["referral-1"], "the caller's list is left as it was"


def test_the_sql_of_a_supervisors_scope_is_their_department() -> None:
    assert scope_of(SUPERVISOR_47).where(*COLUMNS) == (["s.department = $1"], ["47"])
    assert scope_of(SUPERVISOR_47).where(*COLUMNS, ["a", "b"]) == (["s.department = $3"], ["a", "b", "47"])


def test_the_sql_of_ops_adds_no_condition_and_of_nobody_selects_nothing() -> None:
    assert scope_of(OPS).where(*COLUMNS, ["a"]) == ([], ["a"])
    for nobody in (SUPERVISOR_WITHOUT_DEPARTMENT, ADVISER_WITHOUT_SITE, AUDITOR, NO_ROLE):
        assert scope_of(nobody).where(*COLUMNS, ["a"]) == (["false"], ["a"])


def test_an_empty_scope_covers_nothing() -> None:
    assert not Scope().covers("agen", None, "47")
    assert not Scope().covers("sans-departement", None, None)
