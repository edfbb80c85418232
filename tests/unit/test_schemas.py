"""The contract files in `schemas/`: every event schema is a valid, self-contained JSON
Schema 2020-12 whose examples pass, and `asyncapi.yaml` references them all."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from joserfc import jwe
from joserfc.jwk import ECKey
from jsonschema import Draft202012Validator

from tests.support import open_as

ROOT = Path(__file__).parents[2]
SCHEMAS = ROOT / "schemas"
EVENT_FILES = sorted((SCHEMAS / "events").glob("*.v*.json"))
ID_PREFIX = "https://relais.franceservices.fr/schemas/events/"
OPERATOR_WRITTEN = {"operator.acknowledged", "operator.info_requested", "operator.rejected",
                    "operator.answered"}
PRIVACY = {"personal_data.erasure_requested", "personal_data.erased",
           "personal_data.access_requested", "personal_data.access_answered"}
PERSONAL_FILES = sorted((SCHEMAS / "personal").glob("*.v*.json"))
PERSONAL_ID_PREFIX = "https://relais.franceservices.fr/schemas/personal/"
# The private half of `reply_key` in the `personal_data.access_requested` example, for which
# the `personal_data.access_answered` example is sealed: a demo key, public here, like the
# operators' demo keys. A real reply key is a one-off key of the ops command that asks.
DEMO_REPLY_KEY: dict[str, str | list[str]] = {"kty": "EC", "crv": "P-256", "kid": "ops-access-5a8d2c41",
                  "x": "ekGS9lLSqvRkf0pidzTU8GQNx-M_0lxSW33IoW5DZBA",
                  "y": "lYsJ2bVA6mGGWVME91VMNzpaId7rAPIeSeFYh9gZ9nY",
                  "d": "08n9b6-RXPlJthx1Qx6WCJyJA4Pi45h9zNrXENGzmqw"}

R1 = "3f1c9e2a-7b4d-4c8e-9a51-2d6f0b8e4c17"


def event_name(path: Path) -> str:
    return path.name.removesuffix(".v1.json")


def load(name: str) -> dict[str, Any]:
    return json.loads((SCHEMAS / "events" / f"{name}.v1.json").read_text())


def validator(name: str) -> Draft202012Validator:
    return Draft202012Validator(load(name), format_checker=Draft202012Validator.FORMAT_CHECKER)


def is_valid(name: str, data: dict[str, Any]) -> bool:
    return validator(name).is_valid(data)


def example(name: str, index: int = 0) -> dict[str, Any]:
    return copy.deepcopy(load(name)["examples"][index])


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from refs(value)


def resolve(document: dict[str, Any], pointer: str) -> Any:
    node: Any = document
    for part in pointer.removeprefix("#/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


# ------------------------------------------------------------------ event schemas

def test_every_event_of_the_catalogue_has_a_schema() -> None:
    catalogue = {
        "visit.opened", "visit.closed", "referral.requested", "referral.routed",
        "referral.acknowledged", "referral.info_requested", "referral.info_provided",
        "referral.rejected", "referral.answered", "referral.closed", "referral.cancelled",
        "referral.overdue", "referral.reminder", "notification.sent", "notification.delivered",
        "notification.failed",
        "site.upserted", "site.retired", *OPERATOR_WRITTEN, *PRIVACY,
    }
    assert {event_name(p) for p in EVENT_FILES} == catalogue


@pytest.mark.parametrize("path", PERSONAL_FILES, ids=lambda p: p.name)
def test_personal_schema_is_valid_closed_and_its_examples_pass(path: Path) -> None:
    schema = json.loads(path.read_text())
    Draft202012Validator.check_schema(schema)
    assert schema["$id"] == PERSONAL_ID_PREFIX + path.name
    assert schema["title"] and schema["description"] and schema["additionalProperties"] is False
    assert (SCHEMAS / "events" / path.name).is_file()   # the plaintext of that event's personal_data
    for ref in refs(schema):
        assert ref.startswith("#/$defs/"), ref
        resolve(schema, ref)
    check = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    assert schema["examples"]
    for instance in schema["examples"]:
        assert not [e.message for e in check.iter_errors(instance)]


@pytest.mark.parametrize("path", EVENT_FILES, ids=lambda p: p.name)
class TestEventSchema:
    def test_is_a_valid_2020_12_schema(self, path: Path) -> None:
        schema = json.loads(path.read_text())
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        Draft202012Validator.check_schema(schema)

    def test_id_ends_with_its_file_name(self, path: Path) -> None:
        schema = json.loads(path.read_text())
        assert schema["$id"] == ID_PREFIX + path.name

    def test_is_documented(self, path: Path) -> None:
        schema = json.loads(path.read_text())
        assert schema["title"] and schema["description"]
        assert schema["type"] == "object"
        assert set(schema["required"]) <= set(schema["properties"])

    def test_is_self_contained(self, path: Path) -> None:
        schema = json.loads(path.read_text())
        for ref in refs(schema):
            assert ref.startswith("#/$defs/"), ref
            resolve(schema, ref)

    def test_examples_validate(self, path: Path) -> None:
        schema = json.loads(path.read_text())
        assert schema["examples"]
        check = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
        for instance in schema["examples"]:
            errors = [e.message for e in check.iter_errors(instance)]
            assert not errors, errors

    def test_platform_events_are_closed_operator_events_open(self, path: Path) -> None:
        name = event_name(path)
        data = example(name) | {"unexpected_field": "x"}
        assert is_valid(name, data) is (name in OPERATOR_WRITTEN)


# ------------------------------------------------------------------ targeted cases

def test_appointment_offered_requires_an_appointment() -> None:
    data = example("operator.answered", 0)
    assert data["outcome"] == "appointment_offered"
    del data["appointment"]
    assert not is_valid("operator.answered", data)


def test_documents_needed_requires_documents() -> None:
    data = example("operator.answered", 1)
    assert data["outcome"] == "documents_needed"
    assert not is_valid("operator.answered", data | {"documents": []})
    del data["documents"]
    assert not is_valid("operator.answered", data)


def test_resolved_answer_needs_neither_appointment_nor_documents() -> None:
    data = example("operator.answered", 0)
    del data["appointment"]
    assert is_valid("operator.answered", data | {"outcome": "resolved"})


def test_email_channel_requires_an_email() -> None:
    data = example("referral.answered", 0)
    assert data["recipient"]["channel"] == "email"
    del data["recipient"]["email"]
    assert not is_valid("referral.answered", data)


def test_letter_channel_requires_a_postal_address() -> None:
    data = example("referral.answered", 1)
    data["recipient"] = {"display_name": "M. Lefèvre", "channel": "letter"}
    assert not is_valid("referral.answered", data)
    data["recipient"]["channel"] = "none"
    assert is_valid("referral.answered", data)


def test_extra_field_on_referral_requested_is_refused() -> None:
    assert not is_valid("referral.requested", example("referral.requested") | {"citizen": {}})


def test_extra_field_on_operator_acknowledged_is_accepted() -> None:
    data = example("operator.acknowledged") | {"expert_phone": "+33553000000"}
    assert is_valid("operator.acknowledged", data)


def test_routed_on_referrals_carries_no_personal_data() -> None:
    lifecycle, inbox = example("referral.routed", 0), example("referral.routed", 1)
    assert "inbox_topic" in lifecycle and "personal_data" in inbox
    assert not is_valid("referral.routed", lifecycle | {"personal_data": inbox["personal_data"]})
    # Personal data never travels in clear, not even on an inbox.
    assert not is_valid("referral.routed", inbox | {"citizen": {"given_name": "Nadia"}})
    assert not is_valid("referral.routed", inbox | {"summary": "Une demande."})
    assert not is_valid("referral.routed", inbox | {"personal_data": "Nadia Dupont"})
    unsealed = dict(inbox)
    del unsealed["personal_data"]
    assert not is_valid("referral.routed", unsealed)


def test_routed_to_an_inbox_needs_consent() -> None:
    data = example("referral.routed", 1)
    del data["consent"]
    assert not is_valid("referral.routed", data)


def test_info_provided_message_only_in_the_inbox_shape() -> None:
    lifecycle, inbox = example("referral.info_provided", 0), example("referral.info_provided", 1)
    assert not is_valid("referral.info_provided", lifecycle | {"personal_data": inbox["personal_data"]})
    assert not is_valid("referral.info_provided", inbox | {"message": "Revenus de janvier."})
    assert not is_valid("referral.info_provided", {k: inbox[k] for k in ("referral_id", "operator")})


@pytest.mark.parametrize("name", ["referral.routed", "referral.info_provided"])
def test_the_examples_personal_data_opens_with_the_caf_demo_key_to_its_schema(name: str) -> None:
    inbox = example(name, 1)
    plaintext = open_as("caf", inbox)
    personal = json.loads((SCHEMAS / "personal" / f"{name}.v1.json").read_text())
    Draft202012Validator.check_schema(personal)
    Draft202012Validator(personal, format_checker=Draft202012Validator.FORMAT_CHECKER).validate(plaintext)
    assert plaintext == personal["examples"][0]


# ------------------------------------------------------------------ privacy

def test_reply_key_must_be_a_public_p256_key() -> None:
    data = example("personal_data.access_requested")
    assert is_valid("personal_data.access_requested", data)
    private = data | {"reply_key": data["reply_key"] | {"d": DEMO_REPLY_KEY["d"]}}
    assert not is_valid("personal_data.access_requested", private)
    for bad in ({"crv": "P-384"}, {"kty": "RSA"}, {"x": "not base64url!"}, {"kid": ""}):
        assert not is_valid("personal_data.access_requested", data | {"reply_key": data["reply_key"] | bad}), bad
    for field in ("kty", "crv", "x", "y", "kid"):
        key = dict(data["reply_key"])
        del key[field]
        assert not is_valid("personal_data.access_requested", data | {"reply_key": key}), field


def test_erased_counts_are_non_negative_integers_by_kind() -> None:
    data = example("personal_data.erased")
    assert is_valid("personal_data.erased", data | {"counts": {}})
    assert not is_valid("personal_data.erased", data | {"counts": {"deliveries": -1}})
    assert not is_valid("personal_data.erased", data | {"counts": {"deliveries": 1.5}})
    assert not is_valid("personal_data.erased", data | {"counts": {"Deliveries!": 1}})
    assert not is_valid("personal_data.erased", data | {"service": "Notifications"})


@pytest.mark.parametrize("name", ["personal_data.erasure_requested", "personal_data.access_requested"])
def test_privacy_requests_name_distinct_uuids_at_most_1000(name: str) -> None:
    data = example(name)
    assert is_valid(name, data | {"referral_ids": [], "visit_ids": []})
    assert not is_valid(name, data | {"referral_ids": [R1, R1]})
    assert not is_valid(name, data | {"visit_ids": ["42"]})
    many = [f"00000000-0000-4000-8000-{i:012d}" for i in range(1001)]
    assert is_valid(name, data | {"referral_ids": many[:1000]})
    assert not is_valid(name, data | {"referral_ids": many})


def test_erasure_reason_is_retention_or_erasure_request() -> None:
    data = example("personal_data.erasure_requested")
    assert not is_valid("personal_data.erasure_requested", data | {"reason": "other"})


def test_access_answer_carries_personal_data_only_sealed() -> None:
    data = example("personal_data.access_answered")
    assert not is_valid("personal_data.access_answered", data | {"personal_data": "Nadia Dupont"})
    assert not is_valid("personal_data.access_answered", data | {"records": {"deliveries": []}})
    del data["personal_data"]
    assert not is_valid("personal_data.access_answered", data)


def test_the_access_answer_example_opens_with_the_reply_key_to_its_schema() -> None:
    request, answer = example("personal_data.access_requested"), example("personal_data.access_answered")
    assert answer["request_id"] == request["request_id"]
    assert {k: v for k, v in DEMO_REPLY_KEY.items() if k != "d"} == request["reply_key"]
    opened = jwe.decrypt_compact(answer["personal_data"], ECKey.import_key(DEMO_REPLY_KEY),
                                 algorithms=["ECDH-ES", "A256GCM"])
    assert opened.protected["alg"] == "ECDH-ES" and opened.protected["enc"] == "A256GCM"
    assert opened.protected["kid"] == request["reply_key"]["kid"]
    assert opened.protected["cty"] == "application/json"
    plaintext = json.loads(opened.plaintext or b"")
    personal = json.loads((SCHEMAS / "personal" / "personal_data.access_answered.v1.json").read_text())
    Draft202012Validator(personal, format_checker=Draft202012Validator.FORMAT_CHECKER).validate(plaintext)
    assert plaintext == personal["examples"][0]
    assert plaintext["request_id"] == answer["request_id"] and plaintext["service"] == answer["service"]


def test_access_answer_plaintext_records_are_open_lists_of_objects() -> None:
    personal = json.loads((SCHEMAS / "personal" / "personal_data.access_answered.v1.json").read_text())
    check = Draft202012Validator(personal, format_checker=Draft202012Validator.FORMAT_CHECKER)
    data = copy.deepcopy(personal["examples"][0])
    assert check.is_valid(data | {"records": {}})
    assert check.is_valid(data | {"records": {"letters": [{"any": "field"}], "deliveries": []}})
    assert not check.is_valid(data | {"records": {"deliveries": ["a string"]}})
    assert not check.is_valid(data | {"records": {"deliveries": {"id": 1}}})
    assert not check.is_valid(data | {"unexpected": 1})
    del data["request_id"]
    assert not check.is_valid(data)


def test_cancelled_accepts_both_shapes_but_not_half_of_one() -> None:
    assert is_valid("referral.cancelled", example("referral.cancelled", 0))
    assert is_valid("referral.cancelled", example("referral.cancelled", 1))
    assert not is_valid("referral.cancelled", {"referral_id": R1, "operator": "caf"})


def test_unknown_operator_and_bad_procedure_are_refused() -> None:
    data = example("referral.requested")
    assert not is_valid("referral.requested", data | {"operator": "urssaf"})
    assert not is_valid("referral.requested", data | {"procedure": "Prime activité"})


def test_status_must_match_the_event() -> None:
    assert not is_valid("referral.acknowledged", example("referral.acknowledged") | {"status": "routed"})


def test_times_need_an_offset_and_ids_must_be_uuids() -> None:
    data = example("referral.requested")
    assert not is_valid("referral.requested", data | {"occurred_at": "2025-03-14T09:30:00"})
    assert not is_valid("referral.requested", data | {"referral_id": "42"})
    assert not is_valid("operator.acknowledged", example("operator.acknowledged") | {"acknowledged_at": "hier"})


def test_empty_messages_are_refused() -> None:
    assert not is_valid("operator.info_requested", example("operator.info_requested") | {"question": ""})


def test_site_schedule_times_are_checked() -> None:
    data = example("site.upserted")
    data["schedule"][0]["closes"] = "24:00"
    assert not is_valid("site.upserted", data)
    data["schedule"][0] = {"weekday": 8, "opens": "09:00", "closes": "12:00"}
    assert not is_valid("site.upserted", data)


# ------------------------------------------------------------------ asyncapi.yaml

@pytest.fixture(scope="module")
def asyncapi() -> dict[str, Any]:
    return yaml.safe_load((SCHEMAS / "asyncapi.yaml").read_text())


def test_asyncapi_is_version_3(asyncapi: dict[str, Any]) -> None:
    assert asyncapi["asyncapi"] == "3.0.0"
    assert asyncapi["info"]["version"] == "1.2.0"  # released: notification.delivered, the status link
    assert asyncapi["defaultContentType"] == "application/json"


def test_payload_refs_point_to_existing_files(asyncapi: dict[str, Any]) -> None:
    files = [r for r in refs(asyncapi) if r.startswith("./events/")]
    assert files
    for ref in files:
        assert (SCHEMAS / ref).is_file(), ref


def test_every_event_file_is_referenced_by_a_message(asyncapi: dict[str, Any]) -> None:
    payloads = {m["payload"].get("$ref") for m in asyncapi["components"]["messages"].values()}
    for path in EVENT_FILES:
        assert f"./events/{path.name}" in payloads, path.name


def test_every_internal_ref_resolves(asyncapi: dict[str, Any]) -> None:
    internal = [r for r in refs(asyncapi) if r.startswith("#/")]
    assert any(r.startswith("#/components/messages/") for r in internal)
    for ref in internal:
        resolve(asyncapi, ref)


def test_message_headers_name_the_payload_type(asyncapi: dict[str, Any]) -> None:
    for key, message in asyncapi["components"]["messages"].items():
        ref = message["payload"].get("$ref")
        if ref is None:
            continue  # the dead letter: any original value
        name = Path(ref).name.removesuffix(".v1.json")
        headers = message["headers"]
        assert headers["properties"]["ce_type"]["const"] == f"fr.franceservices.{name}.v1", key
        assert {"ce_specversion", "ce_id", "ce_source", "ce_type", "content-type"} <= set(headers["required"])
        assert message["name"] == name


def test_operations_use_messages_of_their_channel(asyncapi: dict[str, Any]) -> None:
    for op_name, operation in asyncapi["operations"].items():
        channel = operation["channel"]["$ref"]
        for message in operation["messages"]:
            assert message["$ref"].startswith(channel + "/messages/"), op_name


def test_privacy_channel_carries_the_four_privacy_events(asyncapi: dict[str, Any]) -> None:
    channel = asyncapi["channels"]["privacy"]
    assert channel["address"] == "privacy"
    messages = [resolve(asyncapi, m["$ref"]) for m in channel["messages"].values()]
    assert {m["name"] for m in messages} == PRIVACY
    for message in messages:
        assert "request id" in message["bindings"]["kafka"]["key"]["description"]
    senders = {name: {resolve(asyncapi, resolve(asyncapi, m["$ref"])["$ref"])["name"] for m in op["messages"]}
               for name, op in asyncapi["operations"].items()
               if op["channel"]["$ref"] == "#/channels/privacy" and op["action"] == "send"}
    assert senders == {
        "publishPrivacyRequests": {"personal_data.erasure_requested", "personal_data.access_requested"},
        "publishPrivacyAnswers": {"personal_data.erased", "personal_data.access_answered"},
    }


def test_operator_channels_are_parameterised(asyncapi: dict[str, Any]) -> None:
    codes = ["la-poste", "caf", "france-travail", "cnam", "cnav", "msa", "dgfip", "ants",
             "justice", "crous", "banque-de-france"]
    channels = asyncapi["channels"]
    assert channels["operatorInbox"]["address"] == "operator.{operator}.inbox"
    assert channels["operatorOutbox"]["address"] == "operator.{operator}.outbox"
    for name in ("operatorInbox", "operatorOutbox"):
        assert channels[name]["parameters"]["operator"]["enum"] == codes
    assert load("referral.requested")["$defs"]["operator"]["enum"] == codes
