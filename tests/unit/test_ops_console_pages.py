"""The ops console's rules without a broker or a service: masking a dead letter's
value, listing and replaying by the command line's rules (a forged dlq_topic header
refused, nothing produced nor audited then; audited before anything is produced), one
referral's journey merged from every service, parked rows retried or discarded, and the
services' ops API read over HTTP (httpx's mock transport standing for the services)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from relais_kit.dlq import DeadLetter, DeadLetterId, DlqError, ReplayRecord
from relais_kit.settings import REPO_ROOT
from relais_kit.topics import load_topics
from relais_ops.adapters.services_api import HttpOpsApi
from relais_ops.domain.journey import Consumed, Published, ServiceJourney, merge, trace_id, trace_link
from relais_ops.domain.masking import MASK, masked, masked_value
from relais_ops.service_layer import dead_letters, parked
from relais_ops.service_layer.audited import ReasonRequired
from relais_ops.service_layer.dead_letters import BadId, UnknownDeadLetter
from relais_ops.service_layer.journey import follow
from relais_ops.service_layer.ops_api import Action, NotParked, ParkedRow, ServiceParked, Unanswered

TOPICS = load_topics(REPO_ROOT / "deploy" / "topics.yaml")
T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE}-00f067aa0ba902b7-01"
ROUTED = "fr.franceservices.referral.routed.v1"
ANSWERED = "fr.franceservices.operator.answered.v1"
REFERRAL = "3f2c1d5e-8a4b-4c1e-9f00-2a7d7b1e0c11"


# -- masking -------------------------------------------------------------------------------

INBOX_EVENT = {
    "referral_id": REFERRAL, "operator": "caf", "procedure": "rsa", "status": "routed",
    "occurred_at": "2026-11-20T10:00:00Z", "due_at": "2026-11-27T18:00:00Z", "site_id": "fs-75-001",
    "adviser_id": "adv-7",
    "site": {"site_id": "fs-75-001", "name": "France Services Paris 13", "postcode": "75013"},
    "citizen": {"first_name": "Jeanne", "last_name": "Martin", "birth_date": "1980-02-03",
                "email": "jeanne@example.org", "phone": "0601020304", "age": 46},
    "consent": {"given": True, "given_at": "2026-11-20T09:58:00Z"},
    "referral_ids": [REFERRAL], "messages": ["Bonjour, je m'appelle Jeanne"],
    "personal_data": "eyJhbGciOiJFQ0RILUVTIn0..sealed",
}


def test_masking_keeps_ids_codes_and_times_and_masks_everything_else():
    shown = masked(INBOX_EVENT)
    for key in ("referral_id", "operator", "procedure", "status", "occurred_at", "due_at", "site_id"):
        assert shown[key] == INBOX_EVENT[key]
    assert shown["site"] == {"site_id": "fs-75-001", "name": MASK, "postcode": MASK}
    assert shown["citizen"] == dict.fromkeys(INBOX_EVENT["citizen"], MASK)  # the number too
    assert shown["consent"] == {"given": True, "given_at": "2026-11-20T09:58:00Z"}
    assert shown["referral_ids"] == [REFERRAL] and shown["messages"] == [MASK]
    assert shown["personal_data"] == MASK and shown["adviser_id"] == MASK
    text = masked_value(json.dumps(INBOX_EVENT).encode())
    for secret in ("Jeanne", "Martin", "1980", "jeanne@example.org", "0601020304", "75013", "Paris 13", "sealed"):
        assert secret not in text
    assert REFERRAL in text and '"caf"' in text


def test_a_value_that_is_not_json_is_masked_whole():
    assert masked_value(b"\xff\x00Jeanne Martin") == "(valeur non JSON de 15 octets, masquée)"
    assert "Jeanne" not in masked_value(b'"Jeanne Martin"')
    assert masked_value(None) == "(pas de valeur)"
    assert masked([1, "x", None, False]) == [MASK, MASK, None, False]


# -- dead letters --------------------------------------------------------------------------

ORIGINAL = [("ce_id", b"evt-1"), ("ce_type", ANSWERED.encode()), ("ce_source", b"/operators/caf")]


def letter(offset: int = 0, *, topic: str = "operator.caf.outbox", claimed: str | None = None,
           error: str = "schema_violation", minutes: int = 0) -> DeadLetter:
    when = (T0 + timedelta(minutes=minutes)).isoformat()
    dlq_headers = [("dlq_error", error.encode()), ("dlq_reason", b"data.outcome is required"),
                   ("dlq_topic", (claimed or topic).encode()), ("dlq_partition", b"1"),
                   ("dlq_offset", str(40 + offset).encode()), ("dlq_consumer", b"referral-operator-replies"),
                   ("dlq_time", when.encode())]
    return DeadLetter(DeadLetterId(f"{topic}.dlq", 1, offset), REFERRAL.encode(),
                      json.dumps({"referral_id": REFERRAL, "message_to_citizen": "Bonjour Jeanne"}).encode(),
                      (*ORIGINAL, *dlq_headers), timestamp_ms=1_700_000_000_000)


class FakeBroker:
    def __init__(self, letters: Sequence[DeadLetter]) -> None:
        self.letters = {d.id: d for d in letters}
        self.read_topics: list[list[str]] = []
        self.produced: list[ReplayRecord] = []

    async def read(self, topics: Sequence[str]) -> list[DeadLetter]:
        self.read_topics.append(list(topics))
        return [d for d in self.letters.values() if d.id.topic in topics]

    async def fetch(self, letter_id: DeadLetterId) -> DeadLetter:
        if letter_id not in self.letters:
            raise DlqError(f"{letter_id}: no such dead letter")
        return self.letters[letter_id]

    async def produce(self, replays: Sequence[ReplayRecord]) -> list[str]:
        self.produced += replays
        return [f"{r.topic}:1:{100 + i}" for i, r in enumerate(replays)]


class FakeAudit:
    def __init__(self, log: list[str] | None = None) -> None:
        self.entries: list[tuple[str, str, str, str, dict[str, Any]]] = []
        self.log = log if log is not None else []

    async def __call__(self, user_id: str, action: str, target: str, reason: str,
                      details: Mapping[str, Any]) -> None:
        self.entries.append((user_id, action, target, reason, dict(details)))
        self.log.append(f"audit:{action}")


async def test_listing_is_newest_first_filtered_and_limited():
    broker = FakeBroker([letter(0, minutes=0), letter(1, minutes=5, error="invalid_json"), letter(2, minutes=9),
                         letter(0, topic="referrals", minutes=7)])
    found = await dead_letters.listing(broker, TOPICS, limit=3)
    assert [str(d.id) for d in found.letters] == ["operator.caf.outbox.dlq:1:2", "referrals.dlq:1:0",
                                                   "operator.caf.outbox.dlq:1:1"]
    assert found.matching == 4 and found.errors == [("schema_violation", 3), ("invalid_json", 1)]
    assert "referrals.dlq" in broker.read_topics[0] and all(t.endswith(".dlq") for t in broker.read_topics[0])
    one_topic = await dead_letters.listing(broker, TOPICS, topic="operator.caf.outbox.dlq", error="schema_violation",
                                           since=T0 + timedelta(minutes=1))
    assert [str(d.id) for d in one_topic.letters] == ["operator.caf.outbox.dlq:1:2"]
    assert broker.read_topics[-1] == ["operator.caf.outbox.dlq"]
    with pytest.raises(UnknownDeadLetter):
        await dead_letters.listing(broker, TOPICS, topic="referrals")


@pytest.mark.parametrize("text,limit", [("", 100), ("5", 5), ("0", 1), ("-3", 1), ("x", 100), ("99999", 1000)])
def test_the_limit_is_bounded(text: str, limit: int):
    assert dead_letters.limit_of(text) == limit


async def test_bad_and_unknown_ids_are_told_apart():
    broker = FakeBroker([letter(0)])
    with pytest.raises(BadId):
        await dead_letters.one(broker, TOPICS, "referrals:0:1")
    with pytest.raises(BadId):
        await dead_letters.one(broker, TOPICS, "nonsense")
    with pytest.raises(UnknownDeadLetter):
        await dead_letters.one(broker, TOPICS, "nothing-here.dlq:0:1")
    with pytest.raises(UnknownDeadLetter):
        await dead_letters.one(broker, TOPICS, "operator.caf.outbox.dlq:1:99")
    assert (await dead_letters.one(broker, TOPICS, "operator.caf.outbox.dlq:1:0")).id == letter(0).id


async def test_unmasking_needs_a_reason_and_is_audited():
    audit = FakeAudit()
    with pytest.raises(ReasonRequired):
        await dead_letters.unmask(audit, "demo-ops", letter(0), "   ")
    assert audit.entries == []
    await dead_letters.unmask(audit, "demo-ops", letter(0), " INC-42 ")
    assert audit.entries == [("demo-ops", "dead_letter_unmasked", "operator.caf.outbox.dlq:1:0", "INC-42",
                              {"dead_letter": "operator.caf.outbox.dlq:1:0"})]


async def test_a_selection_goes_back_to_each_own_source_topic_audited_before_produced():
    order: list[str] = []
    broker, audit = FakeBroker([letter(0), letter(1), letter(0, topic="referrals")]), FakeAudit(order)
    original_produce = broker.produce

    async def produce(replays: Sequence[ReplayRecord]) -> list[str]:
        order.append("produce")
        return await original_produce(replays)

    broker.produce = produce  # type: ignore[method-assign]
    chosen = await dead_letters.selection(broker, TOPICS, ["operator.caf.outbox.dlq:1:0", "referrals.dlq:1:0",
                                                            "operator.caf.outbox.dlq:1:0"])
    assert chosen.allowed and [r.topic for r in chosen.replays] == ["operator.caf.outbox", "referrals"]
    with pytest.raises(ReasonRequired):
        await dead_letters.replay(broker, audit, "demo-ops", chosen, "")
    assert broker.produced == [] and audit.entries == []
    done = await dead_letters.replay(broker, audit, "demo-ops", chosen, "fixed the schema")
    assert order == ["audit:dead_letters_replayed", "produce"]
    assert [(d.dead_letter, d.landed) for d in done] == [("operator.caf.outbox.dlq:1:0", "operator.caf.outbox:1:100"),
                                                         ("referrals.dlq:1:0", "referrals:1:101")]
    [(user, action, target, reason, details)] = audit.entries
    assert (user, action, target, reason) == ("demo-ops", "dead_letters_replayed", "2 dead letters", "fixed the schema")
    assert details == {"dead_letters": ["operator.caf.outbox.dlq:1:0", "referrals.dlq:1:0"],
                       "to_topics": ["operator.caf.outbox", "referrals"]}
    replayed = broker.produced[0]
    assert replayed.key == REFERRAL.encode() and not any(k.startswith("dlq_") and "replayed" not in k
                                                         for k, _ in replayed.headers)


async def test_a_forged_dlq_topic_header_is_refused_and_the_whole_selection_with_it():
    forged = letter(3, claimed="operator.cnav.inbox")
    broker, audit = FakeBroker([letter(0), forged]), FakeAudit()
    chosen = await dead_letters.selection(broker, TOPICS, ["operator.caf.outbox.dlq:1:0",
                                                            "operator.caf.outbox.dlq:1:3"])
    assert not chosen.allowed
    refused = [p for p in chosen.planned if p.refusal]
    assert [p.letter.id for p in refused] == [forged.id] and "operator.cnav.inbox" in (refused[0].refusal or "")
    with pytest.raises(DlqError, match="refused"):
        await dead_letters.replay(broker, audit, "demo-ops", chosen, "try anyway")
    assert broker.produced == [] and audit.entries == [], "nothing produced, nothing audited"


async def test_a_selection_must_name_dead_letters_that_exist():
    broker = FakeBroker([letter(0)])
    with pytest.raises(BadId):
        await dead_letters.selection(broker, TOPICS, [])
    with pytest.raises(BadId):
        await dead_letters.selection(broker, TOPICS, ["operator.caf.outbox:1:0"])
    with pytest.raises(UnknownDeadLetter):
        await dead_letters.selection(broker, TOPICS, ["operator.caf.outbox.dlq:1:0", "operator.caf.outbox.dlq:1:7"])


# -- the journey ---------------------------------------------------------------------------

def at(ms: int) -> datetime:
    return T0 + timedelta(milliseconds=ms)


REFERRAL_ANSWER = ServiceJourney("referral", published=[
    Published("e-routed", ROUTED, "referrals", 0, 11, at(0), at(40), TRACEPARENT),
    Published("e-inbox", ROUTED, "operator.caf.inbox", 2, 5, at(1), at(42), TRACEPARENT),
    Published("e-late", "fr.franceservices.referral.closed.v1", "referrals", None, None, at(9000), None, None),
], consumed=[
    Consumed("referral-operator-replies", "e-reply", ANSWERED, "operator.caf.outbox", 1, 3, at(5200)),
])
NOTIFICATIONS_ANSWER = ServiceJourney("notifications", consumed=[
    Consumed("notifications-referrals", "e-routed", ROUTED, "referrals", 0, 11, at(65)),
])


def test_the_journey_is_one_timeline_with_hops_operator_replies_and_traces():
    journey = merge(REFERRAL, [NOTIFICATIONS_ANSWER, REFERRAL_ANSWER, ServiceJourney("sites", error="erreur 500")])
    assert [s.event_id for s in journey.steps] == ["e-routed", "e-inbox", "e-reply", "e-late"]
    routed, inbox, reply, late = journey.steps
    assert (routed.publisher, routed.partition, routed.offset, routed.trace_id) == ("referral", 0, 11, TRACE)
    assert routed.outbox_ms == 40.0
    [handled] = routed.handlings
    assert (handled.consumer, handled.service, handled.hop_ms) == ("notifications-referrals", "notifications", 25.0)
    assert inbox.handlings == [], "the operator's consumer is not a service of ours"
    assert (reply.publisher, reply.topic, reply.partition, reply.offset) == ("opérateur caf", "operator.caf.outbox",
                                                                             1, 3)
    assert reply.published_at is None and reply.handlings[0].hop_ms is None and reply.at == at(5200)
    assert late.published_at is None and late.outbox_ms is None and late.trace_id is None
    assert journey.answered == ["notifications", "referral"] and journey.unanswered == {"sites": "erreur 500"}


def test_a_handling_whose_publisher_did_not_answer_still_shows():
    journey = merge(REFERRAL, [NOTIFICATIONS_ANSWER, ServiceJourney("referral", error="injoignable")])
    [step] = journey.steps
    assert step.publisher == "?" and step.handlings[0].hop_ms is None
    assert journey.unanswered == {"referral": "injoignable"}


@pytest.mark.parametrize("traceparent,expected", [
    (TRACEPARENT, TRACE), (TRACEPARENT.upper(), TRACE), (None, None), ("", None), ("00-xyz-01", None),
    ("00-" + "0" * 32 + "-00f067aa0ba902b7-01", None),
])
def test_the_trace_id_is_the_second_field_of_a_valid_traceparent(traceparent: str | None, expected: str | None):
    assert trace_id(traceparent) == expected


def test_the_trace_link_comes_from_the_setting_or_none():
    assert trace_link("https://jaeger.example/trace/{trace_id}", TRACE) == f"https://jaeger.example/trace/{TRACE}"
    assert trace_link("", TRACE) is None and trace_link("https://x/{trace_id}", None) is None
    assert trace_link("https://jaeger.example/search", TRACE) is None


class FakeApi:
    def __init__(self, journeys: Mapping[str, ServiceJourney | Exception] | None = None,
                 parked_rows: Mapping[str, ServiceParked | Exception] | None = None,
                 log: list[str] | None = None) -> None:
        self.journeys = journeys or {}
        self.parked_rows = parked_rows or {}
        self.acted: list[tuple[str, int, str, str]] = []
        self.log = log if log is not None else []

    async def journey(self, service: str, subject: str) -> ServiceJourney:
        answer = self.journeys[service]
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def parked(self, service: str) -> ServiceParked:
        answer = self.parked_rows[service]
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def act(self, service: str, row_id: int, action: Action, reason: str) -> None:
        self.log.append(f"act:{action}")
        if row_id == 404:
            raise NotParked("gone")
        self.acted.append((service, row_id, action, reason))


async def test_following_asks_every_service_and_names_the_silent_one():
    api = FakeApi({"referral": REFERRAL_ANSWER, "notifications": NOTIFICATIONS_ANSWER,
                   "sites": Unanswered("pas de réponse en 5 s")})
    journey = await follow(api, ["referral", "sites", "notifications"], REFERRAL)
    assert len(journey.steps) == 4 and journey.unanswered == {"sites": "pas de réponse en 5 s"}


# -- parked rows ---------------------------------------------------------------------------

async def test_parked_rows_of_every_service_and_retry_discard_audited_first():
    row = ParkedRow(7, "referrals", ROUTED, T0, T0, "MessageSizeTooLargeError", 2)
    order: list[str] = []
    api = FakeApi(parked_rows={"referral": ServiceParked("referral", "referral", [row]),
                               "sites": Unanswered("erreur 503")}, log=order)
    found = await parked.everywhere(api, ["referral", "sites"])
    assert found[0].rows == [row] and found[1].error == "erreur 503"
    audit = FakeAudit(order)
    with pytest.raises(ReasonRequired):
        await parked.act(api, audit, "demo-ops", "referral", 7, "retry", " ")
    assert api.acted == [] and audit.entries == []
    await parked.act(api, audit, "demo-ops", "referral", 7, "retry", "max.message.bytes raised")
    await parked.act(api, audit, "demo-ops", "referral", 8, "discard", "superseded")
    assert order == ["audit:outbox_row_retried", "act:retry", "audit:outbox_row_discarded", "act:discard"]
    assert audit.entries[0] == ("demo-ops", "outbox_row_retried", "referral:7", "max.message.bytes raised",
                                {"service": "referral", "outbox_id": 7})
    with pytest.raises(NotParked):
        await parked.act(api, audit, "demo-ops", "referral", 404, "retry", "again")


# -- the services' ops API over HTTP --------------------------------------------------------

def api_answering(handler: Any) -> HttpOpsApi:
    return HttpOpsApi({"referral": "http://referral.test", "sites": "http://sites.test/"}, "the-token",
                      transport=httpx.MockTransport(handler))


async def test_the_journey_api_is_read_with_the_users_token():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"service": "referral", "published": [
            {"event_id": "e-1", "event_type": ROUTED, "topic": "referrals", "partition": 0, "offset": 11,
             "created_at": "2026-11-20T10:00:00+00:00", "published_at": "2026-11-20T10:00:00.040000+00:00",
             "traceparent": TRACEPARENT}],
            "consumed": [{"consumer": "referral-operator-replies", "event_id": "e-2", "event_type": ANSWERED,
                          "topic": "operator.caf.outbox", "partition": 1, "offset": 3,
                          "processed_at": "2026-11-20T10:00:05+00:00"}]})

    answer = await api_answering(handler).journey("referral", REFERRAL)
    assert str(seen[0].url) == f"http://referral.test/api/v1/ops/journey/{REFERRAL}"
    assert seen[0].headers["authorization"] == "Bearer the-token"
    assert answer.published[0] == Published("e-1", ROUTED, "referrals", 0, 11, at(0), at(40), TRACEPARENT)
    assert answer.consumed[0].processed_at == at(5000)


@pytest.mark.parametrize("response,why", [
    (httpx.Response(500), "erreur 500"), (httpx.Response(401), "accès refusé (401)"),
    (httpx.Response(200, text="<html>"), "réponse illisible"),
    (httpx.Response(200, json={"published": [{"event_id": "e"}]}), "réponse illisible"),
])
async def test_a_service_answering_badly_is_unanswered(response: httpx.Response, why: str):
    with pytest.raises(Unanswered, match=why.replace("(", r"\(").replace(")", r"\)")):
        await api_answering(lambda request: response).journey("referral", REFERRAL)


async def test_a_service_that_cannot_be_reached_is_unanswered():
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    with pytest.raises(Unanswered, match="injoignable"):
        await api_answering(handler).parked("sites")


async def test_parked_rows_and_actions_over_http():
    seen: list[tuple[str, str, bytes]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, str(request.url), request.content))
        if request.method == "GET":
            return httpx.Response(200, json={"schema": "sites", "rows": [
                {"id": 3, "topic": "sites", "event_type": "fr.franceservices.site.upserted.v1",
                 "created_at": "2026-11-20T10:00:00+00:00", "parked_at": "2026-11-20T10:01:00+00:00",
                 "reason": "too large", "waiting_behind": 4}]})
        return httpx.Response(404 if request.url.path.startswith("/api/v1/ops/parked/9/") else 204)

    api = api_answering(handler)
    found = await api.parked("sites")
    assert found.schema == "sites" and found.rows == [ParkedRow(3, "sites", "fr.franceservices.site.upserted.v1",
                                                                T0, T0 + timedelta(minutes=1), "too large", 4)]
    await api.act("sites", 3, "discard", "superseded")
    assert seen[-1] == ("POST", "http://sites.test/api/v1/ops/parked/3/discard", b'{"reason":"superseded"}')
    with pytest.raises(NotParked):
        await api.act("sites", 9, "retry", "again")


# -- what the pages print ------------------------------------------------------------------

def test_hops_in_milliseconds_and_short_event_types():
    from relais_ops.entrypoints.console.dead_letters import short_type
    from relais_ops.entrypoints.console.journey import milliseconds, read_by_operator

    assert [milliseconds(v) for v in (None, 152.46, 10.0, 1.54, 0.0)] == ["—", "152", "10", "1,5", "0,0"]
    assert short_type(ANSWERED) == "operator.answered v1" and short_type("custom") == "custom"
    assert read_by_operator("operator.france-travail.inbox") and not read_by_operator("operator.caf.outbox")
