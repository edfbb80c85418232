"""A referral's messages in the ops console, without a service: each delivery's
recipient, channel and state in words (an SMS received by the telephone, a failure and
its reason, the next attempt of a waiting one), their order, and the notifications
service's ops API read over HTTP (httpx's mock transport standing for it) — a service
that answers badly or not at all leaves the page a reason, not an error."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from relais_ops.adapters.services_api import HttpOpsApi
from relais_ops.domain.messages import (
    Delivery,
    badge,
    channel_words,
    in_order,
    moments,
    next_attempt,
    recipient_words,
    report_words,
    state_words,
)
from relais_ops.service_layer.messages import of_referral
from relais_ops.service_layer.ops_api import Unanswered

T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
REFERRAL = "3f2c1d5e-8a4b-4c1e-9f00-2a7d7b1e0c11"
LOST = "le SMS n'est pas arrivé sur le téléphone de la personne (éteint, hors réseau ou numéro hors service)"


def sms(status: str = "sent", **facts: object) -> Delivery:
    return Delivery(**{"id": "d-1", "recipient": "citizen", "channel": "sms", "status": status, "attempts": 1,
                       "created_at": T0, **facts})  # type: ignore[arg-type]


@pytest.mark.parametrize("delivery,state,words,kind", [
    (sms("pending", attempts=0), "pending", "en attente", "info"),
    (sms(sent_at=T0), "sent", "envoyé", "new"),
    (sms(sent_at=T0, delivered_at=T0 + timedelta(seconds=3), report="delivered"), "delivered",
     "reçu par le téléphone", "success"),
    (sms("failed", failed_at=T0, reason=LOST, report="failed"), "failed", "échec", "error"),
])
def test_each_state_in_words(delivery: Delivery, state: str, words: str, kind: str):
    assert (delivery.state, state_words(delivery), badge(delivery)) == (state, words, kind)


def test_recipients_and_channels_in_words_unknown_codes_as_they_are():
    assert [channel_words(sms(channel=c)) for c in ("sms", "email", "letter", "adviser_screen", "fax")] == [
        "SMS", "courriel", "courrier", "écran du conseiller", "fax"]
    assert [recipient_words(sms(recipient=r)) for r in ("citizen", "adviser", "x")] == [
        "La personne", "Le conseiller", "x"]


def test_an_intermediate_report_says_more_than_sent_a_final_one_does_not():
    assert report_words(sms(sent_at=T0, report="submitted")) == "remis à l'opérateur téléphonique"
    assert report_words(sms(sent_at=T0, report="buffered")) == "en attente chez l'opérateur téléphonique"
    assert report_words(sms(sent_at=T0, delivered_at=T0, report="delivered")) is None
    assert report_words(sms("failed", failed_at=T0, report="rejected")) is None  # the reason says it
    assert report_words(sms(sent_at=T0)) is None


def test_when_sent_received_failed_and_the_next_attempt_of_a_waiting_one_only():
    received = sms(sent_at=T0, delivered_at=T0 + timedelta(seconds=4))
    assert moments(received) == [("envoyé le", T0), ("reçu le", T0 + timedelta(seconds=4))]
    failed = sms("failed", sent_at=T0, failed_at=T0 + timedelta(hours=1), reason=LOST)
    assert moments(failed) == [("envoyé le", T0), ("échec le", T0 + timedelta(hours=1))]
    assert moments(sms("pending")) == []
    later = T0 + timedelta(minutes=5)
    assert next_attempt(sms("pending", next_attempt_at=later, reason="serveur de courriel injoignable")) == later
    assert next_attempt(sms("sent", next_attempt_at=later)) is None


def test_oldest_first_the_person_before_the_adviser():
    adviser = sms(id="a", recipient="adviser", channel="adviser_screen")
    citizen = sms(id="c")
    older = sms(id="o", created_at=T0 - timedelta(days=1))
    unknown = sms(id="u", created_at=None)
    assert [d.id for d in in_order([unknown, adviser, citizen, older])] == ["o", "c", "a", "u"]


# -- the notifications service's ops API over HTTP ------------------------------------------

def api_answering(handler: object) -> HttpOpsApi:
    return HttpOpsApi({"referral": "http://referral.test", "notifications": "http://notifications.test/"},
                      "the-token", transport=httpx.MockTransport(handler))  # type: ignore[arg-type]


async def test_the_messages_are_read_with_the_users_token_facts_only():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=[
            {"id": "d-2", "referral_id": REFERRAL, "recipient": "citizen", "channel": "sms", "status": "failed",
             "created_at": "2026-11-20T10:00:00+00:00", "sent_at": "2026-11-20T10:00:01+00:00",
             "failed_at": "2026-11-20T11:00:00+00:00", "attempts": 1, "reason": LOST, "erased_at": None,
             "delivered_at": None, "report": "failed", "report_at": "2026-11-20T11:00:00+00:00",
             "next_attempt_at": None},
            {"id": "d-1", "referral_id": REFERRAL, "recipient": "citizen", "channel": "sms", "status": "sent",
             "created_at": "2026-11-20T09:00:00+00:00", "sent_at": "2026-11-20T09:00:01+00:00",
             "failed_at": None, "attempts": 1, "reason": None, "erased_at": None,
             "delivered_at": "2026-11-20T09:00:04+00:00", "report": "delivered",
             "report_at": "2026-11-20T09:00:04+00:00", "next_attempt_at": None}])

    told = await of_referral(api_answering(handler), REFERRAL)
    assert str(seen[0].url) == f"http://notifications.test/api/v1/ops/deliveries?referral_id={REFERRAL}"
    assert seen[0].headers["authorization"] == "Bearer the-token"
    assert told.error is None and [d.id for d in told.deliveries] == ["d-1", "d-2"]
    received, failed = told.deliveries
    assert received.state == "delivered" and received.delivered_at == datetime(2026, 11, 20, 9, 0, 4, tzinfo=UTC)
    assert (failed.state, failed.reason, failed.report) == ("failed", LOST, "failed")


@pytest.mark.parametrize("response,why", [
    (httpx.Response(500), "erreur 500"), (httpx.Response(403), "accès refusé (403)"),
    (httpx.Response(200, text="<html>"), "réponse illisible"),
    (httpx.Response(200, json={"rows": []}), "réponse illisible"),
    (httpx.Response(200, json=[{"id": "d-1"}]), "réponse illisible"),
    (httpx.Response(200, json=[{"id": "d", "recipient": "citizen", "channel": "sms", "status": "sent",
                                "attempts": 1, "sent_at": "hier"}]), "réponse illisible"),
])
async def test_a_bad_answer_leaves_the_page_a_reason(response: httpx.Response, why: str):
    told = await of_referral(api_answering(lambda request: response), REFERRAL)
    assert told.deliveries == () and told.error is not None and told.error.startswith(why)


async def test_an_unreachable_or_unknown_service_leaves_the_page_a_reason():
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    assert (await of_referral(api_answering(handler), REFERRAL)).error == "injoignable (ConnectError)"
    nowhere = HttpOpsApi({"referral": "http://referral.test"}, "t")
    with pytest.raises(Unanswered, match="adresse du service inconnue"):
        await nowhere.deliveries(REFERRAL)
