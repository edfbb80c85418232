"""The pure parts of the referral page, the search, the statistics, the journal, the
live feed and the accounts of the adviser's UI: no I/O."""

from __future__ import annotations

import asyncio
from datetime import date
from types import SimpleNamespace

import pytest

from relais_kit import numbers, throttle
from relais_referral.domain.catalogue import load_catalogue
from relais_referral.domain.lifecycle import Status
from relais_referral.entrypoints.ui.pages import WebUser
from relais_referral.entrypoints.ui.referral_rules import actor_label, allowed_actions, check_reroute, refusal
from relais_referral.service_layer import audit, live, stats
from relais_referral.service_layer.accounts import Account
from relais_referral.service_layer.scope import EVERYTHING, NOTHING, Scope, scope_of
from relais_referral.service_layer.search import Filters
from relais_referral.settings import ReferralSettings


@pytest.mark.parametrize(("status", "wanted"), [
    (Status.REQUESTED, ["annuler"]),
    (Status.ROUTED, ["annuler"]),
    (Status.INFO_REQUESTED, ["complement", "annuler"]),
    (Status.ANSWERED, ["cloturer"]),
    (Status.REJECTED, ["reorienter", "cloturer"]),
    (Status.CLOSED, []),
    (Status.CANCELLED, []),
])
def test_an_adviser_is_offered_the_moves_the_lifecycle_allows(status: Status, wanted: list[str]) -> None:
    assert allowed_actions("adviser", status) == wanted


@pytest.mark.parametrize("role", ["supervisor", "ops"])
def test_supervisors_and_ops_are_offered_nothing(role: str) -> None:
    assert all(allowed_actions(role, s) == [] for s in Status)


def test_a_refusal_says_why_and_the_current_status_in_french() -> None:
    assert refusal("cloturer", "routed") == ("Une demande se clôture après la réponse ou le refus de l'opérateur. "
                                             "Cette demande est maintenant « Transmise à l'opérateur ».")


def test_actors_are_named_for_people() -> None:
    names = {"adviser:demo-adviser": "Sophie Conseillère"}
    operators = {"caf": "Caisse d'allocations familiales"}
    assert actor_label("adviser:demo-adviser", names, operators) == "Sophie Conseillère"
    assert actor_label("adviser:gone", names, operators) == "gone"
    assert actor_label("operator:caf", names, operators) == "Caisse d'allocations familiales"
    assert actor_label("platform", names, operators) == "Relais"


def test_the_reroute_form_names_each_wrong_field() -> None:
    ctx = SimpleNamespace(catalogue=load_catalogue())
    values, errors = check_reroute({"operator": "cnam", "procedure": "caf.rsa", "summary": " x\x00 "}, ctx)  # type: ignore[arg-type]
    assert set(errors) == {"procedure", "summary", "consent"}
    assert values["operator"] == "cnam"
    _, errors = check_reroute({"operator": "nobody", "summary": "", "consent": "oui"}, ctx)  # type: ignore[arg-type]
    assert set(errors) == {"operator", "summary"}
    values, errors = check_reroute({"operator": "cnam", "procedure": "cnam.carte-vitale",
                                    "summary": "  Carte perdue.\r\n ", "consent": "oui"}, ctx)  # type: ignore[arg-type]
    assert errors == {} and values["summary"] == "Carte perdue."


# -- statistics --------------------------------------------------------------------------------

def test_periods_are_7_30_or_90_days() -> None:
    assert [stats.parse_period(p) for p in ("7", "90", "30", "12", "", None, "-7", "abc")] == \
        [7, 90, 30, 30, 30, 30, 30, 30]


def test_rates_and_durations_for_people() -> None:
    assert stats.rate(1, 4) == 25.0 and stats.rate(1, 3) == 33.3 and stats.rate(0, 0) is None
    seconds = (None, 59, 8 * 60, 3 * 3600, 5 * 3600 + 12 * 60, 86400, 3 * 86400 + 4 * 3600)
    assert [stats.duration_fr(s) for s in seconds] == ["—", "1 min", "8 min", "3 h", "5 h 12 min", "1 j", "3 j 4 h"]


