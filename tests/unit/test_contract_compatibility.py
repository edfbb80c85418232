"""tools/contract/compat.py: within a major version the contract only grows.

Each breaking change kind is caught, with a JSON pointer and a reason; each compatible
change passes. Small contracts are written to tmp folders; the real `schemas/` is
compared with itself and snapshotted with `release`."""

# The mutations below are one-line lambdas that call dict.__setitem__ for its effect.
# mypy: disable-error-code="func-returns-value"

from __future__ import annotations

import copy
import importlib.util
import json
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator

ROOT = Path(__file__).resolve().parents[2]
COMPAT_PATH = ROOT / "tools" / "contract" / "compat.py"


def _load_compat() -> ModuleType:
    spec = importlib.util.spec_from_file_location("relais_contract_compat", COMPAT_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


compat = _load_compat()

ID = "https://relais.franceservices.fr/schemas/events/thing.done.v1.json"

SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": ID,
    "title": "Thing done",
    "description": "Something was done.",
    "type": "object",
    "additionalProperties": False,
    "required": ["thing_id", "kind", "name"],
    "properties": {
        "thing_id": {"$ref": "#/$defs/uuid", "description": "The thing."},
        "kind": {"type": "string", "enum": ["a", "b"]},
        "name": {"type": "string", "minLength": 1, "maxLength": 100},
        "code": {"type": "string", "pattern": "^[a-z]+$"},
        "count": {"type": "integer", "minimum": 0},
        "note": {"type": ["string", "null"]},
        "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 5},
        "place": {
            "type": "object",
            "required": ["city"],
            "properties": {"city": {"type": "string"}, "postcode": {"type": "string"}},
        },
        "status": {"$ref": "#/$defs/status", "const": "done"},
        "choice": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
    },
    "if": {"required": ["code"]},
    "then": {"required": ["count"]},
    "$defs": {
        "uuid": {"type": "string", "format": "uuid", "pattern": "^[0-9a-f-]{36}$"},
        "status": {"type": "string", "enum": ["open", "done"]},
    },
    "examples": [{"thing_id": "3f1c9e2a-7b4d-4c8e-9a51-2d6f0b8e4c17", "kind": "a", "name": "x"}],
}

HEADERS: dict[str, Any] = {
    "type": "object",
    "required": ["ce_id", "ce_type"],
    "properties": {
        "ce_id": {"type": "string", "minLength": 1},
        "ce_type": {"type": "string", "const": "fr.franceservices.thing.done.v1"},
        "ce_time": {"type": "string", "format": "date-time"},
    },
}

ASYNCAPI: dict[str, Any] = {
    "asyncapi": "3.0.0",
    "info": {"title": "Things", "version": "1.0.0"},
    "channels": {
        "things": {
            "address": "things",
            "messages": {"thingDone": {"$ref": "#/components/messages/thingDone"}},
        },
        "inbox": {
            "address": "operator.{operator}.inbox",
            "parameters": {"operator": {"enum": ["caf", "ants"]}},
            "messages": {"thingDone": {"$ref": "#/components/messages/thingDone"}},
        },
    },
    "operations": {
        "publishThings": {
            "action": "send",
            "channel": {"$ref": "#/channels/things"},
            "messages": [{"$ref": "#/channels/things/messages/thingDone"}],
        },
    },
    "components": {
        "messages": {
            "thingDone": {
                "name": "thing.done",
                "contentType": "application/json",
                "headers": HEADERS,
                "payload": {"$ref": "./events/thing.done.v1.json"},
            },
        },
    },
}


def write_contract(folder: Path, schemas: dict[str, Any], asyncapi: dict[str, Any]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for rel, schema in schemas.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(schema, indent=2, ensure_ascii=False))
    (folder / "asyncapi.yaml").write_text(yaml.safe_dump(asyncapi, sort_keys=False, allow_unicode=True))
    return folder


# A change to the contract: edits (files by relative path, asyncapi document) in place.
Mutation = Callable[[dict[str, Any], dict[str, Any]], object]


def run_check(tmp_path: Path, mutate: Mutation) -> list[str]:
    """Baseline = the small contract; current = the same, mutated. Returns the problems."""
    old_schemas = {"events/thing.done.v1.json": copy.deepcopy(SCHEMA)}
    baseline = write_contract(tmp_path / "released" / "1.0.0", old_schemas, copy.deepcopy(ASYNCAPI))
    files = {"events/thing.done.v1.json": copy.deepcopy(SCHEMA)}
    doc = copy.deepcopy(ASYNCAPI)
    mutate(files, doc)
    for schema in files.values():
        Draft202012Validator.check_schema(schema)  # the test cases themselves are valid schemas
    current = write_contract(tmp_path / "current", files, doc)
    report, _ = compat.check(baseline, current)
    return [str(f) for f in report.breaking]


