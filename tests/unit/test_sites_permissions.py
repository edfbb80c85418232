"""Who may change the registry, without I/O: ops and advisers nothing, a supervisor
their own department only, the service itself (its demo data) anything."""

from __future__ import annotations

from typing import Any

import pytest

from relais_kit.auth import User
from relais_sites.domain import Address, Site, Slot
from relais_sites.domain.permissions import THE_SERVICE, retire_refusal, upsert_refusal

SUPERVISOR_47 = User("superviseur-47", "supervisor", None, "Superviseur 47", department="47")
SUPERVISOR_33 = User("superviseur-33", "supervisor", None, "Superviseur 33", department="33")
SUPERVISOR_NOWHERE = User("superviseur", "supervisor", None, "Superviseur")
OPS = User("ops", "ops", None, "Exploitation")
ADVISER_AGEN = User("conseillere", "adviser", "agen-leon-blum-poste", "Conseillère")


def post_office(site_id: str, department: str, **changes: Any) -> Site:
    values: dict[str, Any] = dict(
        site_id=site_id, name=f"France Services {site_id}", kind="post_office",
        address=Address(postcode=f"{department}000", city="Ville"), department=department,
        operators=("la-poste", "caf"), schedule=(Slot(1, "09:00", "12:00"),))
    values.update(changes)
    return Site(**values)


def permanence(site_id: str, department: str, parent_site_id: str) -> Site:
    return Site(site_id=site_id, name=f"Permanence {site_id}", kind="mobile_permanence",
                address=Address(postcode=f"{department}000", city="Ville"), department=department,
                operators=("caf",), parent_site_id=parent_site_id,
                schedule=(Slot(2, "09:00", "12:00", "Mairie"),))


AGEN = post_office("agen-leon-blum-poste", "47")
NERAC = post_office("nerac-poste", "47")
MARTIGNAS = post_office("martignas-sur-jalle-poste", "33")
VIGNY = post_office("vigny-poste", "95")
# Martignas described as a permanence of Agen, in the Lot-et-Garonne: the probe's re-parenting.
MARTIGNAS_UNDER_AGEN = permanence("martignas-sur-jalle-poste", "47", "agen-leon-blum-poste")


def test_a_supervisor_changes_the_sites_of_their_department() -> None:
    assert upsert_refusal(SUPERVISOR_47, NERAC, current=None, parent=None) is None
    assert upsert_refusal(SUPERVISOR_47, post_office("nerac-poste", "47", name="Nérac"), NERAC, None) is None
    assert upsert_refusal(SUPERVISOR_47, permanence("nerac-mairie", "47", "agen-leon-blum-poste"),
                          current=None, parent=AGEN) is None
    assert retire_refusal(SUPERVISOR_47, NERAC) is None
    assert upsert_refusal(SUPERVISOR_33, MARTIGNAS, MARTIGNAS, None) is None
    assert retire_refusal(SUPERVISOR_33, MARTIGNAS) is None


def test_a_supervisor_does_not_take_a_site_of_another_department() -> None:
    assert upsert_refusal(SUPERVISOR_47, MARTIGNAS_UNDER_AGEN, current=MARTIGNAS, parent=AGEN) == (
        "site martignas-sur-jalle-poste belongs to department 33; your scope is 47")


def test_a_supervisor_does_not_move_a_site_to_another_department() -> None:
    assert upsert_refusal(SUPERVISOR_47, post_office("nerac-poste", "33"), current=NERAC, parent=None) == (
        "site nerac-poste would belong to department 33; your scope is 47")
    assert upsert_refusal(SUPERVISOR_47, MARTIGNAS, current=None, parent=None) == (
        "site martignas-sur-jalle-poste would belong to department 33; your scope is 47")


def test_a_supervisor_does_not_hang_a_site_of_theirs_on_another_department() -> None:
    assert upsert_refusal(SUPERVISOR_47, permanence("nerac-mairie", "47", "martignas-sur-jalle-poste"),
                          current=None, parent=MARTIGNAS) == (
        "parent site martignas-sur-jalle-poste belongs to department 33; your scope is 47")


def test_a_supervisor_retires_no_site_of_another_department() -> None:
    assert retire_refusal(SUPERVISOR_47, VIGNY) == "site vigny-poste belongs to department 95; your scope is 47"
    assert retire_refusal(SUPERVISOR_47, MARTIGNAS) == (
        "site martignas-sur-jalle-poste belongs to department 33; your scope is 47")


def test_an_unknown_site_is_left_to_the_registry_to_report() -> None:
    assert retire_refusal(SUPERVISOR_47, None) is None


@pytest.mark.parametrize(("user", "reason"), [
    (OPS, "ops have read-only access: they may not change the registry"),
    (ADVISER_AGEN, "role 'adviser' may not change the registry; the supervisor of its department may"),
    (SUPERVISOR_NOWHERE, "your account names no department: you may not change the registry"),
])
def test_ops_advisers_and_supervisors_without_a_department_change_nothing(user: User, reason: str) -> None:
    assert upsert_refusal(user, AGEN, current=AGEN, parent=None) == reason
    assert upsert_refusal(user, NERAC, current=None, parent=None) == reason
    assert retire_refusal(user, AGEN) == reason
    assert retire_refusal(user, None) == reason


def test_the_service_itself_loads_any_department() -> None:
    assert upsert_refusal(THE_SERVICE, MARTIGNAS_UNDER_AGEN, current=MARTIGNAS, parent=AGEN) is None
    assert retire_refusal(THE_SERVICE, VIGNY) is None