def test_referrals_by_operator_and_status_in_lifecycle_order() -> None:
    table = stats.pivot([("caf", "closed", 2), ("ants", "routed", 1), ("caf", "routed", 3), ("caf", "routed", 1)])
    assert table.operators == ["ants", "caf"]
    assert table.statuses == ["routed", "closed"]
    assert table.cells[("caf", "routed")] == 4
    assert table.row_totals == {"ants": 1, "caf": 6} and table.column_totals == {"routed": 5, "closed": 2}
    assert table.total == 7
    assert stats.pivot([]).total == 0


def test_first_visit_rate() -> None:
    figures = stats.Figures(7, 4, 1, stats.pivot([]))
    assert figures.first_visit_rate == 25.0
    assert stats.Figures(7, 0, 0, stats.pivot([])).first_visit_rate is None


# -- search, journal, scope --------------------------------------------------------------------

def test_search_filters_keep_what_they_understand() -> None:
    filters = Filters.parse({"statut": "routed", "operateur": "caf", "site": "agen-leon-blum-poste",
                             "en_retard": "1", "reference": " AB12-", "page": "3"})
    assert filters == Filters("routed", "caf", "agen-leon-blum-poste", True, "AB12-", 3)
    assert filters.searched.reference == "ab12-"  # the search box: tests/unit/test_referral_finding.py
    assert filters.query(page=4) == {"statut": "routed", "operateur": "caf", "site": "agen-leon-blum-poste",
                                     "en_retard": "1", "recherche": "AB12-", "page": "4"}
    assert Filters.parse({"statut": "whatever", "operateur": "x'; --", "page": "0"}) == Filters()
    assert Filters().query(page=1) == {}


def test_journal_filters() -> None:
    filters, errors = audit.JournalFilters.parse({"demande": "ABC", "utilisateur": " demo-adviser ",
                                                  "date": "22/11/2026", "page": "2"})
    assert errors == {} and filters == audit.JournalFilters("abc", "demo-adviser", date(2026, 11, 22), 2)
    assert audit.JournalFilters.parse({"date": "2026-11-22"})[0].day == date(2026, 11, 22)
    filters, errors = audit.JournalFilters.parse({"demande": "pas une référence", "date": "31/02/2026"})
    assert set(errors) == {"demande", "date"} and filters.referral_id == "" and filters.day is None


def test_a_signed_in_page_user_has_their_roles_scope() -> None:
    """The department travels as the department (never in place of a site), and the
    scope is the platform's rule (relais_kit.access)."""
    supervisor = WebUser("claire", "supervisor", None, "Claire", department="47").as_user()
    assert (supervisor.site_id, supervisor.department) == (None, "47")
    assert scope_of(supervisor) == Scope(department="47")
    adviser = WebUser("sophie", "adviser", "agen", "Sophie", place_id="pont-du-casse").as_user()
    assert scope_of(adviser) == Scope(home_site="agen")
    assert scope_of(WebUser("ops", "ops", None, "Ops").as_user()) == EVERYTHING
    assert scope_of(WebUser("lost", "supervisor", None, "Sans département").as_user()) == NOTHING


def test_an_account_signs_in_as_its_role_and_nothing_more() -> None:
    supervisor = Account("claire", "supervisor", "Claire", department="2A").user("sid-1")
    assert (supervisor.site_id, supervisor.department, supervisor.session_id) == (None, "2A", "sid-1")
    assert Account("sophie", "adviser", "Sophie", site_id="agen").user().site_id == "agen"
    assert Account("sophie", "adviser", "Sophie", site_id="agen").problems() == {}
    assert set(Account("x", "adviser", "X").problems()) == {"site_id"}
    assert set(Account("x", "supervisor", "X", site_id="agen").problems()) == {"site_id", "department"}
    assert set(Account("x", "supervisor", "X", department="Gironde").problems()) == {"department"}
    assert set(Account("x y", "root", " ", email="nobody").problems()) == {"user_id", "role", "display_name",
                                                                          "email"}
    assert set(Account("x", "ops", "X", oidc_subject="sub").problems()) == {"oidc_subject"}


def test_the_sign_in_limits_default_to_the_kits_and_are_checked_at_start() -> None:
    settings = ReferralSettings()
    assert (settings.signin_limit_per_account, settings.signin_limit_per_address) == (
        throttle.DEFAULT_PER_ACCOUNT, throttle.DEFAULT_PER_ADDRESS)
    assert ReferralSettings(RELAIS_SIGNIN_LIMIT_PER_ADDRESS="300/hour").signin_limit_per_address == "300/hour"
    with pytest.raises(ValueError, match="RELAIS_SIGNIN_LIMIT_PER_ACCOUNT must read like '10 per 5 minutes'"):
        ReferralSettings(RELAIS_SIGNIN_LIMIT_PER_ACCOUNT="lots")


