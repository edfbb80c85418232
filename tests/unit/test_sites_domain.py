"""The site registry's rules, without I/O."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from relais_sites.domain import (
    NATIONAL_OPERATORS,
    Address,
    InvalidSite,
    Site,
    SiteKind,
    SiteRecord,
    Slot,
)
from relais_sites.domain.events import retired_data, upserted_data
from relais_sites.domain.rules import kind_change_problems, parent_problems

AT = datetime(2025, 3, 4, 9, 30, tzinfo=UTC)


def post_office(**changes: Any) -> Site:
    values: dict[str, Any] = dict(
        site_id="agen-leon-blum-poste", name="France Services Agen Léon Blum", kind="post_office",
        address=Address(postcode="47000", city="Agen"), department="47",
        operators=("la-poste", "caf", "ants"),
        schedule=(Slot(1, "09:00", "12:00"), Slot(1, "14:00", "17:30")),
    )
    values.update(changes)
    return Site(**values)


def permanence(**changes: Any) -> Site:
    values: dict[str, Any] = dict(
        site_id="pont-du-casse-mairie", name="Permanence — mairie de Pont-du-Casse",
        kind="mobile_permanence", address=Address(postcode="47480", city="Pont-du-Casse"),
        department="47", operators=("la-poste", "caf"), parent_site_id="agen-leon-blum-poste",
        schedule=(Slot(2, "09:00", "12:00", "Mairie de Pont-du-Casse"),),
    )
    values.update(changes)
    return Site(**values)


def problems_of(build: Any, **changes: Any) -> dict[str, str]:
    with pytest.raises(InvalidSite) as caught:
        build(**changes)
    return {p.field: p.message for p in caught.value.problems}


def test_a_valid_post_office_and_permanence() -> None:
    assert post_office().kind == SiteKind.POST_OFFICE
    site = permanence()
    assert site.itinerant and site.parent_site_id == "agen-leon-blum-poste"


def test_operators_and_slots_are_kept_in_a_canonical_order() -> None:
    a = post_office(operators=("ants", "la-poste", "caf"),
                    schedule=(Slot(1, "14:00", "17:30"), Slot(1, "09:00", "12:00")))
    assert a.operators == ("la-poste", "caf", "ants")
    assert a == post_office()


def test_kind_given_as_enum_is_stored_as_its_code() -> None:
    assert post_office(kind=SiteKind.FIXED).kind == "fixed"


def test_unknown_operator_code_is_named() -> None:
    problems = problems_of(post_office, operators=("la-poste", "pole-emploi"))
    assert "operators.1" in problems and "pole-emploi" in problems["operators.1"]


def test_duplicate_and_missing_operators() -> None:
    assert "operators.1" in problems_of(post_office, operators=("caf", "caf"))
    assert "operators" in problems_of(post_office, operators=())


def test_unknown_kind() -> None:
    assert "kind" in problems_of(post_office, kind="kiosk")


@pytest.mark.parametrize("site_id", ["Agen", "a", "agen_poste", "-agen", "x" * 90])
def test_site_id_is_a_slug(site_id: str) -> None:
    assert "site_id" in problems_of(post_office, site_id=site_id)


def test_address_and_department() -> None:
    problems = problems_of(post_office, address=Address(postcode="4700", city=" "), department="47B")
    assert set(problems) == {"address.postcode", "address.city", "department"}
    assert post_office(department="2A", address=Address("20000", "Ajaccio")).department == "2A"
    assert post_office(department="974", address=Address("97400", "Saint-Denis")).department == "974"


def test_every_problem_is_reported_at_once() -> None:
    problems = problems_of(post_office, name="", kind="kiosk", operators=("x",))
    assert {"name", "kind", "operators.0"} <= set(problems)


def test_mobile_permanence_needs_a_parent() -> None:
    assert "parent_site_id" in problems_of(permanence, parent_site_id=None)


def test_mobile_permanence_needs_a_schedule_with_places() -> None:
    assert "schedule" in problems_of(permanence, schedule=())
    assert "schedule.0.place" in problems_of(permanence, schedule=(Slot(2, "09:00", "12:00"),))


def test_bus_needs_places_but_no_parent() -> None:
    bus = permanence(site_id="bus-haut-agenais", kind="bus", parent_site_id=None)
    assert bus.kind == "bus"
    assert "schedule.0.place" in problems_of(permanence, kind="bus", schedule=(Slot(2, "09:00", "12:00"),))


def test_fixed_sites_have_no_parent_and_no_places() -> None:
    assert "parent_site_id" in problems_of(post_office, parent_site_id="vigny-poste")
    assert "schedule.0.place" in problems_of(post_office, schedule=(Slot(1, "09:00", "12:00", "Mairie"),))


def test_a_site_cannot_depend_on_itself() -> None:
    assert "parent_site_id" in problems_of(permanence, parent_site_id="pont-du-casse-mairie")


@pytest.mark.parametrize(("slot", "field"), [
    (Slot(0, "09:00", "12:00", "Mairie"), "schedule.0.weekday"),
    (Slot(8, "09:00", "12:00", "Mairie"), "schedule.0.weekday"),
    (Slot(1, "9:00", "12:00", "Mairie"), "schedule.0.opens"),
    (Slot(1, "09:00", "24:00", "Mairie"), "schedule.0.closes"),
    (Slot(1, "12:00", "09:00", "Mairie"), "schedule.0.closes"),
    (Slot(1, "09:00", "09:00", "Mairie"), "schedule.0.closes"),
    (Slot(1, "09:00", "12:00", "x" * 121), "schedule.0.place"),
])
def test_slot_rules(slot: Slot, field: str) -> None:
    assert field in problems_of(permanence, schedule=(slot,))


def test_overlapping_slots_are_refused_touching_ones_accepted() -> None:
    overlapping = (Slot(2, "09:00", "12:00", "Mairie A"), Slot(2, "11:00", "13:00", "Mairie B"))
    assert "schedule.1" in problems_of(permanence, schedule=overlapping)
    touching = (Slot(2, "09:00", "12:00", "Mairie A"), Slot(2, "12:00", "13:00", "Mairie B"))
    assert len(permanence(schedule=touching).schedule) == 2


def test_parent_must_exist_be_active_and_be_a_fixed_site() -> None:
    child = permanence()
    parent = SiteRecord(post_office(), created_at=AT, updated_at=AT)
    assert parent_problems(child, parent) == []
    assert parent_problems(post_office(), None) == []
    assert parent_problems(child, None)[0].field == "parent_site_id"
    assert "retired" in parent_problems(child, replace(parent, retired_at=AT))[0].message
    other = SiteRecord(permanence(site_id="agen-leon-blum-poste", parent_site_id="vigny-poste"),
                       created_at=AT, updated_at=AT)
    assert "mobile_permanence" in parent_problems(child, other)[0].message


def test_a_parent_with_active_children_must_stay_a_fixed_site() -> None:
    becoming_bus = permanence(site_id="agen-leon-blum-poste", kind="bus", parent_site_id=None)
    assert kind_change_problems(becoming_bus, ["pont-du-casse-mairie"])[0].field == "kind"
    assert kind_change_problems(becoming_bus, []) == []
    assert kind_change_problems(post_office(kind="fixed"), ["pont-du-casse-mairie"]) == []


def test_missing_national_operators() -> None:
    assert post_office(operators=NATIONAL_OPERATORS).missing_national_operators() == ()
    assert "justice" in post_office().missing_national_operators()


def test_event_data_follows_the_schema_shape() -> None:
    record = SiteRecord(permanence(address=Address("47480", "Pont-du-Casse", "Place de la mairie")),
                        created_at=AT, updated_at=AT)
    data = upserted_data(record)
    assert data == {
        "site_id": "pont-du-casse-mairie", "name": "Permanence — mairie de Pont-du-Casse",
        "kind": "mobile_permanence",
        "address": {"street": "Place de la mairie", "postcode": "47480", "city": "Pont-du-Casse"},
        "department": "47", "operators": ["la-poste", "caf"],
        "parent_site_id": "agen-leon-blum-poste",
        "schedule": [{"weekday": 2, "opens": "09:00", "closes": "12:00",
                      "place": "Mairie de Pont-du-Casse"}],
        "updated_at": "2025-03-04T09:30:00+00:00",
    }
    fixed = upserted_data(SiteRecord(post_office(), created_at=AT, updated_at=AT))
    assert "parent_site_id" not in fixed and "street" not in fixed["address"]
    assert all("place" not in slot for slot in fixed["schedule"])
    assert retired_data("vigny-mairie", AT) == {"site_id": "vigny-mairie",
                                                 "retired_at": "2025-03-04T09:30:00+00:00"}


def test_event_data_validates_against_the_contract() -> None:
    from relais_kit.contract import load_contract
    from relais_kit.envelope import event_type
    from relais_kit.settings import REPO_ROOT

    contract = load_contract(REPO_ROOT / "schemas")
    for site in (post_office(), permanence()):
        contract.check(event_type("site.upserted"),
                       upserted_data(SiteRecord(site, created_at=AT, updated_at=AT)))
    contract.check(event_type("site.retired"), retired_data("vigny-mairie", AT))


def test_demo_sites_follow_the_rules_and_serve_the_core_operators() -> None:
    from relais_kit.settings import REPO_ROOT
    from relais_sites.entrypoints.demo import load_demo_sites

    sites = load_demo_sites(REPO_ROOT / "deploy" / "demo" / "sites.yaml")
    ids = [s.site_id for s in sites]
    assert len(ids) == len(set(ids))
    for i, site in enumerate(sites):
        assert {"la-poste", "caf", "ants", "dgfip", "cnam", "france-travail"} <= set(site.operators)
        if site.parent_site_id:
            assert site.parent_site_id in ids[:i], f"{site.site_id}: parent must come first"
    assert {"martignas-sur-jalle-poste", "agen-leon-blum-poste", "pont-du-casse-mairie",
            "foulayronnes-mairie", "vigny-poste", "vigny-mairie"} <= set(ids)
    assert {s.kind for s in sites} == {"post_office", "mobile_permanence", "bus"}
