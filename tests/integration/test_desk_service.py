"""The operator desk in-process against the real broker and a real PostgreSQL: inbox
events in (personal data sealed for the operator), an expert signs in, sees the case
decrypted, acknowledges, asks, answers; the operator events come out on
`operator.<code>.outbox` as the operator's, valid against the contract. What cannot be
taken is dead-lettered; the desk's database holds no personal data in clear."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from aiokafka import ConsumerRecord
from markupsafe import escape
from prometheus_client import REGISTRY

from relais_desk.app import create_app
from relais_kit.contract import load_contract
from relais_kit.envelope import from_record
from relais_kit.runtime import until_ready
from relais_kit.settings import REPO_ROOT
from tests.support import TopicReader, dump_schema, eventually, headers, of_type, produce, seal_for

OPERATOR = "justice"
INBOX = f"operator.{OPERATOR}.inbox"
OUTBOX = f"operator.{OPERATOR}.outbox"
SCHEMA = "desk_justice"
COOKIE = "relais_desk_session"
CONTRACT = load_contract(REPO_ROOT / "schemas")
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def stamp(at: datetime) -> str:
    return at.isoformat(timespec="seconds")


def routed_data(referral_id: str, personal_data: str, *, due_in: timedelta = timedelta(days=5)) -> dict[str, Any]:
    at = datetime.now(UTC)
    return {
        "referral_id": referral_id, "visit_id": str(uuid.uuid4()), "operator": OPERATOR,
        "procedure": "justice.aide-juridictionnelle", "site_id": "agen-leon-blum-poste",
        "adviser_id": "adv-agen-0142", "status": "routed", "occurred_at": stamp(at), "due_at": stamp(at + due_in),
        "site": {"site_id": "agen-leon-blum-poste", "name": "France Services Agen Léon Blum",
                 "kind": "post_office", "postcode": "47000", "city": "Agen"},
        "adviser": {"adviser_id": "adv-agen-0142", "display_name": "Camille Bernard"},
        "consent": {"given_at": stamp(at), "scope": "Identité transmise pour l'aide juridictionnelle",
                    "given_to": OPERATOR},
        "personal_data": personal_data,
    }


def personal(referral_id: str, summary: str, family_name: str) -> dict[str, Any]:
    return {"referral_id": referral_id, "summary": summary,
            "citizen": {"given_name": "Nadia", "family_name": family_name, "birth_date": "1987-06-02",
                        "email": "nadia.dupont@example.fr"}}


async def send_routed(bootstrap: str, referral_id: str, summary: str, family_name: str, *,
                      sealed_for: str = OPERATOR, sealed_referral: str | None = None,
                      due_in: timedelta = timedelta(days=5)) -> None:
    token = seal_for(sealed_for, personal(sealed_referral or referral_id, summary, family_name))
    await produce(bootstrap, INBOX, "referral.routed", routed_data(referral_id, token, due_in=due_in),
                  subject=referral_id, source="/relais/referral")


@asynccontextmanager
async def running_desk(monkeypatch: pytest.MonkeyPatch, database_url: str,
                       kafka_bootstrap: str) -> AsyncIterator[tuple[httpx.AsyncClient, asyncpg.Connection]]:
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    monkeypatch.setenv("RELAIS_DESK_OPERATOR", OPERATOR)
    monkeypatch.setenv("RELAIS_DEMO_DATA", "1")
    monkeypatch.setenv("RELAIS_ENV", "dev")
    monkeypatch.delenv("RELAIS_DESK_PRIVATE_KEY", raising=False)
    monkeypatch.delenv("RELAIS_DESK_DB_SCHEMA", raising=False)
    monkeypatch.setenv("RELAIS_OPS_GAUGES_S", "0.2")
    app = create_app()
    async with app.router.lifespan_context(app):
        await until_ready(app)
        db = await asyncpg.connect(database_url)
        try:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://desk.test") as c:
                yield c, db
        finally:
            await db.close()


def csrf_of(page: httpx.Response) -> str:
    found = CSRF.search(page.text)
    assert found, "no CSRF token in the page"
    return found.group(1)


async def sign_in(client: httpx.AsyncClient) -> str:
    page = await client.get("/connexion")
    assert page.status_code == 200
    assert '<label class="fr-label" for="username">' in page.text
    signed = await client.post("/connexion", data={"username": "demo-expert", "password": "demo",
                                                   "csrf_token": csrf_of(page)})
    assert signed.status_code == 303 and signed.headers["location"] == "/dossiers"
    cookie = signed.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie
    inbox = await client.get("/dossiers")
    assert inbox.status_code == 200
    return csrf_of(inbox)


async def case_shown(client: httpx.AsyncClient, referral_id: str, text: str) -> httpx.Response | None:
    page = await client.get(f"/dossiers/{referral_id}")
    return page if page.status_code == 200 and str(escape(text)) in page.text else None


def outbox_events(records: list[ConsumerRecord], referral_id: str) -> list[ConsumerRecord]:
    return [r for r in records if r.key == referral_id.encode()]


async def test_an_expert_handles_a_case_from_the_inbox_to_the_answer(
        monkeypatch: pytest.MonkeyPatch, database_url: str, kafka_bootstrap: str) -> None:
    referral_id = str(uuid.uuid4())
    summary = f"Litige locatif, demande d'aide juridictionnelle {uuid.uuid4().hex[:8]}"
    family_name = f"Dupont{uuid.uuid4().hex[:6]}"
    async with running_desk(monkeypatch, database_url, kafka_bootstrap) as (client, db), \
            TopicReader(kafka_bootstrap, OUTBOX) as outbox:
        # Not signed in: to the sign-in page.
        anonymous = await client.get("/dossiers")
        assert anonymous.status_code == 303 and anonymous.headers["location"] == "/connexion"
        assert (await client.get("/healthz")).json()["status"] == "ok"
        assert (await client.get("/static/desk/desk.css")).status_code == 200
        if (REPO_ROOT / "libs/relais_kit/node_modules/@gouvfr/dsfr/dist").is_dir():  # `npm ci` done
            assert (await client.get("/static/dsfr/dsfr.min.css")).status_code == 200

        await send_routed(kafka_bootstrap, referral_id, summary, family_name)
        csrf = await sign_in(client)
        inbox = await eventually(lambda: _inbox_with(client, referral_id), what="the case in the inbox")
        assert "Aide juridictionnelle" in inbox.text and "Nouveau" in inbox.text
        assert summary not in inbox.text  # the list shows no personal data
        await eventually(lambda: open_cases_are(1), what="the open case counted")

        page = await case_shown(client, referral_id, summary)
        assert page is not None  # decrypted for the page
        assert family_name in page.text and "02/06/1987" in page.text and "Camille Bernard" in page.text
        assert page.headers["cache-control"] == "no-store"

        # A POST without the CSRF token, or with a wrong one: 403, nothing sent.
        url = f"/dossiers/{referral_id}/accuser-reception"
        assert (await client.post(url, data={"case_reference": "JUS-1"})).status_code == 403
        assert (await client.post(url, data={"case_reference": "JUS-1", "csrf_token": "x" * 43})).status_code == 403

        done = await client.post(url, data={"case_reference": "JUS-47-2026-0042", "csrf_token": csrf})
        assert done.status_code == 303
        assert done.headers["location"] == f"/dossiers/{referral_id}?envoye=accuser-reception"
        after = await client.get(done.headers["location"])
        assert "Accusé de réception envoyé" in after.text and "Pris en charge" in after.text
        again = await client.post(url, data={"csrf_token": csrf})
        assert again.status_code == 409 and "déjà pris en charge" in again.text

        question = f"Quel est le montant des ressources du foyer {uuid.uuid4().hex[:6]} ?"
        asked = await client.post(f"/dossiers/{referral_id}/demander-information",
                                  data={"question": question,
                                        "documents": "Avis d'imposition 2025\nBail", "csrf_token": csrf})
        assert asked.status_code == 303

        # The adviser's information arrives sealed; it is shown decrypted in the timeline.
        info = f"Ressources : 1 200 euros par mois {uuid.uuid4().hex[:8]}"
        await produce(kafka_bootstrap, INBOX, "referral.info_provided",
                      {"referral_id": referral_id, "operator": OPERATOR, "provided_at": stamp(datetime.now(UTC)),
                       "personal_data": seal_for(OPERATOR, {"referral_id": referral_id, "message": info})},
                      subject=referral_id, source="/relais/referral")
        page = await eventually(lambda: case_shown(client, referral_id, info), what="the information")
        assert "Information reçue" in page.text

        # A missing field: the form again, the error next to the field, nothing sent.
        before = await db.fetchval(f"SELECT count(*) FROM {SCHEMA}.outbox")
        missing = await client.post(f"/dossiers/{referral_id}/repondre",
                                    data={"outcome": "resolved", "message_to_adviser": "Dossier complet.",
                                          "csrf_token": csrf})
        assert missing.status_code == 422
        assert re.search(r'id="answer-message_to_citizen"[^>]*aria-describedby="answer-message_to_citizen-error"',
                         missing.text, re.S)
        assert '<p id="answer-message_to_citizen-error" class="fr-error-text">Indiquez le message pour la personne.' \
            in missing.text
        assert "Dossier complet." in missing.text  # what was typed is kept
        assert await db.fetchval(f"SELECT count(*) FROM {SCHEMA}.outbox") == before

        to_citizen = f"Un rendez-vous vous est proposé au tribunal {uuid.uuid4().hex[:6]}."
        to_adviser = f"Rendez-vous fixé, dossier JUS-47-2026-0042 {uuid.uuid4().hex[:6]}."
        answered = await client.post(f"/dossiers/{referral_id}/repondre", data={
            "outcome": "appointment_offered", "csrf_token": csrf,
            "message_to_citizen": to_citizen, "message_to_adviser": to_adviser,
            "appointment_at": (datetime.now(UTC) + timedelta(days=7)).strftime("%Y-%m-%dT10:30"),
            "appointment_place": "Tribunal judiciaire d'Agen"})
        assert answered.status_code == 303
        closed = await client.get(f"/dossiers/{referral_id}")
        assert "Répondu" in closed.text and "Aucune action possible" in closed.text
        # The experts' texts are sealed at rest and opened for the page.
        for text in (question, to_citizen, to_adviser, "Tribunal judiciaire d'Agen", "Référence JUS-47-2026-0042"):
            assert str(escape(text)) in closed.text

        records = await outbox.until(lambda rs: len(outbox_events(rs, referral_id)) >= 3, what="3 operator events")
        mine = outbox_events(records, referral_id)
        assert [headers(r)["ce_type"].split(".")[-2] for r in mine] == ["acknowledged", "info_requested", "answered"]
        for record in mine:
            event = from_record(record.key, record.value, record.headers)
            CONTRACT.validate(event)
            assert event.source == f"/operators/{OPERATOR}"
            assert event.subject == referral_id and event.data["referral_id"] == referral_id
        ack = json.loads(of_type(mine, "operator.acknowledged")[0].value)
        assert ack["case_reference"] == "JUS-47-2026-0042" and ack["expert"].startswith("Expert de démonstration")
        asked_data = json.loads(of_type(mine, "operator.info_requested")[0].value)
        assert asked_data["documents"] == ["Avis d'imposition 2025", "Bail"]
        answer = json.loads(of_type(mine, "operator.answered")[0].value)
        assert answer["outcome"] == "appointment_offered" and answer["appointment"]["at"].endswith("T10:30:00+01:00")

        await eventually(lambda: open_cases_are(0), what="the answered case no longer counted")

        # Filter by status.
        assert referral_id in (await client.get("/dossiers?statut=answered")).text
        assert referral_id not in (await client.get("/dossiers?statut=new")).text

        # A dump of the desk's schema shows neither the citizen's data nor the experts'
        # texts: the first stays the JWE received, the others are sealed at rest.
        dump = dump_schema(database_url, SCHEMA)
        assert referral_id in dump and "justice.aide-juridictionnelle" in dump
        for secret in (summary, family_name, "nadia.dupont@example.fr", "1987-06-02", info,
                       question, "Avis d'imposition 2025", "JUS-47-2026-0042", to_citizen, to_adviser,
                       "Tribunal judiciaire d'Agen"):
            assert secret not in dump

        # Signing out ends the session: a copy of the cookie taken before opens nothing.
        copied = client.cookies[COOKIE]
        assert (await client.get("/dossiers", headers={"Cookie": f"{COOKIE}={copied}"})).status_code == 200
        out = await client.post("/deconnexion", data={"csrf_token": csrf})
        assert out.status_code == 303
        assert (await client.get("/dossiers")).status_code == 303
        replayed = await client.get("/dossiers", headers={"Cookie": f"{COOKIE}={copied}"})
        assert replayed.status_code == 303 and replayed.headers["location"] == "/connexion"
        assert (await client.get(f"/dossiers/{referral_id}",
                                 headers={"Cookie": f"{COOKIE}={copied}"})).status_code == 303


async def open_cases_are(count: int) -> bool:
    """`relais_desk_open_cases` of the desk's operator, as /metrics shows it (each test has
    a database of its own)."""
    return REGISTRY.get_sample_value("relais_desk_open_cases", {"operator": OPERATOR}) == count


async def _inbox_with(client: httpx.AsyncClient, referral_id: str) -> httpx.Response | None:
    page = await client.get("/dossiers")
    return page if referral_id in page.text else None


async def test_what_the_desk_cannot_take_is_dead_lettered_and_closed_cases_refuse_actions(
        monkeypatch: pytest.MonkeyPatch, database_url: str, kafka_bootstrap: str) -> None:
    foreign, moved, cancelled, late = (str(uuid.uuid4()) for _ in range(4))
    async with running_desk(monkeypatch, database_url, kafka_bootstrap) as (client, db), \
            TopicReader(kafka_bootstrap, f"{INBOX}.dlq") as dlq:
        # Sealed for another operator; sealed for another referral.
        await send_routed(kafka_bootstrap, foreign, "Résumé chiffré pour le Crous", "Martin", sealed_for="crous")
        await send_routed(kafka_bootstrap, moved, "Résumé d'un autre dossier", "Martin",
                          sealed_referral=str(uuid.uuid4()))
        letters = await dlq.until(lambda rs: {foreign, moved} <= {r.key.decode() for r in rs}, what="2 dead letters")
        by_key = {r.key.decode(): headers(r) for r in letters}
        for key in (foreign, moved):
            assert by_key[key]["dlq_error"] == "invalid_personal_data"
            assert by_key[key]["dlq_consumer"] == f"operator-{OPERATOR}-desk"
            assert by_key[key]["dlq_topic"] == INBOX
        assert "cannot be decrypted" in by_key[foreign]["dlq_reason"]
        assert "another referral" in by_key[moved]["dlq_reason"]
        assert "Martin" not in by_key[foreign]["dlq_reason"] + by_key[moved]["dlq_reason"]

        # A cancelled case: no action possible, a clear refusal, nothing sent.
        await send_routed(kafka_bootstrap, cancelled, "Demande retirée ensuite", "Durand")
        await send_routed(kafka_bootstrap, late, "Demande en retard", "Petit", due_in=timedelta(days=1))
        await produce(kafka_bootstrap, INBOX, "referral.cancelled",
                      {"referral_id": cancelled, "operator": OPERATOR, "cancelled_at": stamp(datetime.now(UTC)),
                       "reason": "La personne a fait la démarche en ligne."},
                      subject=cancelled, source="/relais/referral")
        now = datetime.now(UTC)
        await produce(kafka_bootstrap, INBOX, "referral.reminder",
                      {"referral_id": late, "operator": OPERATOR, "due_at": stamp(now - timedelta(hours=1)),
                       "overdue_since": stamp(now)}, subject=late, source="/relais/referral")
        csrf = await sign_in(client)
        page = await eventually(lambda: case_shown(client, cancelled, "Annulé"), what="the cancelled case")
        assert "Aucune action possible" in page.text and 'action="/dossiers/' not in page.text
        refused = await client.post(f"/dossiers/{cancelled}/repondre", data={
            "outcome": "resolved", "message_to_citizen": "Réponse.", "message_to_adviser": "Note.",
            "csrf_token": csrf})
        assert refused.status_code == 409
        assert "Impossible de répondre" in refused.text and "annulé" in refused.text
        assert await db.fetchval(f"SELECT count(*) FROM {SCHEMA}.outbox") == 0

        # The reminder flags the case overdue in the inbox.
        async def flagged() -> bool:
            return bool(await db.fetchval(f"SELECT overdue_since IS NOT NULL FROM {SCHEMA}.cases"
                                          " WHERE referral_id = $1", late))
        await eventually(flagged, what="the overdue flag")
        inbox = await client.get("/dossiers")
        row = re.search(rf'<tr class="desk-overdue">\s*<td><a href="/dossiers/{late}">', inbox.text)
        assert row and "En retard" in inbox.text
        # Unknown and malformed references are a 404 page.
        assert (await client.get(f"/dossiers/{uuid.uuid4()}")).status_code == 404
        assert (await client.get("/dossiers/not-a-uuid")).status_code == 404
        assert await db.fetchval(f"SELECT count(*) FROM {SCHEMA}.cases WHERE referral_id = ANY($1::uuid[])",
                                 [foreign, moved]) == 0


async def test_the_inbox_is_paged_most_urgent_first(
        monkeypatch: pytest.MonkeyPatch, database_url: str, kafka_bootstrap: str) -> None:
    ids = [str(uuid.uuid4()) for _ in range(53)]
    async with running_desk(monkeypatch, database_url, kafka_bootstrap) as (client, db):
        await sign_in(client)
        for n, referral_id in enumerate(ids):  # the last one sent is due first
            await send_routed(kafka_bootstrap, referral_id, "Demande à traiter.", "Martin",
                              due_in=timedelta(days=60 - n))

        async def all_received() -> int | None:
            count = await db.fetchval(f"SELECT count(*) FROM {SCHEMA}.cases WHERE referral_id = ANY($1::uuid[])", ids)
            return count if count == len(ids) else None

        await eventually(all_received, what="the 53 cases in the desk")
        total = await db.fetchval(f"SELECT count(*) FROM {SCHEMA}.cases")
        await eventually(lambda: open_cases_are(total), what="every case counted open")
        first = await client.get("/dossiers")
        shown = re.findall(r'href="/dossiers/([0-9a-f-]{36})"', first.text)
        assert len(shown) == 50 and f"{total} dossiers" in first.text and "page 1 sur 2" in first.text
        assert shown[0] == ids[-1]  # the most urgent first
        assert "Page suivante" in first.text and "Page précédente" not in first.text
        second = await client.get("/dossiers?page=2")
        rest = re.findall(r'href="/dossiers/([0-9a-f-]{36})"', second.text)
        assert len(rest) == total - 50 and not set(rest) & set(shown) and "Page précédente" in second.text
        assert (await client.get("/dossiers?page=abc")).text.count('href="/dossiers/') >= 50  # page 1
        # Digits to `str.isdigit` that `int` refuses, and numbers too long for `int`: page 1.
        for odd in ("²", "٣", "３", "9" * 5000, "-1", "0"):
            page = await client.get("/dossiers", params={"page": odd})
            assert page.status_code == 200 and "page 1 sur 2" in page.text, odd