@pytest.mark.parametrize(("raw", "wanted"), [
    ("1", 1), ("99999", 99_999), ("00042", 42), (None, None), ("", None), ("0", None), ("100000", None),
    ("²", None), ("٣", None), ("1²", None), (" 1", None), ("+1", None), ("-1", None), ("1_0", None),
    ("1" * 5000, None)])
def test_numbers_from_a_query_are_ascii_digits_within_bounds(raw: str | None, wanted: int | None) -> None:
    assert numbers.bounded(raw, 1, 99_999) == wanted


def test_a_bad_number_in_a_query_falls_back_to_the_default() -> None:
    for bad in ("²", "٣", "-2", "1e3", "9" * 30):
        assert Filters.parse({"page": bad}).page == 1
        assert audit.JournalFilters.parse({"page": bad})[0].page == 1
        assert stats.parse_period(bad) == stats.DEFAULT_PERIOD
        assert live.since(bad, bad) == 0
    assert live.since("²", "12") == 12 and stats.parse_period("7") == 7
    assert audit.JournalFilters.parse({"date": "²/11/2026"})[1] == {"date": "Indiquez une date au format JJ/MM/AAAA."}
    assert audit.JournalFilters.parse({"date": "22/11/٢٠٢٦"})[0].day is None


# -- the live feed -------------------------------------------------------------------------------

class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.t += seconds


def test_the_feed_sends_growth_heartbeats_and_ends() -> None:
    clock = Clock()
    states = {0.0: live.Latest(5, "routed", False), 3.0: live.Latest(6, "answered", False)}
    current = live.Latest(5, "routed", False)

    async def read() -> live.Latest | None:
        nonlocal current
        current = states.get(clock.t, current)
        return current

    async def connected() -> bool:
        return False

    async def collect() -> list[str]:
        return [chunk async for chunk in live.changes(read, 5, connected, poll_s=1, heartbeat_s=15,
                                                       lasting_s=40, clock=clock, sleep=clock.sleep)]

    chunks = asyncio.run(collect())
    assert chunks[0] == "retry: 5000\n\n"
    assert chunks[1] == 'event: chronologie\nid: 6\ndata: {"seq": 6, "status": "answered", "overdue": false}\n\n'
    assert chunks[2:4] == [": toujours là\n\n"] * 2  # at 18 s and 33 s
    assert chunks[-1] == "event: fin\ndata: {}\n\n" and len(chunks) == 5


def test_the_feed_stops_when_the_browser_leaves_and_outlives_a_database_restart() -> None:
    clock = Clock()
    calls = 0

    async def read() -> live.Latest | None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionResetError("the database restarts")
        return live.Latest(9, "answered", True)

    async def gone() -> bool:
        return clock.t >= 3

    async def collect() -> list[str]:
        return [chunk async for chunk in live.changes(read, 0, gone, clock=clock, sleep=clock.sleep)]

    chunks = asyncio.run(collect())
    assert chunks == ["retry: 5000\n\n", 'event: chronologie\nid: 9\ndata: {"seq": 9, "status": "answered", '
                                         '"overdue": true}\n\n']


def test_the_feed_ends_at_the_first_heartbeat_after_the_session_did() -> None:
    clock = Clock()
    checks: list[float] = []

    async def read() -> live.Latest | None:
        return live.Latest(5, "routed", False)

    async def connected() -> bool:
        return False

    async def signed_in() -> bool:
        checks.append(clock.t)
        return clock.t < 20  # signed out between the first and the second heartbeat

    async def collect() -> list[str]:
        return [chunk async for chunk in live.changes(read, 5, connected, signed_in, poll_s=1, heartbeat_s=15,
                                                       lasting_s=600, clock=clock, sleep=clock.sleep)]

    chunks = asyncio.run(collect())
    assert chunks == ["retry: 5000\n\n", ": toujours là\n\n", "event: fin\ndata: {}\n\n"]
    assert checks == [15.0, 30.0]  # at heartbeats only: not one query per poll


def test_where_the_browser_stands() -> None:
    assert live.since("12", "3") == 12 and live.since(None, "3") == 3 and live.since("x", "") == 0