def thing(files: dict[str, Any]) -> dict[str, Any]:
    schema: dict[str, Any] = files["events/thing.done.v1.json"]
    return schema


def props(files: dict[str, Any]) -> dict[str, Any]:
    properties: dict[str, Any] = thing(files)["properties"]
    return properties


# --------------------------------------------------------------------------- breaking

BREAKING: dict[str, tuple[Mutation, str, str]] = {
    # name: (mutation, JSON pointer expected in the message, words expected in the reason)
    "existing optional property made required": (
        lambda f, d: thing(f)["required"].append("code"),
        "events/thing.done.v1.json#/required", "'code' is now required",
    ),
    "new required property": (
        lambda f, d: (props(f).__setitem__("extra", {"type": "string"}), thing(f)["required"].append("extra")),
        "events/thing.done.v1.json#/required", "required property 'extra' added",
    ),
    "required property no longer required": (
        lambda f, d: thing(f)["required"].remove("name"),
        "events/thing.done.v1.json#/required", "'name' is no longer required",
    ),
    "removed property": (
        lambda f, d: props(f).pop("code"),
        "events/thing.done.v1.json#/properties/code", "property 'code' removed",
    ),
    "removed property of an open nested object": (
        lambda f, d: props(f)["place"]["properties"].pop("postcode"),
        "#/properties/place/properties/postcode", "may carry it with any value",
    ),
    "narrowed type": (
        lambda f, d: props(f)["note"].__setitem__("type", "string"),
        "#/properties/note/type", "type narrowed",
    ),
    "widened type": (
        lambda f, d: props(f)["name"].__setitem__("type", ["string", "null"]),
        "#/properties/name/type", "type widened",
    ),
    "changed type": (
        lambda f, d: props(f)["count"].__setitem__("type", "string"),
        "#/properties/count/type", "type changed",
    ),
    "enum shrink": (
        lambda f, d: props(f)["kind"].__setitem__("enum", ["a"]),
        "#/properties/kind/enum", 'enum shrank: "b"',
    ),
    "enum growth": (
        lambda f, d: props(f)["kind"]["enum"].append("c"),
        "#/properties/kind/enum", 'enum grew: "c"',
    ),
    "enum growth in a $ref'd definition": (
        lambda f, d: thing(f)["$defs"]["status"]["enum"].append("archived"),
        "#/properties/status/enum", 'enum grew: "archived"',
    ),
    "pattern change": (
        lambda f, d: props(f)["code"].__setitem__("pattern", "^[a-z0-9]+$"),
        "#/properties/code/pattern", "pattern changed",
    ),
    "pattern added": (
        lambda f, d: props(f)["name"].__setitem__("pattern", "^[A-Z]"),
        "#/properties/name/pattern", "tightened",
    ),
    "format removed in a $ref'd definition": (
        lambda f, d: thing(f)["$defs"]["uuid"].pop("format"),
        "#/properties/thing_id/format", "removed (relaxed)",
    ),
    "maxLength tightened": (
        lambda f, d: props(f)["name"].__setitem__("maxLength", 50),
        "#/properties/name/maxLength", "maxLength tightened from 100 to 50",
    ),
    "maxLength relaxed": (
        lambda f, d: props(f)["name"].__setitem__("maxLength", 500),
        "#/properties/name/maxLength", "maxLength relaxed from 100 to 500",
    ),
    "minimum added": (
        lambda f, d: props(f)["count"].__setitem__("minimum", 1),
        "#/properties/count/minimum", "minimum tightened from 0 to 1",
    ),
    "maxItems removed": (
        lambda f, d: props(f)["tags"].pop("maxItems"),
        "#/properties/tags/maxItems", "maxItems 5 removed",
    ),
    "array items narrowed": (
        lambda f, d: props(f)["tags"]["items"].__setitem__("maxLength", 10),
        "#/properties/tags/items/maxLength", "added (tightened)",
    ),
    "const added": (
        lambda f, d: props(f)["kind"].__setitem__("const", "a"),
        "#/properties/kind/const", "const \"a\" added",
    ),
    "const changed on top of a $ref": (
        lambda f, d: props(f)["status"].__setitem__("const", "open"),
        "#/properties/status/const", 'const changed from "done" to "open"',
    ),
    "object closed": (
        lambda f, d: props(f)["place"].__setitem__("additionalProperties", False),
        "#/properties/place/additionalProperties", "additional properties restricted",
    ),
    "then branch changed": (
        lambda f, d: thing(f)["then"]["required"].append("tags"),
        "#/then/required", "'tags' is now required",
    ),
    "else branch added": (
        lambda f, d: thing(f).__setitem__("else", {"required": ["tags"]}),
        "#/else", "'else' added",
    ),
    "anyOf branch added": (
        lambda f, d: props(f)["choice"]["anyOf"].append({"type": "boolean"}),
        "#/properties/choice/anyOf", "review",
    ),
    "contains added": (
        lambda f, d: props(f)["tags"].__setitem__("contains", {"const": "x"}),
        "#/properties/tags/contains", "added (tightened)",
    ),
    "keyword the checker does not know changed": (
        lambda f, d: props(f)["name"].__setitem__("contentSchema", {"type": "object"}),
        "#/properties/name/contentSchema", "does not understand it; review",
    ),
    "$id changed": (
        lambda f, d: thing(f).__setitem__("$id", ID.replace("thing", "other")),
        "events/thing.done.v1.json#/$id", "$id changed",
    ),
    "removed event file": (
        lambda f, d: f.clear(),
        "events/thing.done.v1.json", "removed or renamed within a major version",
    ),
    "renamed event file": (
        lambda f, d: f.__setitem__("events/thing.finished.v1.json", f.pop("events/thing.done.v1.json")),
        "events/thing.done.v1.json", "removed or renamed",
    ),
    "removed channel": (
        lambda f, d: d["channels"].pop("inbox"),
        "asyncapi.yaml#/channels/inbox", "channel 'inbox' removed",
    ),
    "channel address changed": (
        lambda f, d: d["channels"]["things"].__setitem__("address", "stuff"),
        "asyncapi.yaml#/channels/things/address", "topic address changed",
    ),
    "message removed from a channel": (
        lambda f, d: d["channels"]["inbox"].__setitem__("messages", {}),
        "asyncapi.yaml#/channels/inbox/messages/thingDone", "removed",
    ),
    "channel parameter value removed": (
        lambda f, d: d["channels"]["inbox"]["parameters"]["operator"].__setitem__("enum", ["caf"]),
        "asyncapi.yaml#/channels/inbox/parameters/operator/enum", '"ants" removed',
    ),
    "removed operation": (
        lambda f, d: d.__setitem__("operations", {}),
        "asyncapi.yaml#/operations/publishThings", "operation 'publishThings' removed",
    ),
    "operation action changed": (
        lambda f, d: d["operations"]["publishThings"].__setitem__("action", "receive"),
        "asyncapi.yaml#/operations/publishThings/action", "action changed",
    ),
    "removed message": (
        lambda f, d: (d["components"].__setitem__("messages", {}), d["channels"]["things"].__setitem__(
            "messages", {})),
        "asyncapi.yaml#/components/messages/thingDone", "message 'thingDone' removed",
    ),
    "message name changed": (
        lambda f, d: d["components"]["messages"]["thingDone"].__setitem__("name", "thing.finished"),
        "asyncapi.yaml#/components/messages/thingDone/name", "event type",
    ),
    "header made required": (
        lambda f, d: d["components"]["messages"]["thingDone"]["headers"]["required"].append("ce_time"),
        "asyncapi.yaml#/components/messages/thingDone/headers/required", "'ce_time' is now required",
    ),
    "payload moved to another file": (
        lambda f, d: d["components"]["messages"]["thingDone"].__setitem__(
            "payload", {"$ref": "./events/thing.other.v1.json"}),
        "asyncapi.yaml#/components/messages/thingDone/payload", "schema file changed",
    ),
}


