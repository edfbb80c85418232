import json
from datetime import UTC, datetime

import pytest

from relais_kit.contract import ContractViolation, load_contract
from relais_kit.envelope import CloudEvent, InvalidEvent, event_type, from_record, to_record
from relais_kit.settings import REPO_ROOT

CONTRACT = load_contract(REPO_ROOT / "schemas")


def test_binary_mode_round_trip_keeps_every_attribute():
    event = CloudEvent(type=event_type("site.retired"), source="/relais/sites", subject="vigny-poste",
                       data={"site_id": "vigny-poste", "retired_at": "2026-11-20T10:00:00+01:00"},
                       time=datetime(2026, 11, 20, 9, tzinfo=UTC), dataschema="https://x/y.json")
    key, value, headers = to_record(event)
    assert key == b"vigny-poste"
    assert dict(headers)["ce_partitionkey"] == b"vigny-poste"
    assert json.loads(value) == event.data
    assert from_record(key, value, headers) == CloudEvent(**{**event.__dict__, "key": "vigny-poste"})


def test_event_name_drops_prefix_and_major():
    assert CloudEvent(type=event_type("operator.answered"), source="s", subject="x", data={}).name == \
        "operator.answered"


@pytest.mark.parametrize(("value", "headers", "error"), [
    (b"{}", [], "invalid_envelope"),
    (b"{}", [("ce_specversion", b"0.3"), ("ce_id", b"1"), ("ce_source", b"/s"), ("ce_type", b"t"),
             ("content-type", b"application/json")], "invalid_envelope"),
    (b"[1]", [("ce_specversion", b"1.0"), ("ce_id", b"1"), ("ce_source", b"/s"), ("ce_type", b"t"),
              ("content-type", b"application/json")], "invalid_json"),
    (b"\xff", [("ce_specversion", b"1.0"), ("ce_id", b"1"), ("ce_source", b"/s"), ("ce_type", b"t"),
               ("content-type", b"application/json")], "invalid_json"),
    (b"{}", [("ce_specversion", b"1.0"), ("ce_id", b"1"), ("ce_source", b"/s"), ("ce_type", b"t"),
             ("content-type", b"text/plain")], "invalid_envelope"),
])
def test_unreadable_records_say_what_is_wrong(value, headers, error):
    with pytest.raises(InvalidEvent) as caught:
        from_record(b"k", value, headers)
    assert caught.value.error == error and caught.value.reason


def test_missing_headers_are_named():
    with pytest.raises(InvalidEvent, match="ce_id, ce_source"):
        from_record(b"k", b"{}", [("ce_specversion", b"1.0"), ("ce_type", b"t"),
                                  ("content-type", b"application/json")])


def test_contract_names_the_offending_field():
    with pytest.raises(ContractViolation, match=r"data\.retired_at"):
        CONTRACT.check(event_type("site.retired"), {"site_id": "vigny-poste", "retired_at": "hier"})


def test_contract_refuses_unknown_types():
    with pytest.raises(ContractViolation) as caught:
        CONTRACT.check("fr.franceservices.nothing.v1", {})
    assert caught.value.error == "unknown_event_type"


def test_platform_events_are_checked_before_anyone_sees_them():
    with pytest.raises(ContractViolation):
        CONTRACT.event("site.retired", source="/relais/sites", subject="x", data={"site_id": "x"})
