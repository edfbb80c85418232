"""A referral's page, the search, the statistics and the audit journal of the adviser's
UI, against the referral service in-process (real broker, real PostgreSQL): the
timeline, live through server-sent events as operator events arrive; the adviser's
moves through the forms (422 next to the field, 409 said in French); other sites'
referrals are 404; every view and change is audited (pages and API) and shown to
supervisors, not to advisers; filters and scopes; figures on a known dataset."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import httpx
import pytest
import pytest_asyncio

from relais_kit import passwords
from relais_kit.envelope import now
from relais_referral.service_layer import accounts, live, stats
from relais_referral.service_layer.scope import Scope
from tests.referral_app import SITE, VISIT, refer, referral_api, served, sign_in, status_is, truth
from tests.support import eventually, produce

pytestmark = pytest.mark.asyncio(loop_scope="module")
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
AT = "2026-11-20T10:00:00+01:00"
MARTIGNAS = {**SITE, "site_id": "martignas-sur-jalle-poste", "name": "France Services — Martignas",
             "department": "33", "address": {"street": "Place de la Mairie", "postcode": "33127",
                                             "city": "Martignas-sur-Jalle"}}
STATS_SITE = {**SITE, "site_id": "stats-poste", "name": "France Services — Statistiques", "department": "2A",
              "address": {"street": "Rue du Test", "postcode": "20000", "city": "Testville"}}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def api(module_database_url: str, kafka_bootstrap: str) -> AsyncIterator[httpx.AsyncClient]:
    async with referral_api(module_database_url, kafka_bootstrap) as client:
        for site in (MARTIGNAS, STATS_SITE):
            await produce(kafka_bootstrap, "sites", "site.upserted", site, subject=site["site_id"])
        await eventually(lambda: _known(client, "stats-poste"), what="the other sites known")
        yield client


async def _known(api: httpx.AsyncClient, site_id: str) -> bool:
    async with api.app.state.runtime.pool.acquire() as conn:  # type: ignore[attr-defined]
        return bool(await conn.fetchval("SELECT count(*) FROM known_sites WHERE site_id = $1", site_id))


def pool(api: httpx.AsyncClient) -> Any:
    return api.app.state.runtime.pool  # type: ignore[attr-defined]


@asynccontextmanager
async def web(api: httpx.AsyncClient, user: str) -> AsyncIterator[httpx.AsyncClient]:
    """A browser signed in to the pages as `user`."""
    transport = httpx.ASGITransport(app=api.app)  # type: ignore[attr-defined]
    async with httpx.AsyncClient(transport=transport, base_url="http://referral") as client:
        page = await client.get("/connexion")
        signed = await client.post("/connexion", data={"csrf_token": csrf(page), "user_id": user, "password": "demo"})
        assert signed.status_code == 303, signed.text
        yield client


def csrf(page: httpx.Response) -> str:
    found = CSRF.search(page.text)
    assert found, page.text[:300]
    return found.group(1)


async def post(client: httpx.AsyncClient, url: str, data: dict[str, str]) -> httpx.Response:
    page = await client.get("/demandes")
    return await client.post(url, data={"csrf_token": csrf(page), **data})


async def operator_says(bootstrap: str, name: str, referral_id: str, operator: str = "caf", **data: Any) -> None:
    stamp = {"operator.acknowledged": "acknowledged_at", "operator.info_requested": "requested_at",
             "operator.rejected": "rejected_at", "operator.answered": "answered_at"}[name]
    await produce(bootstrap, f"operator.{operator}.outbox", name, {"referral_id": referral_id, stamp: AT, **data},
                  subject=referral_id, source=f"/operators/{operator}")


async def routed(api: httpx.AsyncClient, **overrides: Any) -> str:
    referral_id = await refer(api, **overrides)
    await eventually(lambda: status_is(api, referral_id, "routed"), what="routed")
    return referral_id


async def audit_rows(api: httpx.AsyncClient, referral_id: str) -> list[tuple[str, str, str]]:
    async with pool(api).acquire() as conn:
        rows = await conn.fetch("SELECT user_id, action, channel FROM audit WHERE referral_id = $1 ORDER BY id",
                                referral_id)
    return [(r["user_id"], r["action"], r["channel"]) for r in rows]


async def next_event(lines: AsyncIterator[str], name: str) -> dict[str, Any]:
    wanted = False
    async for line in lines:
        if line == f"event: {name}":
            wanted = True
        elif wanted and line.startswith("data: "):
            return dict(json.loads(line[len("data: "):]))
    raise AssertionError("the feed ended")


async def test_the_timeline_is_shown_and_follows_the_operator_live(api: httpx.AsyncClient,
                                                                  kafka_bootstrap: str) -> None:
    referral_id = await routed(api)
    async with web(api, "demo-adviser") as browser:
        page = await browser.get(f"/demandes/{referral_id}")
        assert page.status_code == 200
        assert 'id="statut" data-status="routed"' in page.text and "Transmise à l&#39;opérateur" in page.text
        assert 'id="chronologie"' in page.text
        assert re.findall(r'data-event="([^"]+)"', page.text) == ["requested", "routed"]
        assert "Caisse d&#39;allocations familiales" in page.text and "Prime d&#39;activité" in page.text
        assert "Michel Cordier" in page.text  # the adviser sees whom it is for
        assert 'src="/static/ui/live.js"' in page.text
        assert f'href="/demandes/{referral_id}" id="actualiser"' in page.text
        seq = re.search(r'data-seq="(\d+)"', page.text)
        assert seq
        cookies = "; ".join(f"{k}={v}" for k, v in browser.cookies.items())

        feed_url = f"/demandes/{referral_id}/flux?depuis={seq.group(1)}"
        async with served(api.app) as base, httpx.AsyncClient(base_url=base, timeout=30) as sse, \
                sse.stream("GET", feed_url, headers={"Cookie": cookies}) as feed:  # type: ignore[attr-defined]
                assert feed.status_code == 200
                assert feed.headers["content-type"].startswith("text/event-stream")
                lines = feed.aiter_lines()
                assert await anext(lines) == "retry: 5000"
                await operator_says(kafka_bootstrap, "operator.info_requested", referral_id,
                                    question="Pouvez-vous joindre le dernier avis d'imposition ?")
                event = await asyncio.wait_for(next_event(lines, "chronologie"), 30)
                assert event["status"] == "info_requested" and event["seq"] > int(seq.group(1))

        fragment = await browser.get(f"/demandes/{referral_id}/chronologie")
        assert fragment.status_code == 200 and "<html" not in fragment.text
        assert 'data-event="info_requested"' in fragment.text and 'data-status="info_requested"' in fragment.text
        due = re.compile(r'<dl class="ui-facts" id="faits">.*id="echeance">\d\d/\d\d/\d{4} à 18:00', re.S)
        assert due.search(fragment.text)  # the facts follow too
        assert "Pouvez-vous joindre le dernier avis d&#39;imposition ?" in fragment.text
        assert 'action="/demandes/' + referral_id + '/complement"' in fragment.text  # the actions follow the status

        # Answer the question: empty is a 422 next to the field; then it goes.
        empty = await post(browser, f"/demandes/{referral_id}/complement", {"message": "  "})
        assert empty.status_code == 422
        assert re.search(r'aria-describedby="complement-message-error"[^>]*>\s*</textarea>\s*'
                         r'<p id="complement-message-error" class="fr-error-text">', empty.text)
        sent = await post(browser, f"/demandes/{referral_id}/complement", {"message": "Avis joint au dossier."})
        assert sent.status_code == 303
        assert sent.headers["location"].startswith(f"/demandes/{referral_id}?fait=complement")
        after = await browser.get(sent.headers["location"])
        assert "Votre réponse a été transmise à l&#39;opérateur." in after.text
        assert 'data-status="acknowledged"' in after.text and 'data-event="info_provided"' in after.text
        assert "Avis joint au dossier." not in after.text  # sealed for the operator, not kept in the timeline

        # Closing before the operator answered: 409, said in French.
        early = await post(browser, f"/demandes/{referral_id}/cloturer", {"outcome": "resolved"})
        assert early.status_code == 409 and 'id="refus"' in early.text
        assert "Une demande se clôture après la réponse ou le refus de l&#39;opérateur." in early.text
        assert "« Prise en charge »" in early.text

        await operator_says(kafka_bootstrap, "operator.answered", referral_id, outcome="appointment_offered",
                            appointment={"at": "2026-12-02T10:00:00+01:00", "place": "CAF d'Agen"},
                            message_to_citizen="Rendez-vous le 2 décembre.", message_to_adviser="RDV fixé à 10 h.")
        await eventually(lambda: status_is(api, referral_id, "answered"), what="answered")
        answered = await browser.get(f"/demandes/{referral_id}")
        assert "RDV fixé à 10 h." in answered.text
        assert "Rendez-vous le 02/12/2026 à 10:00, CAF d&#39;Agen" in answered.text
        no_outcome = await post(browser, f"/demandes/{referral_id}/cloturer", {"outcome": ""})
        assert no_outcome.status_code == 422 and 'id="cloturer-outcome-error"' in no_outcome.text
        closed = await post(browser, f"/demandes/{referral_id}/cloturer", {"outcome": "resolved"})
        assert closed.status_code == 303
        final = await browser.get(f"/demandes/{referral_id}")
        assert 'data-status="closed"' in final.text and "Aucune action : la demande est terminée." in final.text

    rows = await audit_rows(api, referral_id)
    assert rows[0] == ("demo-adviser", "refer", "api")
    assert ("demo-adviser", "view", "api") in rows  # the API's GET
    for action in ("view", "provide_info", "close"):
        assert ("demo-adviser", action, "ui") in rows
    assert rows.count(("demo-adviser", "provide_info", "ui")) == 1 and rows.count(("demo-adviser", "close", "ui")) == 1


async def test_reroute_and_cancel_through_the_forms(api: httpx.AsyncClient, kafka_bootstrap: str) -> None:
    rejected = await routed(api)
    await operator_says(kafka_bootstrap, "operator.rejected", rejected, reason_code="not_competent",
                        suggested_operator="cnam")
    await eventually(lambda: status_is(api, rejected, "rejected"), what="rejected")
    async with web(api, "demo-adviser") as browser:
        page = await browser.get(f"/demandes/{rejected}")
        assert 'action="/demandes/' + rejected + '/reorienter"' in page.text
        assert '<option value="cnam" selected>' in page.text  # the operator the rejection suggested
        assert "Le montant de la prime d&#39;activité a baissé" in page.text  # the summary, prefilled
        assert "complement" not in re.findall(r'action="/demandes/[^/]+/([a-z]+)"', page.text)
        form = {"operator": "cnam", "procedure": "cnam.complementaire-sante-solidaire",
                "summary": "Demande de complémentaire santé solidaire."}
        no_consent = await post(browser, f"/demandes/{rejected}/reorienter", form)
        assert no_consent.status_code == 422 and 'id="reorienter-consent-error"' in no_consent.text
        assert "Demande de complémentaire santé solidaire." in no_consent.text  # what was typed stays
        wrong = await post(browser, f"/demandes/{rejected}/reorienter",
                           {**form, "procedure": "caf.rsa", "consent": "oui"})
        assert wrong.status_code == 422 and 'id="reorienter-procedure-error"' in wrong.text
        moved = await post(browser, f"/demandes/{rejected}/reorienter", {**form, "consent": "oui"})
        assert moved.status_code == 303
        new_id = moved.headers["location"].split("/demandes/")[1].split("?")[0]
        assert new_id != rejected
        new = await browser.get(moved.headers["location"])
        assert "La demande refusée est réorientée" in new.text and f'href="/demandes/{rejected}"' in new.text
        old = await browser.get(f"/demandes/{rejected}")
        assert 'data-status="closed"' in old.text and "Réorientée vers un autre opérateur" in old.text
        assert f'href="/demandes/{new_id}" id="nouvelle-demande"' in old.text
        again = await post(browser, f"/demandes/{rejected}/reorienter", {**form, "consent": "oui"})
        assert again.status_code == 409
        assert "Seule une demande refusée par l&#39;opérateur peut être réorientée." in again.text

        to_cancel = await routed(api)
        asked = await post(browser, f"/demandes/{to_cancel}/annuler", {"reason": "La personne a renoncé."})
        assert asked.status_code == 200 and "Oui, annuler la demande" in asked.text  # not confirmed: asked
        cancelled = await post(browser, f"/demandes/{to_cancel}/annuler",
                               {"reason": "La personne a renoncé.", "confirmation": "oui"})
        assert cancelled.status_code == 303
        page = await browser.get(cancelled.headers["location"])
        assert 'data-status="cancelled"' in page.text and "La personne a renoncé." in page.text
        twice = await post(browser, f"/demandes/{to_cancel}/annuler", {})
        assert twice.status_code == 409
        forged = await browser.post(f"/demandes/{to_cancel}/annuler", data={"csrf_token": "x" * 43})
        assert forged.status_code == 403
    assert ("demo-adviser", "reroute", "ui") in await audit_rows(api, rejected)
    assert ("demo-adviser", "refer", "ui") in await audit_rows(api, new_id)
    assert ("demo-adviser", "cancel", "ui") in await audit_rows(api, to_cancel)


async def test_other_sites_and_roles(api: httpx.AsyncClient) -> None:
    referral_id = await routed(api)
    async with web(api, "demo-adviser-martignas") as other:
        for path in ("", "/chronologie", "/flux"):
            response = await other.get(f"/demandes/{referral_id}{path}")
            assert response.status_code == 404, path
            assert "Demande introuvable" in response.text
        refused = await post(other, f"/demandes/{referral_id}/annuler", {})
        assert refused.status_code == 404
        assert (await other.get("/demandes/pas-une-reference")).status_code == 404
    async with web(api, "demo-supervisor") as supervisor:
        page = await supervisor.get(f"/demandes/{referral_id}")
        assert page.status_code == 200 and "Consultation seule" in page.text
        assert "/annuler" not in page.text and "Michel Cordier" not in page.text
        assert (await post(supervisor, f"/demandes/{referral_id}/annuler", {})).status_code == 403
    async with web(api, "demo-ops") as ops:
        assert (await ops.get(f"/demandes/{referral_id}")).status_code == 200
        assert (await post(ops, f"/demandes/{referral_id}/annuler", {})).status_code == 403
    rows = await audit_rows(api, referral_id)
    assert ("demo-supervisor", "view", "ui") in rows and ("demo-ops", "view", "ui") in rows
    assert not [r for r in rows if r[0] == "demo-adviser-martignas"]


async def test_the_journal_is_for_supervisors_and_ops(api: httpx.AsyncClient) -> None:
    referral_id = await routed(api)
    async with web(api, "demo-adviser") as adviser:
        await adviser.get(f"/demandes/{referral_id}")
        assert (await adviser.get("/journal")).status_code == 403
    async with web(api, "demo-supervisor") as supervisor:
        journal = await supervisor.get(f"/journal?demande={referral_id[:13]}")
        assert journal.status_code == 200
        actions = re.findall(r'data-action="([a-z_]+)" data-channel="([a-z]+)" data-referral="' + referral_id +
                             r'" data-user="([^"]+)"', journal.text)
        assert ("view", "ui", "demo-adviser") in actions and ("refer", "api", "demo-adviser") in actions
        assert ("view", "api", "demo-adviser") in actions
        assert not re.findall(r'data-referral="(?!' + referral_id + r')', journal.text)
        by_user = await supervisor.get("/journal?utilisateur=demo-adviser&date=" + now().strftime("%d/%m/%Y"))
        assert by_user.status_code == 200 and 'data-user="demo-adviser"' in by_user.text
        assert 'data-user="demo-supervisor"' not in by_user.text
        yesterday = (now() - timedelta(days=2)).date().isoformat()
        assert "Aucune entrée ne correspond." in (await supervisor.get(f"/journal?date={yesterday}")).text
        bad = await supervisor.get("/journal?date=31/02/2026")
        assert bad.status_code == 422 and 'id="date-error"' in bad.text
    async with web(api, "demo-ops") as ops:
        assert referral_id in (await ops.get(f"/journal?demande={referral_id}")).text
    async with pool(api).acquire() as conn:  # identifiers and action names only
        columns = {r["column_name"] for r in await conn.fetch(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'audit'")}
    assert columns == {"id", "at", "user_id", "role", "referral_id", "visit_id", "action", "channel"}


async def test_search_filters_and_scopes(api: httpx.AsyncClient, kafka_bootstrap: str) -> None:
    caf = await routed(api)
    ants = await routed(api, operator="ants", procedure="ants.permis-conduire")
    late = await routed(api)
    async with pool(api).acquire() as conn:
        await conn.execute("UPDATE referrals SET overdue_at = now() WHERE referral_id = $1", late)
    martignas_client = httpx.AsyncClient(transport=httpx.ASGITransport(app=api.app),  # type: ignore[attr-defined]
                                         base_url="http://referral")
    async with martignas_client:
        token = await sign_in(martignas_client, "demo-adviser-martignas")
        martignas_client.headers["Authorization"] = f"Bearer {token}"
        visit = await martignas_client.post("/api/v1/visits", json={**VISIT, "site_id": "martignas-sur-jalle-poste"})
        assert visit.status_code == 201, visit.text
        made = await martignas_client.post(f"/api/v1/visits/{visit.json()['visit_id']}/referrals", json={
            "operator": "caf", "procedure": "caf.rsa", "summary": "RSA.", "consent": {"given": True}})
        assert made.status_code == 201, made.text
        elsewhere = made.json()["referral_id"]

    def listed(page: httpx.Response) -> set[str]:
        assert page.status_code == 200, page.text[:300]
        return set(re.findall(r'<tr data-referral="([^"]+)"', page.text))

    async with web(api, "demo-adviser") as adviser:
        first = await adviser.get("/demandes")
        everything = listed(first)
        assert '<option value="agen-leon-blum-poste"' in first.text  # the sites to filter by: its own only
        assert '<option value="martignas-sur-jalle-poste"' not in first.text
        assert {caf, ants, late} <= everything and elsewhere not in everything
        assert ants in listed(await adviser.get("/demandes?operateur=ants"))
        assert caf not in listed(await adviser.get("/demandes?operateur=ants"))
        overdue = await adviser.get("/demandes?en_retard=1")
        assert listed(overdue) & {caf, ants, late} == {late}
        assert 'class="ui-overdue"' in overdue.text and "En retard" in overdue.text
        assert listed(await adviser.get(f"/demandes?reference={caf[:8]}")) == {caf}
        assert caf in listed(await adviser.get("/demandes?statut=routed&site=agen-leon-blum-poste"))
        assert caf not in listed(await adviser.get("/demandes?statut=answered"))
        assert listed(await adviser.get("/demandes?site=martignas-sur-jalle-poste")) == set()
        unknown = await adviser.get("/demandes?statut=nimporte")
        assert caf in listed(unknown)  # ignored, not an error
        not_understood = await adviser.get("/demandes?reference=zz'--")  # the search box: said, not dropped
        assert listed(not_understood) == set() and "ni un nom ni une référence" in not_understood.text
    async with web(api, "demo-adviser-martignas") as other:
        assert listed(await other.get("/demandes")) & {caf, ants, late, elsewhere} == {elsewhere}
    async with web(api, "demo-supervisor") as supervisor:  # department 47
        seen = listed(await supervisor.get("/demandes"))
        assert {caf, ants, late} <= seen and elsewhere not in seen
    async with pool(api).acquire() as conn:  # a supervisor whose department was never set (accounts refuse it now)
        await conn.execute("INSERT INTO accounts (user_id, password_hash, role, display_name)"
                           " VALUES ('lost-supervisor', $1, 'supervisor', 'Superviseur sans département')",
                           passwords.hash_now("demo"))
    async with web(api, "lost-supervisor") as lost:
        assert listed(await lost.get("/demandes")) & {caf, ants, late, elsewhere} == set()
        assert (await lost.get(f"/demandes/{caf}")).status_code == 404
    async with web(api, "demo-ops") as ops:
        assert {caf, elsewhere} <= listed(await ops.get("/demandes"))
        assert listed(await ops.get(f"/demandes?reference={elsewhere}")) == {elsewhere}


async def test_statistics_on_a_known_dataset(api: httpx.AsyncClient, kafka_bootstrap: str) -> None:
    """Department 2A holds only this: 5 visits (one 20 days ago), one solved on the spot;
    two CAF referrals answered 2 h and 4 h after routing; one ANTS referral overdue."""
    async with pool(api).acquire() as conn:
        await accounts.add_account(conn, "stats-adviser", "demo", "adviser", "stats-poste", "Conseillère Stats")
        await accounts.add_account(conn, "stats-supervisor", "demo", "supervisor", None, "Superviseur Stats", "2A")
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=api.app),  # type: ignore[attr-defined]
                               base_url="http://referral")
    async with client:
        client.headers["Authorization"] = f"Bearer {await sign_in(client, 'stats-adviser')}"
        visits = []
        for _ in range(5):
            response = await client.post("/api/v1/visits", json={**VISIT, "site_id": "stats-poste"})
            assert response.status_code == 201, response.text
            visits.append(response.json()["visit_id"])
        made = []
        for visit_id, (operator, procedure) in zip(visits[:3], [("caf", "caf.rsa"), ("caf", "caf.rsa"),
                                                                ("ants", "ants.permis-conduire")], strict=True):
            response = await client.post(f"/api/v1/visits/{visit_id}/referrals", json={
                "operator": operator, "procedure": procedure, "summary": "Stat.", "consent": {"given": True}})
            assert response.status_code == 201, response.text
            made.append(response.json()["referral_id"])
        for referral_id in made:
            await eventually(lambda r=referral_id: status_is(client, r, "routed"), what="routed")
        for referral_id in made[:2]:
            await operator_says(kafka_bootstrap, "operator.answered", referral_id, outcome="resolved",
                                message_to_citizen="Fait.", message_to_adviser="Fait.")
        for referral_id in made[:2]:
            await eventually(lambda r=referral_id: status_is(client, r, "answered"), what="answered")
    async with pool(api).acquire() as conn:
        await conn.execute("UPDATE visits SET resolution = 'solved_on_the_spot', closed_at = now()"
                           " WHERE visit_id = $1", visits[3])
        await conn.execute("UPDATE visits SET opened_at = now() - interval '20 days' WHERE visit_id = $1", visits[4])
        for referral_id, hours in zip(made[:2], (2, 4), strict=True):
            await conn.execute(
                "UPDATE referral_timeline SET at = CASE event WHEN 'routed' THEN now() - interval '1 day'"
                " ELSE now() - interval '1 day' + make_interval(hours => $2) END"
                " WHERE referral_id = $1 AND event IN ('routed', 'answered')", referral_id, hours)
        await conn.execute("UPDATE referrals SET overdue_at = now() WHERE referral_id = $1", made[2])
        figures = await stats.figures(conn, Scope(department="2A"), 7, now())
        wider = await stats.figures(conn, Scope(department="2A"), 30, now())
    assert (figures.visits, figures.resolved_on_the_spot, figures.first_visit_rate) == (4, 1, 25.0)
    assert (wider.visits, wider.first_visit_rate) == (5, 20.0)
    table = figures.by_operator
    assert table.cells == {("caf", "answered"): 2, ("ants", "routed"): 1} and table.total == 3
    medians = [(t["operator"], t["answered"], round(t["median_s"])) for t in figures.answer_times]
    assert medians == [("caf", 2, 3 * 3600)]
    assert (figures.overdue_now, figures.overdue_in_period) == (1, 1)

    async with web(api, "stats-supervisor") as supervisor:
        page = await supervisor.get("/statistiques?periode=7")
        assert page.status_code == 200
        assert 'id="taux-premiere-visite">25,0 %' in page.text and "le département 2A" in page.text
        assert re.search(r'<tr data-operator="caf">.*?<td data-status="answered">2</td>', page.text, re.S)
        assert re.search(r'<tr data-operator="caf">.*?<td data-seconds="10800">3 h</td>', page.text, re.S)
        assert 'id="en-retard-maintenant">1<' in page.text
        assert 'id="taux-premiere-visite">20,0 %' in (await supervisor.get("/statistiques?periode=30")).text
        assert 'value="30" checked' in (await supervisor.get("/statistiques?periode=12")).text
    async with web(api, "demo-adviser") as adviser:  # another site's figures are not counted
        page = await adviser.get("/statistiques")
        assert page.status_code == 200 and "votre site et ses permanences" in page.text
        assert "Conseillère Stats" not in page.text


async def test_the_feed_stops_reading_when_the_browser_leaves(api: httpx.AsyncClient,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    reads = 0
    reader = live.reader

    def counting(pool: Any, referral_id: str) -> Any:
        read = reader(pool, referral_id)

        async def counted() -> live.Latest | None:
            nonlocal reads
            reads += 1
            return await read()
        return counted

    monkeypatch.setattr(live, "reader", counting)
    referral_id = await routed(api)
    async with web(api, "demo-adviser") as browser:
        cookies = "; ".join(f"{k}={v}" for k, v in browser.cookies.items())
    async with served(api.app) as base:  # type: ignore[attr-defined]
        async with httpx.AsyncClient(base_url=base, timeout=30) as sse, \
                sse.stream("GET", f"/demandes/{referral_id}/flux", headers={"Cookie": cookies}) as feed:
            lines = feed.aiter_lines()  # kept: a dropped iterator closes the stream
            assert await anext(lines) == "retry: 5000"
            await eventually(lambda: truth(reads >= 2), what="the feed reading the timeline")
        left = reads
        await asyncio.sleep(2.5)
        assert reads - left <= 1  # at most the read in flight when the browser left


async def test_lists_are_paginated_by_50(api: httpx.AsyncClient, kafka_bootstrap: str) -> None:
    site = {**SITE, "site_id": "pages-poste", "name": "France Services — Pages", "department": "2B",
            "address": {"street": "Rue des Pages", "postcode": "20200", "city": "Bastia"}}
    await produce(kafka_bootstrap, "sites", "site.upserted", site, subject=site["site_id"])
    await eventually(lambda: _known(api, "pages-poste"), what="the site known")
    async with pool(api).acquire() as conn:
        visit_id = await conn.fetchval(
            "INSERT INTO visits (visit_id, site_id, adviser_id, channel, citizen, opened_at)"
            " VALUES (gen_random_uuid(), 'pages-poste', 'demo-adviser', 'in_person', '{}', now()) RETURNING visit_id")
        ids = [str(r["referral_id"]) for r in await conn.fetch(
            "INSERT INTO referrals (referral_id, visit_id, operator, procedure, site_id, adviser_id, summary,"
            " consent_given_at, requested_at, status)"
            " SELECT gen_random_uuid(), $1, 'caf', 'caf.rsa', 'pages-poste', 'demo-adviser', 'x', now(),"
            "  now() - make_interval(mins => n), 'routed' FROM generate_series(1, 55) AS n RETURNING referral_id",
            visit_id)]
        await conn.execute("INSERT INTO audit (user_id, role, referral_id, action, channel)"
                           " SELECT 'demo-adviser', 'adviser', $1, 'view', 'ui' FROM generate_series(1, 55)", ids[0])
    async with web(api, "demo-ops") as ops:
        first = await ops.get("/demandes?site=pages-poste")
        assert len(re.findall(r"<tr data-referral=", first.text)) == 50
        assert 'href="/demandes?site=pages-poste&amp;page=2" id="page-suivante"' in first.text
        assert 'id="page-precedente"' not in first.text
        second = await ops.get("/demandes?site=pages-poste&page=2")
        assert len(re.findall(r"<tr data-referral=", second.text)) == 5 and 'id="page-suivante"' not in second.text
        assert 'href="/demandes?site=pages-poste" id="page-precedente"' in second.text
        journal = await ops.get(f"/journal?demande={ids[0]}")
        assert len(re.findall(r"<tr data-action=", journal.text)) == 50 and "page=2" in journal.text
        rest = await ops.get(f"/journal?demande={ids[0]}&page=2")
        assert len(re.findall(r"<tr data-action=", rest.text)) == 5