@pytest.mark.parametrize("case", sorted(BREAKING))
def test_breaking_change_is_caught(tmp_path: Path, case: str) -> None:
    mutate, pointer, words = BREAKING[case]
    problems = run_check(tmp_path, mutate)
    assert problems, f"{case}: not reported"
    assert any(pointer in p and words in p for p in problems), f"{case}: {problems}"


def test_every_problem_is_listed_with_who_breaks(tmp_path: Path) -> None:
    def many(files: dict[str, Any], doc: dict[str, Any]) -> None:
        props(files)["kind"]["enum"].append("c")
        props(files).pop("code")
        props(files)["name"]["maxLength"] = 10
        doc["channels"].pop("inbox")

    problems = run_check(tmp_path, many)
    assert len(problems) >= 4
    joined = "\n".join(problems)
    assert "old consumers cannot read new events" in joined
    assert "new consumers cannot read old events" in joined


# --------------------------------------------------------------------------- compatible

ALLOWED: dict[str, Mutation] = {
    "nothing changed": lambda f, d: None,
    "added optional property": lambda f, d: props(f).__setitem__("comment", {"type": "string", "maxLength": 9}),
    "added optional nested property": lambda f, d: props(f)["place"]["properties"].__setitem__(
        "street", {"type": "string"}),
    "description, title and examples changed": lambda f, d: (
        thing(f).update(title="Done", description="Changed.", examples=[]),
        props(f)["name"].__setitem__("description", "The name, now documented."),
        props(f)["kind"].__setitem__("examples", ["a"]),
        d["info"].__setitem__("description", "New words."),
    ),
    "enum and required reordered": lambda f, d: (
        props(f)["kind"].__setitem__("enum", ["b", "a"]),
        thing(f).__setitem__("required", list(reversed(thing(f)["required"]))),
    ),
    "inline constraint moved into $defs": lambda f, d: (
        thing(f)["$defs"].__setitem__("name", props(f)["name"]),
        props(f).__setitem__("name", {"$ref": "#/$defs/name", "description": "The name."}),
    ),
    "closed object opened": lambda f, d: thing(f).__setitem__("additionalProperties", True),
    "new event file, channel and message": lambda f, d: (
        f.__setitem__("events/thing.undone.v1.json", {**copy.deepcopy(SCHEMA), "$id": ID.replace("done", "undone")}),
        d["channels"].__setitem__("undo", {"address": "undo", "messages": {}}),
        d["components"]["messages"].__setitem__("thingUndone", {"name": "thing.undone"}),
    ),
    "new v2 file with a different shape": lambda f, d: f.__setitem__(
        "events/thing.done.v2.json",
        {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": ID.replace("v1", "v2"),
         "type": "object", "required": ["other"], "properties": {"other": {"type": "integer"}}},
    ),
    "new personal schema": lambda f, d: f.__setitem__(
        "personal/thing.done.v1.json", {"type": "object", "properties": {"secret": {"type": "string"}}}),
    "channel parameter value added": lambda f, d: d["channels"]["inbox"]["parameters"]["operator"]["enum"].append(
        "msa"),
    "optional header added": lambda f, d: d["components"]["messages"]["thingDone"]["headers"]["properties"].__setitem__(
        "traceparent", {"type": "string"}),
}


