"""The operator simulator's demo rule through Kafka (issue #12, item 12): a summary saying
« justificatif » gets `operator.info_requested` with documents, then `operator.answered`
once `referral.info_provided` comes; a summary saying « refus » gets `operator.rejected`;
every reply valid against the contract, and neither the summary nor the adviser's
message in its logs."""

from __future__ import annotations

import json
from collections.abc import Callable

from tests.integration.test_simulator_flow import (
    Inboxes,
    Simulator,
    assert_operator_event,
    collect,
    of,
    routed,
    simulator,  # noqa: F401  (the fixture)
)
from tests.support import seal_for

ASKING = "Il lui manque un justificatif de domicile récent."
REFUSING = "Démonstration d'un refus de l'opérateur."


def with_summary(operator: str, procedure: str, summary: str) -> dict:
    data = routed(operator, procedure)
    data["personal_data"] = seal_for(operator, {"referral_id": data["referral_id"], "summary": summary,
                                                "citizen": {"given_name": "Nadia"}})
    return data


async def test_the_simulator_asks_then_answers_and_rejects_by_the_words_of_the_summary(
        kafka_bootstrap: str, simulator: Callable[..., Simulator]) -> None:  # noqa: F811
    sim = simulator("dgfip", "--answer-delay", "0")
    await sim.wait_for_output("playing dgfip")
    asking = with_summary("dgfip", "dgfip.declaration-revenus", ASKING)
    refusing = with_summary("dgfip", "dgfip.prelevement-source", REFUSING)
    ask_id, refuse_id = asking["referral_id"], refusing["referral_id"]
    async with Inboxes(kafka_bootstrap) as inboxes:
        await inboxes.send("referral.routed", asking)
        await inboxes.send("referral.routed", refusing)
        first = await collect(kafka_bootstrap, ["operator.dgfip.outbox"],
                              lambda rs: bool(of(rs, ask_id, "operator.info_requested")
                                              and of(rs, refuse_id, "operator.rejected")))
        [question] = of(first, ask_id, "operator.info_requested")
        assert_operator_event(question, "dgfip", "operator.info_requested", ask_id)
        asked = json.loads(question.value)
        assert asked["documents"] and asked["question"]
        assert not of(first, ask_id, "operator.answered")  # not before the adviser has replied
        [rejection] = of(first, refuse_id, "operator.rejected")
        assert_operator_event(rejection, "dgfip", "operator.rejected", refuse_id)
        assert json.loads(rejection.value)["reason_code"] == "out_of_scope"
        assert not of(first, refuse_id, "operator.answered")

        await inboxes.send("referral.info_provided", {
            "referral_id": ask_id, "operator": "dgfip", "procedure": "dgfip.declaration-revenus",
            "provided_at": asked["requested_at"],
            "personal_data": seal_for("dgfip", {"referral_id": ask_id, "message": "Quittance de loyer jointe."})})
        later = await collect(kafka_bootstrap, ["operator.dgfip.outbox"],
                              lambda rs: bool(of(rs, ask_id, "operator.answered")))
    [answer] = of(later, ask_id, "operator.answered")
    assert_operator_event(answer, "dgfip", "operator.answered", ask_id)
    assert [json.loads(r.value)["referral_id"] for r in of(later, ask_id, "operator.acknowledged")] == [ask_id]
    courses = {e.get("course") for e in sim.logs() if e["event"] == "routed_received"}
    assert courses == {"ask", "reject"}
    for secret in (ASKING, REFUSING, "justificatif", "Quittance de loyer"):
        assert secret not in sim.output()
    assert await sim.terminate() == 0
