"""Nothing an operator sends is dropped on the way to the adviser (issue #12, item 1): the
documents of `operator.info_requested`, the expert of `operator.acknowledged`, the
explanation of `operator.rejected` are kept on the referral's timeline (what the
adviser's page and the API show) and carried on in `referral.<move>` on `referrals`,
valid against the contract; an operator may still not send more than the contract allows."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio

from relais_kit.contract import load_contract
from relais_kit.settings import REPO_ROOT
from tests.referral_app import operator_says as says
from tests.referral_app import refer, referral_api, status_is
from tests.support import TopicReader, eventually, headers, of_type

pytestmark = pytest.mark.asyncio(loop_scope="module")
CONTRACT = load_contract(REPO_ROOT / "schemas")
DOCUMENTS = ["Copie de la pièce d'identité", "Avis d'imposition 2025"]
# A procedure the shared visit of tests/referral_app.py has every citizen field for.
OPERATOR, PROCEDURE = "dgfip", "dgfip.declaration-revenus"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def api(module_database_url: str, kafka_bootstrap: str) -> AsyncIterator[httpx.AsyncClient]:
    async with referral_api(module_database_url, kafka_bootstrap) as client:
        yield client


async def routed(api: httpx.AsyncClient) -> str:
    referral_id = await refer(api, operator=OPERATOR, procedure=PROCEDURE)
    await eventually(lambda: status_is(api, referral_id, "routed"), what="routed")
    return referral_id


async def operator_says(bootstrap: str, operator: str, name: str, referral_id: str, **data: object) -> None:
    await says(bootstrap, name, referral_id, operator, **data)


async def lifecycle_event(bootstrap: str, referral_id: str, name: str) -> dict:
    async with TopicReader(bootstrap, "referrals") as reader:
        records = await reader.until(
            lambda rs: any(r.key == referral_id.encode() for r in of_type(rs, name)), what=f"{name} on referrals")
    record = next(r for r in of_type(records, name) if r.key == referral_id.encode())
    data = json.loads(record.value)
    CONTRACT.check(headers(record)["ce_type"], data)
    return dict(data)


async def detail(api: httpx.AsyncClient, referral_id: str, event: str) -> dict:
    body = (await api.get(f"/api/v1/referrals/{referral_id}")).json()
    return dict(next(e for e in body["timeline"] if e["event"] == event)["detail"])


async def test_the_documents_asked_for_and_the_expert_reach_the_adviser(api, kafka_bootstrap):
    referral_id = await routed(api)
    await operator_says(kafka_bootstrap, OPERATOR, "operator.acknowledged", referral_id, case_reference="CAF-47-1",
                        expert="Pôle prime d'activité")
    await operator_says(kafka_bootstrap, OPERATOR, "operator.info_requested", referral_id,
                        question="Pouvez-vous nous transmettre ces pièces ?", documents=DOCUMENTS,
                        unknown_newer_field="tolerated, not kept")
    await eventually(lambda: status_is(api, referral_id, "info_requested"), what="info_requested")

    asked = await lifecycle_event(kafka_bootstrap, referral_id, "referral.info_requested")
    assert asked["question"] == "Pouvez-vous nous transmettre ces pièces ?" and asked["documents"] == DOCUMENTS
    assert "unknown_newer_field" not in asked
    assert await detail(api, referral_id, "info_requested") == {
        "question": "Pouvez-vous nous transmettre ces pièces ?", "documents": DOCUMENTS}
    acknowledged = await lifecycle_event(kafka_bootstrap, referral_id, "referral.acknowledged")
    assert acknowledged["expert"] == "Pôle prime d'activité" and acknowledged["case_reference"] == "CAF-47-1"
    assert (await detail(api, referral_id, "acknowledged"))["expert"] == "Pôle prime d'activité"


async def test_a_question_without_documents_still_reads_as_before(api, kafka_bootstrap):
    referral_id = await routed(api)
    await operator_says(kafka_bootstrap, OPERATOR, "operator.info_requested", referral_id,
                        question="Quel est son régime ?")
    await eventually(lambda: status_is(api, referral_id, "info_requested"), what="info_requested")
    asked = await lifecycle_event(kafka_bootstrap, referral_id, "referral.info_requested")
    assert "documents" not in asked
    assert await detail(api, referral_id, "info_requested") == {"question": "Quel est son régime ?"}


async def test_the_explanation_of_a_rejection_reaches_the_adviser(api, kafka_bootstrap):
    referral_id = await routed(api)
    await operator_says(kafka_bootstrap, OPERATOR, "operator.rejected", referral_id, reason_code="out_of_scope",
                        reason="La personne relève du régime agricole.", suggested_operator="msa")
    await eventually(lambda: status_is(api, referral_id, "rejected"), what="rejected")
    rejected = await lifecycle_event(kafka_bootstrap, referral_id, "referral.rejected")
    assert rejected["reason"] == "La personne relève du régime agricole."
    assert await detail(api, referral_id, "rejected") == {
        "reason_code": "out_of_scope", "reason": "La personne relève du régime agricole.",
        "suggested_operator": "msa"}


async def test_documents_outside_the_contract_are_dead_lettered_not_stored(api, kafka_bootstrap):
    referral_id = await routed(api)
    await operator_says(kafka_bootstrap, OPERATOR, "operator.info_requested", referral_id, question="?",
                        documents="une seule chaîne, pas une liste")
    async with TopicReader(kafka_bootstrap, f"operator.{OPERATOR}.outbox.dlq") as reader:
        await reader.until(lambda rs: any(r.key == referral_id.encode() for r in rs),
                           what="the forged reply dead-lettered")
    assert (await status_is(api, referral_id, "routed")) is not None
