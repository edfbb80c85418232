"""The referral service on a real PostgreSQL and the real broker: visits, referrals,
routing to the operator's inbox, operators' replies, and the dead letters."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio

from relais_kit.contract import load_contract
from relais_kit.envelope import event_type
from relais_kit.sealing import SealingError
from relais_kit.settings import REPO_ROOT
from tests.referral_app import REFERRAL, VISIT, refer, referral_api, status_is
from tests.support import TopicReader, eventually, headers, of_type, open_as, produce, produce_raw

CONTRACT = load_contract(REPO_ROOT / "schemas")
pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def api(module_database_url: str, kafka_bootstrap: str) -> AsyncIterator[httpx.AsyncClient]:
    async with referral_api(module_database_url, kafka_bootstrap) as client:
        yield client


async def test_a_referral_is_routed_to_the_operator_inbox_with_only_what_it_needs(api, kafka_bootstrap):
    referral_id = await refer(api)
    async with TopicReader(kafka_bootstrap, "operator.caf.inbox", "referrals") as reader:
        await reader.until(lambda rs: any(r.key == referral_id.encode() and r.topic == "operator.caf.inbox"
                                          for r in rs), what="the routed referral in the CAF inbox")
        inbox = [r for r in reader.records if r.topic == "operator.caf.inbox"]
    record = next(r for r in inbox if r.key == referral_id.encode())
    h = headers(record)
    assert h["ce_specversion"] == "1.0" and h["ce_type"] == event_type("referral.routed")
    assert h["ce_subject"] == referral_id and h["ce_partitionkey"] == referral_id
    assert h["ce_source"] == "/relais/referral" and h["content-type"] == "application/json"
    assert h["ce_dataschema"].endswith("referral.routed.v1.json")
    data = json.loads(record.value)
    CONTRACT.check(h["ce_type"], data)
    assert "Cordier" not in record.value.decode() and "citizen" not in data
    personal = open_as("caf", data)  # sealed for CAF: only its private key opens it
    CONTRACT.check_personal("referral.routed", personal)
    assert personal["citizen"] == {"given_name": "Michel", "family_name": "Cordier", "birth_date": "1963-04-02",
                                   "postal_address": VISIT["citizen"]["contact"]["postal_address"]}  # no e-mail
    assert personal["summary"] == REFERRAL["summary"]
    with pytest.raises(SealingError):
        open_as("cnam", data)
    assert data["site"]["city"] == "Agen" and data["adviser"]["display_name"] == "Sophie Conseillère"
    body = await eventually(lambda: status_is(api, referral_id, "routed"), what="routed")
    assert [e["event"] for e in body["timeline"]] == ["requested", "routed"]
    assert body["due_at"] is not None


async def test_operator_replies_move_the_referral_to_answered(api, kafka_bootstrap):
    referral_id = await refer(api)
    await eventually(lambda: status_is(api, referral_id, "routed"), what="routed")
    await produce(kafka_bootstrap, "operator.caf.outbox", "operator.acknowledged",
                  {"referral_id": referral_id, "acknowledged_at": "2026-11-20T10:00:00+01:00"},
                  subject=referral_id, source="/operators/caf")
    answer = {"referral_id": referral_id, "answered_at": "2026-11-20T11:00:00+01:00",
              "outcome": "resolved", "message_to_citizen": "Votre prime a été recalculée.",
              "message_to_adviser": "Dossier régularisé.", "unknown_extra_field": 1}
    event = await produce(kafka_bootstrap, "operator.caf.outbox", "operator.answered", answer,
                          subject=referral_id, source="/operators/caf")
    # The same answer delivered twice is applied once.
    await produce(kafka_bootstrap, "operator.caf.outbox", "operator.answered", answer,
                  subject=referral_id, source="/operators/caf", event_id=event.id)
    body = await eventually(lambda: status_is(api, referral_id, "answered"), what="answered")
    assert [e["event"] for e in body["timeline"]] == ["requested", "routed", "acknowledged", "answered"]
    async with TopicReader(kafka_bootstrap, "referrals") as reader:
        records = await reader.until(lambda rs: len([r for r in of_type(rs, "referral.answered")
                                                     if r.key == referral_id.encode()]) == 1,
                                     what="referral.answered")
    answered = json.loads(next(r for r in of_type(records, "referral.answered")
                               if r.key == referral_id.encode()).value)
    assert answered["recipient"] == {"display_name": "Michel Cordier", "channel": "email",
                                     "email": "michel.cordier@example.org"}
    assert answered["message_to_citizen"] == "Votre prime a été recalculée."


async def test_refused_replies_go_to_the_dead_letter_topic(api, kafka_bootstrap):
    referral_id = await refer(api)
    await eventually(lambda: status_is(api, referral_id, "routed"), what="routed")
    stranger = str(uuid.uuid4())
    ack = {"referral_id": referral_id, "acknowledged_at": "2026-11-20T10:00:00+01:00"}
    await produce(kafka_bootstrap, "operator.ants.outbox", "operator.acknowledged", ack, subject=referral_id)
    await produce(kafka_bootstrap, "operator.caf.outbox", "operator.acknowledged",
                  {**ack, "referral_id": stranger}, subject=stranger)
    await produce(kafka_bootstrap, "operator.caf.outbox", "operator.answered",
                  {"referral_id": referral_id, "outcome": "resolved"}, subject=referral_id)
    await produce_raw(kafka_bootstrap, "operator.caf.outbox", referral_id.encode(), b"{not json",
                      [("ce_specversion", b"1.0"), ("ce_id", b"x1"), ("ce_source", b"/operators/caf"),
                       ("ce_type", event_type("operator.answered").encode()),
                       ("content-type", b"application/json")])
    await produce(kafka_bootstrap, "operator.caf.outbox", "operator.teleported", ack, subject=referral_id)
    await produce(kafka_bootstrap, "operator.caf.outbox", "operator.acknowledged", ack, subject=referral_id)
    await produce(kafka_bootstrap, "operator.caf.outbox", "operator.acknowledged", ack, subject=referral_id)
    async with TopicReader(kafka_bootstrap, "operator.ants.outbox.dlq", "operator.caf.outbox.dlq") as reader:
        records = await reader.until(lambda rs: len(rs) >= 6, what="six dead letters")
    errors = sorted(headers(r)["dlq_error"] for r in records)
    assert errors == sorted(["not_routed_to_operator", "unknown_referral", "schema_violation",
                             "invalid_json", "unknown_event_type", "forbidden_transition"])
    for record in records:
        h = headers(record)
        assert h["dlq_reason"] and h["dlq_consumer"] == "relais-referral-operators"
        assert h["dlq_topic"] in ("operator.ants.outbox", "operator.caf.outbox") and h["dlq_time"]
    schema = next(r for r in records if headers(r)["dlq_error"] == "schema_violation")
    assert "answered_at" in headers(schema)["dlq_reason"]
    forbidden = next(r for r in records if headers(r)["dlq_error"] == "forbidden_transition")
    assert "current status is acknowledged" in headers(forbidden)["dlq_reason"]
    bad = next(r for r in records if headers(r)["dlq_error"] == "invalid_json")
    assert bad.value == b"{not json"  # untouched
    assert (await status_is(api, referral_id, "acknowledged")) is not None


async def test_invalid_requests_name_the_field(api):
    bad_site = await api.post("/api/v1/visits", json={**VISIT, "site_id": "nowhere-poste"})
    assert bad_site.status_code == 422 and bad_site.json()["errors"][0]["field"] == "site_id"
    no_email = await api.post("/api/v1/visits", json={**VISIT, "citizen": {
        **VISIT["citizen"], "contact": {"channel": "email"}}})
    assert no_email.status_code == 422 and "email is required" in no_email.json()["detail"]
    missing = await api.post("/api/v1/visits", json={"site_id": "agen-leon-blum-poste"})
    assert missing.status_code == 422 and missing.json()["errors"][0]["field"] == "citizen"
    visit_id = (await api.post("/api/v1/visits", json=VISIT)).json()["visit_id"]
    cases = [({"procedure": "caf.passeport"}, "procedure"), ({"operator": "nasa"}, "operator"),
             ({"operator": "justice", "procedure": "justice.casier-judiciaire"}, "operator"),
             ({"consent": {"given": False}}, "consent")]
    for overrides, field in cases:
        response = await api.post(f"/api/v1/visits/{visit_id}/referrals", json={**REFERRAL, **overrides})
        assert response.status_code == 422, response.text
        assert response.json()["errors"][0]["field"] == field
    unknown = await api.post(f"/api/v1/visits/{uuid.uuid4()}/referrals", json=REFERRAL)
    assert unknown.status_code == 404


async def test_sign_in_and_access_rules(api):
    wrong = await api.post("/api/v1/auth/token", data={"username": "demo-adviser", "password": "nope"})
    assert wrong.status_code == 401
    anonymous = await api.get(f"/api/v1/referrals/{uuid.uuid4()}", headers={"Authorization": ""})
    assert anonymous.status_code == 401
    referral_id = await refer(api)
    other = await api.post("/api/v1/auth/token", data={"username": "demo-adviser-martignas", "password": "demo"})
    response = await api.get(f"/api/v1/referrals/{referral_id}",
                             headers={"Authorization": f"Bearer {other.json()['access_token']}"})
    assert response.status_code == 404
    elsewhere = await api.post("/api/v1/visits", json=VISIT,
                               headers={"Authorization": f"Bearer {other.json()['access_token']}"})
    assert elsewhere.status_code == 403
    visit_id = (await api.post("/api/v1/visits", json=VISIT)).json()["visit_id"]
    not_theirs = await api.post(f"/api/v1/visits/{visit_id}/referrals", json=REFERRAL,
                                headers={"Authorization": f"Bearer {other.json()['access_token']}"})
    assert not_theirs.status_code == 403
