"""The conformance kit's checks, on hand-made observations (no broker), and the inbox
events it builds from the schemas."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from aiokafka.partitioner import DefaultPartitioner
from joserfc import jwe
from joserfc.jwk import ECKey

from relais_conformance import checks
from relais_conformance.checks import (
    ACK,
    ANSWERED,
    CANCEL,
    INFO,
    INFO_NEXT,
    INFO_REQUESTED,
    MOVED,
    MOVED_NEXT,
    ROUTED,
    UNKNOWN_FIELDS,
    UNKNOWN_TYPE,
    UNKNOWN_TYPE_NEXT,
    Observation,
    Reply,
    Sent,
    Settings,
    evaluate,
)
from relais_conformance.cli import main
from relais_conformance.contract import Contract, ContractError, Sealer
from relais_conformance.runner import id_on_partition, partition_of

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "schemas"
KEYS = ROOT / "deploy" / "demo" / "operator-keys"
OPERATOR = "caf"
ROUTED_ROLES = [checks.ROUTED, checks.DUPLICATE, checks.UNKNOWN_FIELDS, checks.UNKNOWN_TYPE_NEXT, checks.REMINDER,
                checks.REMINDER_NEXT, checks.INFO, checks.INFO_NEXT, checks.CANCEL, checks.MOVED, checks.MOVED_NEXT]


@pytest.fixture(scope="module")
def contract() -> Contract:
    return Contract(SCHEMAS)


def make_reply(at: float, name: str, ref: str, *, ce_id: str | None = None, key: str | None = None,
               source: str = f"/operators/{OPERATOR}", data: dict[str, Any] | None = None,
               drop: tuple[str, ...] = ()) -> Reply:
    if data is None:
        data = {"referral_id": ref}
        if name == ACK:
            data["acknowledged_at"] = "2026-01-05T10:00:00+01:00"
        elif name == ANSWERED:
            data.update(answered_at="2026-01-05T10:00:00+01:00", outcome="resolved", message_to_citizen="Bonjour.",
                        message_to_adviser="Traité.")
        elif name == INFO_REQUESTED:
            data.update(requested_at="2026-01-05T10:00:00+01:00", question="Revenus ?")
    headers = {"ce_specversion": "1.0", "ce_id": ce_id or str(uuid.uuid5(uuid.NAMESPACE_URL, ref + name)),
               "ce_source": source, "ce_type": f"fr.franceservices.{name}.v1",
               "ce_time": "2026-01-05T10:00:00.000+00:00", "content-type": "application/json"}
    return Reply(at, 0, int(at * 1000), (key or ref).encode(),
                 [(k, v.encode()) for k, v in headers.items() if k not in drop], json.dumps(data).encode())


def good_observation() -> Observation:
    """What a conformant consumer produces: ack + answer for every routed referral but
    the one with moved personal data; info provided and cancellation at 1 s."""
    ids = {role: str(uuid.uuid4()) for role in [*ROUTED_ROLES, checks.UNKNOWN_TYPE]}
    sent = [Sent(role, "referral.routed", ids[role], str(uuid.uuid4()), 0.0) for role in ROUTED_ROLES
            if role != checks.INFO_NEXT]
    sent.append(Sent(checks.UNKNOWN_TYPE, "referral.escalated", ids[checks.UNKNOWN_TYPE], str(uuid.uuid4()), 0.0))
    sent.append(Sent(INFO, "referral.info_provided", ids[INFO], str(uuid.uuid4()), 1.0))
    sent.append(Sent(INFO_NEXT, "referral.routed", ids[INFO_NEXT], str(uuid.uuid4()), 1.0))
    sent.append(Sent(CANCEL, "referral.cancelled", ids[CANCEL], str(uuid.uuid4()), 1.0))
    replies = []
    for role in ROUTED_ROLES:
        if role == MOVED:
            continue
        at = 1.2 if role == INFO_NEXT else 0.2
        replies += [make_reply(at, ACK, ids[role]), make_reply(at + 0.01, ANSWERED, ids[role])]
    return Observation(Settings(OPERATOR, ack_within=10, answer_within=15, quiet_period=3), sent, replies, ended=5.0)


def failed(obs: Observation, contract: Contract) -> dict[str, list[str]]:
    return {r.name: r.failures for r in evaluate(obs, contract) if r.status == checks.FAIL}


def test_a_conformant_consumer_passes_every_check(contract: Contract) -> None:
    results = evaluate(good_observation(), contract)
    assert [r.name for r in results] == checks.CHECK_NAMES
    assert {r.status for r in results} == {checks.PASS}, [r.as_dict() for r in results if r.failures]


def test_a_late_or_missing_acknowledgement_fails(contract: Contract) -> None:
    obs = good_observation()
    ref = obs.referral(ROUTED)
    obs.replies = [r for r in obs.replies if not (r.referral_id == ref and r.name == ACK)]
    assert "no operator.acknowledged within 10 s" in failed(obs, contract)["acknowledged"][0]
    obs.replies.append(make_reply(12.0, ACK, ref))
    assert "later than --ack-within 10 s" in failed(obs, contract)["acknowledged"][0]


def test_no_answer_fails_but_an_info_request_counts(contract: Contract) -> None:
    obs = good_observation()
    ref = obs.referral(ROUTED)
    obs.replies = [r for r in obs.replies if not (r.referral_id == ref and r.name == ANSWERED)]
    assert ref in failed(obs, contract)["answered"][0]
    obs.replies.append(make_reply(3.0, INFO_REQUESTED, ref))
    assert "answered" not in failed(obs, contract)


def test_two_ce_ids_for_one_acknowledgement_fail_the_same_ce_id_twice_does_not(contract: Contract) -> None:
    obs = good_observation()
    ref = obs.referral(checks.DUPLICATE)
    same = next(r for r in obs.replies if r.referral_id == ref and r.name == ACK)
    obs.replies.append(make_reply(0.5, ACK, ref, ce_id=same.ce_id))
    result = next(r for r in evaluate(obs, contract) if r.name == "duplicate-delivery")
    assert result.status == checks.PASS and "same ce_id" in result.notes[0]
    obs.replies.append(make_reply(0.6, ACK, ref, ce_id=str(uuid.uuid4())))
    assert "2 operator.acknowledged with different ce_id" in failed(obs, contract)["duplicate-delivery"][0]


def test_replies_sent_again_with_the_same_ce_ids_on_a_redelivered_routed_event_conform(contract: Contract) -> None:
    """The contract: a routed referral already answered, delivered again, asks for the
    replies again with the same ce_ids (docs/broker-loss.md). A consumer doing so for
    every referral it answered (the `cancel` one before its cancellation) passes."""
    obs = good_observation()
    cancel_at = next(s.at for s in obs.sent if s.name == "referral.cancelled")
    again = [make_reply(r.arrived + 0.5, r.name or "", r.referral_id or "", ce_id=r.ce_id)
             for r in obs.replies if r.arrived + 0.5 < cancel_at or r.referral_id != obs.referral(CANCEL)]
    assert len(again) == len(obs.replies)
    obs.replies += again
    results = evaluate(obs, contract)
    assert {r.status for r in results} == {checks.PASS}, [r.as_dict() for r in results if r.failures]
    notes = next(r for r in results if r.name == "duplicate-delivery").notes
    assert notes and f"{len(again)} reply(ies) re-sent with the same ce_id" in notes[0]


def test_a_reply_to_the_unknown_type_or_a_stall_after_it_fails(contract: Contract) -> None:
    obs = good_observation()
    obs.replies.append(make_reply(0.3, ACK, obs.referral(UNKNOWN_TYPE) or ""))
    assert "referral.escalated" in failed(obs, contract)["unknown-event-type"][0]
    obs = good_observation()
    obs.replies = [r for r in obs.replies if r.referral_id != obs.referral(UNKNOWN_TYPE_NEXT)]
    assert "stop or stall" in failed(obs, contract)["unknown-event-type"][0]


def test_unknown_fields_must_be_acknowledged(contract: Contract) -> None:
    obs = good_observation()
    ref = obs.referral(UNKNOWN_FIELDS)
    obs.replies = [r for r in obs.replies if r.referral_id != ref]
    assert ref in failed(obs, contract)["unknown-fields"][0]


def test_an_info_request_must_be_followed_by_an_answer(contract: Contract) -> None:
    obs = good_observation()
    ref = obs.referral(INFO)
    obs.replies = [r for r in obs.replies if not (r.referral_id == ref and r.name == ANSWERED)]
    obs.replies.append(make_reply(0.5, INFO_REQUESTED, ref))
    assert "sent no operator.answered" in failed(obs, contract)["info-provided"][0]
    obs.replies.append(make_reply(2.0, ANSWERED, ref))
    assert "info-provided" not in failed(obs, contract)
    obs = good_observation()
    obs.replies = [r for r in obs.replies if r.referral_id != obs.referral(INFO_NEXT)]
    assert "info-provided" in failed(obs, contract)


def test_a_new_reply_after_the_cancellation_fails_a_resend_does_not(contract: Contract) -> None:
    obs = good_observation()
    ref = obs.referral(CANCEL)
    earlier = next(r for r in obs.replies if r.referral_id == ref and r.name == ANSWERED)
    obs.replies.append(make_reply(2.0, ANSWERED, ref, ce_id=earlier.ce_id))  # a re-send: tolerated
    assert "cancellation" not in failed(obs, contract)
    obs.replies.append(make_reply(2.5, INFO_REQUESTED, ref))
    assert "after referral.cancelled" in failed(obs, contract)["cancellation"][0]
    obs.sent = [s for s in obs.sent if s.name != "referral.cancelled"]
    assert "did not cancel it" in failed(obs, contract)["cancellation"][0]


def test_moved_personal_data_must_be_refused(contract: Contract) -> None:
    obs = good_observation()
    obs.replies.append(make_reply(0.3, ACK, obs.referral(MOVED) or ""))
    assert "decrypts to another referral_id" in failed(obs, contract)["personal-data-binding"][0]
    obs = good_observation()
    obs.replies = [r for r in obs.replies if r.referral_id != obs.referral(MOVED_NEXT)]
    assert "personal-data-binding" in failed(obs, contract)
    obs = good_observation()
    obs.encrypted = False
    assert next(r for r in evaluate(obs, contract) if r.name == "personal-data-binding").status == checks.SKIP


def test_every_reply_is_checked(contract: Contract) -> None:
    obs = good_observation()
    ref = obs.referral(ROUTED) or ""
    obs.replies += [
        make_reply(0.4, "operator.rejected", ref, data={"referral_id": ref}),  # misses rejected_at, reason_code
        make_reply(0.4, ACK, ref, ce_id="x", source="/operators/cnam", drop=("content-type",)),
        make_reply(0.4, "operator.closed", ref, ce_id="y"),
        make_reply(0.4, ANSWERED, ref, ce_id="z", key="not-the-referral"),
        make_reply(0.4, ACK, str(uuid.uuid4()), ce_id="w"),
    ]
    found = failed(obs, contract)
    assert "rejected_at" in " ".join(found["reply-schema"])
    headers = " ".join(found["reply-headers"])
    assert "ce_source is '/operators/cnam'" in headers and "missing header(s) content-type" in headers
    assert "'fr.franceservices.operator.closed.v1' is not an operator event" in headers
    assert "record key is 'not-the-referral'" in found["reply-key"][0]
    assert "which the kit never routed to caf" in found["reply-referral"][0]


def test_one_ce_id_for_two_events_fails(contract: Contract) -> None:
    obs = good_observation()
    ref = obs.referral(ROUTED) or ""
    obs.replies.append(make_reply(0.4, INFO_REQUESTED, ref, ce_id=obs.replies[0].ce_id))
    assert "must be unique per event" in failed(obs, contract)["reply-headers"][0]


def test_the_kit_builds_valid_inbox_events_with_sealed_personal_data(contract: Contract) -> None:
    public = json.loads((KEYS / "caf.public.jwk.json").read_text())
    private = ECKey.import_key(json.loads((KEYS / "caf.private.jwk.json").read_text()))
    ref = str(uuid.uuid4())
    event = contract.routed(ref, OPERATOR, "caf.prime-activite", Sealer(public))
    assert not list(contract.validators["referral.routed"].iter_errors(event.data))
    key, value, headers = event.record()
    h = dict(headers)
    assert key == ref.encode() and h["ce_subject"] == h["ce_partitionkey"] == ref.encode()
    assert h["ce_source"] == b"/relais/referral" and h["ce_type"] == b"fr.franceservices.referral.routed.v1"
    assert h["ce_dataschema"] == contract.schemas["referral.routed"]["$id"].encode()
    assert json.loads(value) == event.data
    if contract.encrypted("referral.routed"):
        opened = jwe.decrypt_compact(event.data["personal_data"], private)
        assert opened.protected["alg"] == "ECDH-ES" and opened.protected["enc"] == "A256GCM"
        assert opened.protected["kid"] == public["kid"] and opened.protected["cty"] == "application/json"
        assert json.loads(opened.plaintext or b"")["referral_id"] == ref
        other = str(uuid.uuid4())
        moved = contract.routed(ref, OPERATOR, "caf.prime-activite", Sealer(public), sealed_referral_id=other)
        assert json.loads(jwe.decrypt_compact(moved.data["personal_data"], private).plaintext or b"")[
            "referral_id"] == other
        info = contract.info_provided(ref, OPERATOR, Sealer(public))
        assert json.loads(jwe.decrypt_compact(info.data["personal_data"], private).plaintext or b"") \
            .keys() == {"referral_id", "message"}
    extended = contract.with_unknown_fields(event)
    assert {e.validator for e in contract.validators["referral.routed"].iter_errors(extended.data)} \
        == {"additionalProperties"}
    assert "ce_traceparent" in dict(extended.extra_headers)
    for event in (contract.cancelled(ref, OPERATOR), contract.reminder(ref, OPERATOR)):
        assert not list(contract.validators[event.name].iter_errors(event.data))


def test_a_private_key_is_refused_as_public_key() -> None:
    with pytest.raises(ContractError, match="PRIVATE"):
        Sealer(json.loads((KEYS / "caf.private.jwk.json").read_text()))


def test_partitions_follow_the_kafka_default_partitioner() -> None:
    for _ in range(50):
        ref = str(uuid.uuid4())
        assert partition_of(ref, 3) == DefaultPartitioner()(ref.encode(), [0, 1, 2], [0, 1, 2])
    assert partition_of(id_on_partition(2, 3), 3) == 2


def test_the_cli_refuses_to_run_without_what_it_needs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--operator", "caf", "--schemas", str(tmp_path)]) == 2
    assert "no events/ folder" in capsys.readouterr().err
    assert main(["--operator", "mars", "--schemas", str(SCHEMAS)]) == 2
    assert "unknown operator 'mars'" in capsys.readouterr().err
