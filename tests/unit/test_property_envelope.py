"""Bad input everywhere, for the event decoders: whatever a Kafka record holds,
`from_record` returns a CloudEvent or raises InvalidEvent with a dead-letter code;
valid events survive the binary-mode round trip; the contract check passes or names
the `data` path at fault, never the values (reasons go to logs and DLQ headers)."""

from __future__ import annotations

import json
import string
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from relais_kit.contract import ContractViolation, load_contract
from relais_kit.envelope import CloudEvent, InvalidEvent, event_type, from_record, to_record
from relais_kit.settings import REPO_ROOT

CONTRACT = load_contract(REPO_ROOT / "schemas")
# The dead-letter codes of the envelope (schemas/EVENTS.md, asyncapi.yaml `dlq_error`).
ENVELOPE_ERRORS = {"invalid_envelope", "invalid_json"}
MARKER = "ZQXMARK"  # in every generated string value: must never show up in a reason
PROFILE = settings(max_examples=300, deadline=None, derandomize=True,
                   suppress_health_check=[HealthCheck.too_slow])

VALID_HEADERS: list[tuple[str, bytes]] = [
    ("ce_specversion", b"1.0"), ("ce_id", b"e-1"), ("ce_source", b"/operators/caf"),
    ("ce_type", event_type("operator.acknowledged").encode()), ("content-type", b"application/json"),
]
HEADER_NAMES = st.sampled_from([
    "ce_specversion", "ce_id", "ce_source", "ce_type", "ce_time", "ce_subject", "ce_dataschema",
    "ce_partitionkey", "content-type", "Content-Type", "CE_ID", "ce_traceparent", "dlq_error", "",
]) | st.text(max_size=12)
HEADER_VALUES = st.one_of(
    st.sampled_from([b"1.0", b"0.3", b"", b"application/json", b"application/json; charset=utf-8",
                     b"text/plain", b"2026-11-20T10:00:00Z", b"2026-11-20T10:00:00+01:00", b"2026-13-40",
                     b"Z", b"\xff\xfe", b"\xc3", "é€😀".encode()]),
    st.binary(max_size=24),
    st.text(max_size=24).map(lambda s: s.encode("utf-8", "surrogatepass")),
    st.none(),
)
JSON_LEAVES = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
               | st.text(max_size=20))
JSON = st.recursive(JSON_LEAVES, lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
VALUES = st.one_of(
    st.none(),
    st.binary(max_size=64),
    JSON.map(lambda v: json.dumps(v, ensure_ascii=False).encode()),
    st.sampled_from([b"{}", b"[]", b"null", b"NaN", b'{"a": NaN}', b'{"a": Infinity}', b"{not json",
                     b"\xef\xbb\xbf{}", b'{"a":1', b'"text"', b"", b"   ", b'{"a": "\\ud800"}']),
)


def headers_strategy() -> st.SearchStrategy[list[tuple[str, Any]]]:
    arbitrary = st.lists(st.tuples(HEADER_NAMES, HEADER_VALUES), max_size=10)
    # Mostly valid envelopes with a few headers changed, dropped or added, to get past
    # the first checks; plus entirely arbitrary lists.
    mutated = st.tuples(st.lists(st.booleans(), min_size=len(VALID_HEADERS), max_size=len(VALID_HEADERS)),
                        arbitrary).map(lambda kept_extra: [h for h, keep in zip(VALID_HEADERS, kept_extra[0],
                                                                                  strict=True) if keep]
                                       + kept_extra[1])
    return st.one_of(arbitrary, mutated, arbitrary.map(lambda extra: VALID_HEADERS + extra))


@PROFILE
@given(key=st.none() | st.binary(max_size=40), value=VALUES, headers=headers_strategy())
@example(key=None, value=b"{}", headers=VALID_HEADERS)
@example(key=b"\xff", value=b'{"a": 1}', headers=[*VALID_HEADERS, ("ce_time", b"not a time")])
@example(key=b"k", value=b"{}", headers=[*VALID_HEADERS, ("ce_id", None)])
def test_from_record_returns_an_event_or_says_why_not(key: bytes | None, value: bytes | None,
                                                       headers: list[tuple[str, bytes]]) -> None:
    try:
        event = from_record(key, value, headers)
    except InvalidEvent as exc:
        assert exc.error in ENVELOPE_ERRORS, exc.error
        assert isinstance(exc.reason, str) and exc.reason.strip()
        return
    assert isinstance(event, CloudEvent)
    assert isinstance(event.data, dict)
    assert event.id and event.source and event.type
    assert event.time.tzinfo is not None


@pytest.mark.parametrize("value", [b'{"n": ' + b"9" * 5000 + b"}", b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"],
                         ids=["huge-integer", "deep-nesting"])
def test_unreadable_json_values_are_invalid_events(value: bytes) -> None:
    with pytest.raises(InvalidEvent) as caught:
        from_record(b"k", value, VALID_HEADERS)
    assert caught.value.error == "invalid_json"


# --- round trip ------------------------------------------------------------------

TEXT = st.text(st.characters(codec="utf-8"), max_size=30)
NON_EMPTY = st.text(st.characters(codec="utf-8"), min_size=1, max_size=30)
# Fixed offsets: an aware time in a zone with daylight saving compares unequal to any
# time of another zone around its fold (PEP 495), which is not what is tested here.
OFFSETS = st.integers(-14 * 60, 14 * 60).map(lambda m: timezone(timedelta(minutes=m)))
TIMES = st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2200, 1, 1),
                     timezones=st.just(UTC) | OFFSETS)