@pytest.mark.parametrize("case", sorted(ALLOWED))
def test_compatible_change_passes(tmp_path: Path, case: str) -> None:
    assert run_check(tmp_path, ALLOWED[case]) == []


def test_major_bump_may_drop_the_old_major(tmp_path: Path) -> None:
    def bump(files: dict[str, Any], doc: dict[str, Any]) -> None:
        files["events/thing.done.v2.json"] = files.pop("events/thing.done.v1.json")
        doc["info"]["version"] = "2.0.0"
        doc["channels"].pop("inbox")

    assert run_check(tmp_path, bump) == []


def test_v2_file_is_not_compared_with_v1(tmp_path: Path) -> None:
    """A released v2 file is compared with itself only; changing v1 is still checked."""
    v2: dict[str, Any] = {"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object",
          "properties": {"a": {"type": "string"}}}
    baseline = write_contract(tmp_path / "b", {"events/thing.done.v1.json": SCHEMA,
                                               "events/thing.done.v2.json": v2}, ASYNCAPI)
    v2_changed = {**v2, "properties": {"a": {"type": "integer"}}}
    current = write_contract(tmp_path / "c", {"events/thing.done.v1.json": SCHEMA,
                                              "events/thing.done.v2.json": v2_changed}, ASYNCAPI)
    report, _ = compat.check(baseline, current)
    assert [f.where for f in report.breaking] == ["events/thing.done.v2.json#/properties/a/type"]