EXTENSION_NAMES = st.from_regex(r"[a-z][a-z0-9]{0,15}", fullmatch=True).filter(
    lambda n: n not in {"specversion", "id", "source", "type", "time", "subject", "dataschema", "partitionkey"})
DATA_LEAVES = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
               | TEXT)
DATA = st.dictionaries(TEXT, st.recursive(DATA_LEAVES, lambda inner: st.lists(inner, max_size=4)
                                          | st.dictionaries(TEXT, inner, max_size=4), max_leaves=15),
                       max_size=6)


@PROFILE
@given(id=NON_EMPTY, source=NON_EMPTY, name=st.from_regex(r"[a-z]+(\.[a-z_]+){1,2}", fullmatch=True),
       subject=NON_EMPTY, key=st.none() | NON_EMPTY, data=DATA, time=TIMES, dataschema=st.none() | NON_EMPTY,
       extensions=st.dictionaries(EXTENSION_NAMES, TEXT, max_size=3))
@example(id="é", source="/s", name="referral.routed", subject="", key=None, data={},
         time=datetime(2026, 1, 1, tzinfo=UTC), dataschema=None, extensions={})
def test_valid_events_survive_the_round_trip(id: str, source: str, name: str, subject: str, key: str | None,
                                             data: dict[str, Any], time: datetime, dataschema: str | None,
                                             extensions: dict[str, str]) -> None:
    event = CloudEvent(type=event_type(name), source=source, subject=subject, data=data, id=id, time=time,
                       dataschema=dataschema, key=key, extensions=extensions)
    record_key, value, headers = to_record(event)
    read = from_record(record_key, value, headers)
    # An absent key is the subject (and an empty subject with an empty key reads as no key).
    # The platform always sets a subject: an empty ce_subject falls back to the key.
    assert read == CloudEvent(**{**event.__dict__, "key": event.record_key or None})
    assert read.time.utcoffset() == time.utcoffset()
    assert read.name == name


# --- the contract ------------------------------------------------------------------

TYPES = sorted(CONTRACT.types)
EXAMPLES: dict[str, list[dict[str, Any]]] = {}
for _path in sorted((REPO_ROOT / "schemas" / "events").glob("*.v*.json")):
    _name, _major = Path(_path.name).name.removesuffix(".json").rsplit(".v", 1)
    EXAMPLES[event_type(_name, int(_major))] = json.loads(_path.read_text()).get("examples", [{}])

MARKED = st.text(max_size=12).map(lambda s: f"{MARKER}{s}") | st.sampled_from([
    f"{MARKER}@example.org", f"2026-11-20T10:00:00+01:00{MARKER}", f"{MARKER}" * 30, f"caf{MARKER}",
    f"Michel {MARKER} Cordier", f"{MARKER}-poste"])
KEYS = st.text(string.ascii_lowercase + "_", min_size=1, max_size=10)  # field names, not values
MARKED_LEAVES = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | MARKED)
MARKED_JSON = st.recursive(MARKED_LEAVES, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(KEYS, inner, max_size=4), max_leaves=10)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            found += _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found += _paths(v, (*prefix, i))
    return found


def _mutate(data: dict[str, Any], path: tuple[Any, ...], action: str, new: Any) -> dict[str, Any]:
    copy = json.loads(json.dumps(data))
    if not path:
        return copy if not isinstance(new, dict) else {**copy, **new}
    parent = copy
    for step in path[:-1]:
        parent = parent[step]
    if action == "delete":
        del parent[path[-1]]
    else:
        parent[path[-1]] = new
    return copy


@st.composite
def event_data(draw: st.DrawFn, type_: str) -> dict[str, Any]:
    """Arbitrary objects, or the schema's examples with a few fields deleted or replaced
    by marked strings, numbers, lists, objects: close enough to hit every rule."""
    if draw(st.integers(0, 4)) == 0:
        return draw(st.dictionaries(KEYS, MARKED_JSON, max_size=6))
    data = draw(st.sampled_from(EXAMPLES[type_]))
    for _ in range(draw(st.integers(1, 4))):
        paths = _paths(data)
        path = draw(st.sampled_from(paths))
        action = draw(st.sampled_from(["replace", "replace", "delete"])) if path else "replace"
        replacements = MARKED | MARKED_JSON | st.dictionaries(KEYS, MARKED, min_size=1, max_size=2)
        new = draw(replacements) if action == "replace" else None
        data = _mutate(data, path, action, new)
    return data


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def test_every_schema_example_passes_the_contract() -> None:
    for type_, examples in EXAMPLES.items():
        for data in examples:
            CONTRACT.check(type_, data)


@settings(max_examples=600, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_contract_check_names_the_path_never_the_value(data: st.DataObject) -> None:
    type_ = data.draw(st.sampled_from(TYPES), label="type")
    payload = data.draw(event_data(type_), label="data")
    try:
        CONTRACT.check(type_, payload)
    except ContractViolation as exc:
        assert exc.error == "schema_violation"
        assert exc.reason.startswith("data")
        for part in exc.reason.split("; "):
            assert part.startswith(("data: ", "data.")), exc.reason
        assert MARKER not in exc.reason, exc.reason
        for value in _strings(payload):
            if len(value) >= 6 and MARKER in value:
                assert value not in exc.reason


def test_deeply_nested_data_is_a_contract_violation() -> None:
    nested: Any = MARKER
    for _ in range(300):
        nested = [nested]
    with pytest.raises(ContractViolation):
        CONTRACT.check(event_type("operator.answered"), {"referral_id": nested})