def test_recursive_schema_terminates(tmp_path: Path) -> None:
    tree: dict[str, Any] = {"$schema": "https://json-schema.org/draft/2020-12/schema", "$ref": "#/$defs/node",
            "$defs": {"node": {"type": "object", "properties": {"children": {"type": "array",
                                                                              "items": {"$ref": "#/$defs/node"}}}}}}
    report = compat.compare_schemas("tree.v1.json", tree, copy.deepcopy(tree))
    assert report.breaking == []
    changed = copy.deepcopy(tree)
    changed["$defs"]["node"]["properties"]["children"]["maxItems"] = 3
    report = compat.compare_schemas("tree.v1.json", tree, changed)
    assert [f.where for f in report.breaking] == ["tree.v1.json#/properties/children/maxItems"]


# --------------------------------------------------------------------------- command line


def test_cli_exit_codes_and_messages(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = write_contract(tmp_path / "schemas" / "released" / "1.0.0",
                          {"events/thing.done.v1.json": SCHEMA}, ASYNCAPI)
    current = tmp_path / "schemas"
    write_contract(current, {"events/thing.done.v1.json": SCHEMA}, ASYNCAPI)

    assert compat.main(["--current", str(current)]) == 0
    out = capsys.readouterr().out
    assert "compatible with the released 1.0.0" in out and out.count("\n") == 1

    broken = copy.deepcopy(SCHEMA)
    broken["properties"]["kind"]["enum"] = ["a"]
    broken["required"].append("code")
    (current / "events" / "thing.done.v1.json").write_text(json.dumps(broken))
    assert compat.main(["check", "--current", str(current), "--baseline", str(base)]) == 1
    err = capsys.readouterr().err
    assert "INCOMPATIBLE" in err and "2 problem(s)" in err
    assert "#/properties/kind/enum" in err and "#/required" in err


def test_no_baseline_fails_unless_allowed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    current = write_contract(tmp_path / "schemas", {"events/thing.done.v1.json": SCHEMA}, ASYNCAPI)
    assert compat.main(["--current", str(current)]) == 2
    assert "no released contract" in capsys.readouterr().err
    assert compat.main(["--current", str(current), "--allow-no-baseline"]) == 0
    assert "skipped" in capsys.readouterr().out


def test_newest_semver_is_the_baseline(tmp_path: Path) -> None:
    root = tmp_path / "released"
    for version in ("1.9.0", "1.10.0", "1.2.3", "not-a-version"):
        (root / version).mkdir(parents=True)
    assert compat.newest_baseline(root) == root / "1.10.0"
    assert compat.newest_baseline(tmp_path / "nothing") is None


def test_release_snapshots_the_real_contract(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    released = tmp_path / "released"
    schemas = ROOT / "schemas"
    assert compat.main(["release", "1.0.0", "--current", str(schemas), "--released-root", str(released)]) == 0
    snapshot = released / "1.0.0"
    assert (snapshot / "asyncapi.yaml").read_text() == (schemas / "asyncapi.yaml").read_text()
    for sub in ("events", "personal"):
        if (schemas / sub).is_dir():
            assert sorted(p.name for p in (snapshot / sub).iterdir()) == sorted(
                p.name for p in (schemas / sub).iterdir())
    assert "Released contract 1.0.0" in capsys.readouterr().out
    # Released snapshots are immutable, versions are semver.
    assert compat.main(["release", "1.0.0", "--current", str(schemas), "--released-root", str(released)]) == 2
    assert compat.main(["release", "v1", "--current", str(schemas), "--released-root", str(released)]) == 2
    # The real contract is compatible with its own snapshot.
    assert compat.main(["--current", str(schemas), "--released-root", str(released)]) == 0


def test_current_schemas_compatible_with_themselves() -> None:
    schemas = ROOT / "schemas"
    report, major_bump = compat.check(schemas, schemas)
    assert [str(f) for f in report.breaking] == []
    assert not major_bump
    assert report.schemas_compared >= len(list((schemas / "events").glob("*.v*.json")))
    assert report.channels_compared > 0 and report.operations_compared > 0 and report.messages_compared > 0


def test_committed_releases_are_compatible_with_the_current_contract() -> None:
    """The guard CI runs, when a snapshot is committed (tools/contract/check.sh runs it too)."""
    baseline = compat.newest_baseline(ROOT / "schemas" / "released")
    if baseline is None:
        pytest.skip("no released contract committed yet (schemas/released/<semver>/)")
    report, _ = compat.check(baseline, ROOT / "schemas")
    assert [str(f) for f in report.breaking] == []
