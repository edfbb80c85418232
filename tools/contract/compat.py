#!/usr/bin/env python3
"""Compatibility check of the Relais contract against its last released version.

    python tools/contract/compat.py [check] [--baseline schemas/released/<semver>] [--current schemas]
                                    [--allow-no-baseline] [--verbose]
    python tools/contract/compat.py release <semver> [--current schemas] [--force]

The baseline is a committed snapshot of a released contract, ``schemas/released/<semver>/``
(a copy of ``events/``, ``personal/`` and ``asyncapi.yaml``); by default the newest semver
folder there. Within a major version an event schema file ``<event>.v<N>.json`` may only
grow: optional properties may be added, titles, descriptions and examples may change, and
every constraint on what already exists must stay exactly as it was, so that

- new consumers read old events (every old instance is valid under the new schema), and
- old consumers read new events (every new instance is valid under the old schema read
  tolerantly, i.e. ignoring properties it does not know).

Event files and AsyncAPI channels, operations and messages may be added, never removed or
renamed. A new major (``<event>.v2.json``) is a new file and is not compared with v1.
See tools/contract/README.md for the full rules.

Standalone on purpose: standard library, PyYAML and jsonschema only.
Exit codes: 0 compatible, 1 incompatible (every problem listed), 2 usage or setup error.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CURRENT = ROOT / "schemas"
RELEASED_DIR = "released"
SCHEMA_DIRS = ("events", "personal")
SCHEMA_FILE = re.compile(r"^(?P<name>.+)\.v(?P<major>[0-9]+)\.json$")
SEMVER = re.compile(r"^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)$")

OLD_READERS = "old consumers cannot read new events"
NEW_READERS = "new consumers cannot read old events"
BOTH_READERS = "old and new consumers disagree"

# Keywords that carry no validation: free to change.
ANNOTATIONS = frozenset(
    {
        "title",
        "description",
        "examples",
        "example",
        "$comment",
        "default",
        "deprecated",
        "readOnly",
        "writeOnly",
        "x-parser-schema-id",
    }
)
# Keywords handled structurally by the walker.
STRUCTURAL = frozenset(
    {
        "$ref",
        "$defs",
        "definitions",
        "properties",
        "required",
        "additionalProperties",
        "patternProperties",
        "items",
        "prefixItems",
        "if",
        "then",
        "else",
        "allOf",
        "anyOf",
        "oneOf",
        "not",
        "dependentSchemas",
        "dependentRequired",
        "propertyNames",
        "contains",
        "unevaluatedProperties",
        "unevaluatedItems",
        "type",
        "enum",
        "const",
    }
)
# Bounds: a larger lower bound / a smaller upper bound accepts fewer instances.
LOWER_BOUNDS = frozenset({"minLength", "minimum", "exclusiveMinimum", "minItems", "minProperties", "minContains"})
UPPER_BOUNDS = frozenset({"maxLength", "maximum", "exclusiveMaximum", "maxItems", "maxProperties", "maxContains"})
# Keywords whose mere presence restricts the instances (adding one tightens, removing relaxes).
RESTRICTIONS = frozenset({"pattern", "format", "multipleOf", "contentMediaType", "contentEncoding"})
# Keywords that identify the schema rather than constrain it, still not free to change.
IDENTITY = frozenset({"$id", "$schema", "$anchor", "$dynamicAnchor", "$dynamicRef", "$vocabulary"})


@dataclass(frozen=True)
class Finding:
    """One difference between the baseline and the current contract."""

    where: str
    reason: str
    breaking: bool = True

    def __str__(self) -> str:
        return f"{self.where}: {self.reason}"


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)
    schemas_compared: int = 0
    channels_compared: int = 0
    operations_compared: int = 0
    messages_compared: int = 0

    @property
    def breaking(self) -> list[Finding]:
        return [f for f in self.findings if f.breaking]

    @property
    def notes(self) -> list[Finding]:
        return [f for f in self.findings if not f.breaking]

    def add(self, where: str, reason: str, *, breaking: bool = True) -> None:
        self.findings.append(Finding(where, reason, breaking))


# --------------------------------------------------------------------------- JSON Schema


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def _resolve_pointer(document: Any, fragment: str) -> Any:
    """Resolve a local JSON pointer fragment (``#/a/b``) in ``document``; KeyError if absent."""
    if fragment in ("#", ""):
        return document
    if not fragment.startswith("#/"):
        raise KeyError(fragment)
    node = document
    for raw in fragment[2:].split("/"):
        token = _unescape(raw)
        if isinstance(node, dict) and token in node:
            node = node[token]
        elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
        else:
            raise KeyError(fragment)
    return node


def _types(schema: dict[str, Any]) -> set[str] | None:
    value = schema.get("type")
    if value is None:
        return None
    return {value} if isinstance(value, str) else set(value)


def _remote_ref(node: Any) -> str | None:
    """The ``$ref`` of ``node`` when it points outside the document (another file or a URL)."""
    if isinstance(node, dict) and isinstance(node.get("$ref"), str) and not node["$ref"].startswith("#"):
        return str(node["$ref"])
    return None


def _fmt(values: Iterable[Any]) -> str:
    return ", ".join(json.dumps(v, ensure_ascii=False, sort_keys=True) for v in values)


def _canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


class SchemaComparator:
    """Walks an old and a new JSON Schema side by side and reports every incompatibility.

    Each side is resolved against its own root document (local ``$ref`` only: ``#/$defs/x``,
    any JSON pointer). A node with a ``$ref`` is compared as the referenced schema merged with
    its siblings, so moving an inline constraint into ``$defs`` (or back) is not a change.
    """

    def __init__(self, label: str, old_root: Any, new_root: Any, report: Report) -> None:
        self.label = label
        self.old_root = old_root
        self.new_root = new_root
        self.report = report
        self._active: set[tuple[str, str]] = set()

    # -- helpers ---------------------------------------------------------------

    def _where(self, path: str) -> str:
        return f"{self.label}#{path}" if path else f"{self.label}#"

    def _breaking(self, path: str, reason: str, readers: str) -> None:
        self.report.add(self._where(path), f"{reason} ({readers})")

    def _note(self, path: str, reason: str) -> None:
        self.report.add(self._where(path), reason, breaking=False)

    def _expand(self, node: Any, root: Any, path: str) -> tuple[Any, list[str]]:
        """Follow local ``$ref`` chains, merging siblings. Returns the schema and the refs seen.

        When the referenced schema and a sibling disagree on a validation keyword the two
        cannot be merged into one dict; the node is then kept as ``allOf: [target, siblings]``.
        """
        refs: list[str] = []
        for _ in range(32):
            if not isinstance(node, dict) or "$ref" not in node:
                return node, refs
            ref = node["$ref"]
            if not isinstance(ref, str) or not ref.startswith("#"):
                return node, refs  # remote $ref: compared as a plain keyword value
            refs.append(ref)
            try:
                target = _resolve_pointer(root, ref)
            except KeyError:
                return node, refs
            siblings = {k: v for k, v in node.items() if k != "$ref"}
            if isinstance(target, bool):
                return (target if not siblings else {"allOf": [target, siblings]}), refs
            if not isinstance(target, dict):
                return node, refs
            merged = dict(target)
            conflict = False
            for key, value in siblings.items():
                if key in merged and key not in ANNOTATIONS and _canon(merged[key]) != _canon(value):
                    conflict = True
                    break
                merged[key] = value
            if conflict:
                return {"allOf": [target, siblings]}, refs
            node = merged
        raise ValueError(f"{self._where(path)}: $ref chain too long or circular")

    # -- entry -----------------------------------------------------------------

    def compare(self) -> None:
        old_id, new_id = (r.get("$id") if isinstance(r, dict) else None for r in (self.old_root, self.new_root))
        if old_id != new_id:
            self._breaking("/$id", f"$id changed from {old_id!r} to {new_id!r}", BOTH_READERS)
        self.walk(self.old_root, self.new_root, "")

    # -- the walk --------------------------------------------------------------

    def walk(self, old: Any, new: Any, path: str) -> None:
        old, old_refs = self._expand(old, self.old_root, path)
        new, new_refs = self._expand(new, self.new_root, path)
        if not (old_refs and new_refs):
            self._walk(old, new, old_refs, new_refs, path)
            return
        key = (old_refs[-1], new_refs[-1])
        if key in self._active:
            return  # recursive schema: this pair of definitions is already being compared
        self._active.add(key)
        try:
            self._walk(old, new, old_refs, new_refs, path)
        finally:
            self._active.discard(key)

    def _walk(self, old: Any, new: Any, old_refs: list[str], new_refs: list[str], path: str) -> None:
        if _remote_ref(old) or _remote_ref(new):
            if _canon(old) != _canon(new):
                self._breaking(path, "a remote $ref changed; the checker cannot follow it, review by hand",
                               BOTH_READERS)
            return
        for refs, root, side in ((old_refs, self.old_root, "old"), (new_refs, self.new_root, "new")):
            for ref in refs:
                try:
                    _resolve_pointer(root, ref)
                except KeyError:
                    self._breaking(path, f"$ref {ref} does not resolve in the {side} schema", BOTH_READERS)
                    return
        if isinstance(old, bool) or isinstance(new, bool):
            self._compare_booleans(old, new, path)
            return
        if not isinstance(old, dict) or not isinstance(new, dict):
            if _canon(old) != _canon(new):
                self._breaking(path, "schema changed shape (not an object schema); review", BOTH_READERS)
            return
        self._compare_type(old, new, path)
        self._compare_enum(old, new, path)
        self._compare_const(old, new, path)
        self._compare_bounds(old, new, path)
        self._compare_restrictions(old, new, path)
        self._compare_identity(old, new, path)
        self._compare_object(old, new, path)
        self._compare_array(old, new, path)
        self._compare_combinators(old, new, path)
        self._compare_unknown(old, new, path)

    def _compare_booleans(self, old: Any, new: Any, path: str) -> None:
        if _canon(old) == _canon(new):
            return
        if new is False or (old is True and isinstance(new, dict)):
            self._breaking(path, f"schema changed from {_canon(old)} to {_canon(new)} (narrowed)", NEW_READERS)
        elif old is False or new is True:
            self._breaking(path, f"schema changed from {_canon(old)} to {_canon(new)} (widened)", OLD_READERS)
        else:
            self._breaking(path, f"schema changed from {_canon(old)} to {_canon(new)}", BOTH_READERS)

    def _compare_type(self, old: dict[str, Any], new: dict[str, Any], path: str) -> None:
        a, b = _types(old), _types(new)
        if a == b:
            return
        where = f"{path}/type"
        if a is None:
            self._breaking(where, f"type {sorted(b or ())} added where any type was allowed (narrowed)", NEW_READERS)
        elif b is None:
            self._breaking(where, f"type {sorted(a)} removed: any type is now allowed (widened)", OLD_READERS)
        elif a < b:
            self._breaking(where, f"type widened from {sorted(a)} to {sorted(b)}", OLD_READERS)
        elif b < a:
            self._breaking(where, f"type narrowed from {sorted(a)} to {sorted(b)}", NEW_READERS)
        else:
            self._breaking(where, f"type changed from {sorted(a)} to {sorted(b)}", BOTH_READERS)

    def _compare_enum(self, old: dict[str, Any], new: dict[str, Any], path: str) -> None:
        if "enum" not in old and "enum" not in new:
            return
        where = f"{path}/enum"
        if "enum" not in new:
            self._breaking(where, "enum removed: any value is now allowed (widened)", OLD_READERS)
            return
        if "enum" not in old:
            self._breaking(where, f"enum added: only {_fmt(new['enum'])} allowed now (narrowed)", NEW_READERS)
            return
        a = {_canon(v): v for v in old["enum"]}
        b = {_canon(v): v for v in new["enum"]}
        removed = [a[k] for k in a if k not in b]
        added = [b[k] for k in b if k not in a]
        if removed:
            self._breaking(where, f"enum shrank: {_fmt(removed)} no longer allowed", NEW_READERS)
        if added:
            self._breaking(where, f"enum grew: {_fmt(added)} now allowed", OLD_READERS)

    def _compare_const(self, old: dict[str, Any], new: dict[str, Any], path: str) -> None:
        if "const" not in old and "const" not in new:
            return
        where = f"{path}/const"
        if "const" not in new:
            self._breaking(where, f"const {_canon(old['const'])} removed (relaxed)", OLD_READERS)
        elif "const" not in old:
            self._breaking(where, f"const {_canon(new['const'])} added (tightened)", NEW_READERS)
        elif _canon(old["const"]) != _canon(new["const"]):
            self._breaking(where, f"const changed from {_canon(old['const'])} to {_canon(new['const'])}",
                           BOTH_READERS)

    def _compare_bounds(self, old: dict[str, Any], new: dict[str, Any], path: str) -> None:
        for key in sorted(LOWER_BOUNDS | UPPER_BOUNDS):
            if key not in old and key not in new:
                continue
            a, b = old.get(key), new.get(key)
            if a == b:
                continue
            where = f"{path}/{key}"
            lower = key in LOWER_BOUNDS
            if a is None:
                self._breaking(where, f"{key} {b} added (tightened)", NEW_READERS)
            elif b is None:
                self._breaking(where, f"{key} {a} removed (relaxed)", OLD_READERS)
            elif (b > a) == lower:
                self._breaking(where, f"{key} tightened from {a} to {b}", NEW_READERS)
            else:
                self._breaking(where, f"{key} relaxed from {a} to {b}", OLD_READERS)

    def _compare_restrictions(self, old: dict[str, Any], new: dict[str, Any], path: str) -> None:
        for key in sorted(RESTRICTIONS | {"uniqueItems"}):
            a, b = old.get(key), new.get(key)
            if key == "uniqueItems":
                a, b = bool(a), bool(b)
            if _canon(a) == _canon(b):
                continue
            where = f"{path}/{key}"
            if a is None or a is False:
                self._breaking(where, f"{key} {_canon(b)} added (tightened)", NEW_READERS)
            elif b is None or b is False:
                self._breaking(where, f"{key} {_canon(a)} removed (relaxed)", OLD_READERS)
            else:
                self._breaking(where, f"{key} changed from {_canon(a)} to {_canon(b)}", BOTH_READERS)

    def _compare_identity(self, old: dict[str, Any], new: dict[str, Any], path: str) -> None:
        for key in sorted(IDENTITY):
            if path == "" and key == "$id":
                continue  # reported by compare()
            if _canon(old.get(key)) != _canon(new.get(key)):
                self._breaking(f"{path}/{_escape(key)}",
                               f"{key} changed from {_canon(old.get(key))} to {_canon(new.get(key))}", BOTH_READERS)

    def _compare_object(self, old: dict[str, Any], new: dict[str, Any], path: str) -> None:
        old_props: dict[str, Any] = old.get("properties") or {}
        new_props: dict[str, Any] = new.get("properties") or {}
        old_req = set(old.get("required") or [])
        new_req = set(new.get("required") or [])
        for name in old_props:
            sub = f"{path}/properties/{_escape(name)}"
            if name in new_props:
                self.walk(old_props[name], new_props[name], sub)
            elif new.get("additionalProperties") is False or new.get("unevaluatedProperties") is False:
                self._breaking(sub, f"property {name!r} removed: old events that carry it are now refused",
                               NEW_READERS)
            else:
                self._breaking(sub, f"property {name!r} removed: new events may carry it with any value",
                               OLD_READERS)
        for name in new_props:
            if name not in old_props and name not in new_req:
                what = "declared forbidden (false)" if new_props[name] is False else "added as optional"
                self._note(f"{path}/properties/{_escape(name)}", f"property {name!r} {what}")
        for name in sorted(new_req - old_req):
            if name in old_props or name not in new_props:
                self._breaking(f"{path}/required", f"property {name!r} is now required", NEW_READERS)
            else:
                self._breaking(f"{path}/required", f"required property {name!r} added", NEW_READERS)
        for name in sorted(old_req - new_req):
            self._breaking(f"{path}/required", f"property {name!r} is no longer required", OLD_READERS)

        # additionalProperties: opening a closed object is fine (consumers ignore unknown
        # properties); closing or constraining an open one refuses old instances.
        if "additionalProperties" in old or "additionalProperties" in new:
            a = old.get("additionalProperties", True)
            b = new.get("additionalProperties", True)
            where = f"{path}/additionalProperties"
            if _canon(a) == _canon(b):
                pass
            elif a is False and b is not False:
                self._note(where, "object opened (additionalProperties no longer false); consumers ignore "
                                  "unknown properties")
            elif b is False or a is True:
                self._breaking(where, f"additional properties restricted ({_canon(a)} -> {_canon(b)})", NEW_READERS)
            else:
                self.walk(a, b, where)

        self._compare_keyed(old, new, path, "patternProperties")
        self._compare_keyed(old, new, path, "dependentSchemas")
        self._compare_keyed(old, new, path, "$defs", defs=True)
        self._compare_keyed(old, new, path, "definitions", defs=True)
        if _canon(old.get("dependentRequired")) != _canon(new.get("dependentRequired")):
            self._breaking(f"{path}/dependentRequired", "dependentRequired changed", BOTH_READERS)
        for key in ("propertyNames", "unevaluatedProperties"):
            self._compare_optional_subschema(old, new, path, key)

    def _compare_keyed(self, old: dict[str, Any], new: dict[str, Any], path: str, key: str,
                       *, defs: bool = False) -> None:
        a: dict[str, Any] = old.get(key) or {}
        b: dict[str, Any] = new.get(key) or {}
        if defs:
            # $defs are compared where they are used (through $ref); only a removed
            # definition is worth a note here, a broken $ref is reported at its use.
            for name in a:
                if name not in b:
                    self._note(f"{path}/{key}/{_escape(name)}", f"definition {name!r} removed")
            return
        for name in a.keys() | b.keys():
            sub = f"{path}/{key}/{_escape(name)}"
            if name not in b:
                self._breaking(sub, f"{key} entry {name!r} removed", BOTH_READERS)
            elif name not in a:
                self._breaking(sub, f"{key} entry {name!r} added", BOTH_READERS)
            else:
                self.walk(a[name], b[name], sub)

    def _compare_optional_subschema(self, old: dict[str, Any], new: dict[str, Any], path: str, key: str) -> None:
        if key not in old and key not in new:
            return
        sub = f"{path}/{key}"
        if key not in new:
            self._breaking(sub, f"{key} removed (relaxed)", OLD_READERS)
        elif key not in old:
            self._breaking(sub, f"{key} added (tightened)", NEW_READERS)
        else:
            self.walk(old[key], new[key], sub)

    def _compare_array(self, old: dict[str, Any], new: dict[str, Any], path: str) -> None:
        self._compare_optional_subschema(old, new, path, "items")
        self._compare_optional_subschema(old, new, path, "contains")
        self._compare_optional_subschema(old, new, path, "unevaluatedItems")
        a = old.get("prefixItems")
        b = new.get("prefixItems")
        if a is None and b is None:
            return
        if a is None or b is None or len(a) != len(b):
            self._breaking(f"{path}/prefixItems", "prefixItems added, removed or resized; review", BOTH_READERS)
            return
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            self.walk(x, y, f"{path}/prefixItems/{i}")

    def _compare_combinators(self, old: dict[str, Any], new: dict[str, Any], path: str) -> None:
        for key in ("if", "then", "else", "not"):
            if key not in old and key not in new:
                continue
            sub = f"{path}/{key}"
            if key not in old or key not in new:
                verb = "added" if key in new else "removed"
                self._breaking(sub, f"'{key}' {verb}: the conditions on the instance changed; review",
                               BOTH_READERS)
            else:
                self.walk(old[key], new[key], sub)
        for key in ("allOf", "anyOf", "oneOf"):
            if key not in old and key not in new:
                continue
            a, b = old.get(key), new.get(key)
            sub = f"{path}/{key}"
            if a is None or b is None:
                verb = "added" if b is not None else "removed"
                self._breaking(sub, f"'{key}' {verb}; the checker does not reason about it, review", BOTH_READERS)
            elif len(a) != len(b):
                self._breaking(sub, f"'{key}' went from {len(a)} to {len(b)} branches; the checker does not "
                                    "reason about it, review", BOTH_READERS)
            else:
                for i, (x, y) in enumerate(zip(a, b, strict=True)):
                    self.walk(x, y, f"{sub}/{i}")

    def _compare_unknown(self, old: dict[str, Any], new: dict[str, Any], path: str) -> None:
        known = ANNOTATIONS | STRUCTURAL | LOWER_BOUNDS | UPPER_BOUNDS | RESTRICTIONS | IDENTITY | {"uniqueItems"}
        for key in sorted((old.keys() | new.keys()) - known):
            if key.startswith("x-"):
                continue  # extensions carry no validation
            if _canon(old.get(key)) != _canon(new.get(key)):
                self._breaking(f"{path}/{_escape(key)}",
                               f"keyword {key!r} changed and the checker does not understand it; review",
                               BOTH_READERS)


def compare_schemas(label: str, old: Any, new: Any, report: Report | None = None) -> Report:
    """Compare two JSON Schemas (whole documents). Convenient for tests."""
    report = report if report is not None else Report()
    SchemaComparator(label, old, new, report).compare()
    return report


# --------------------------------------------------------------------------- files


def _schema_files(folder: Path) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for sub in SCHEMA_DIRS:
        d = folder / sub
        if d.is_dir():
            for path in sorted(d.glob("*.json")):
                out[f"{sub}/{path.name}"] = path
    return out


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SetupError(f"{path}: cannot read JSON: {exc}") from exc


def _load_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise SetupError(f"{path}: cannot read YAML: {exc}") from exc


class SetupError(Exception):
    """The check cannot run (missing folder, unreadable file, no baseline)."""


def _major(version: Any) -> int | None:
    m = re.match(r"^\s*([0-9]+)\.", str(version or ""))
    return int(m.group(1)) if m else None


def compare_schema_files(baseline: Path, current: Path, report: Report, *, major_bump: bool) -> None:
    old_files = _schema_files(baseline)
    new_files = _schema_files(current)
    for rel, path in new_files.items():
        if not SCHEMA_FILE.match(path.name):
            report.add(rel, "file name is not <event>.v<major>.json")
            continue
        try:
            Draft202012Validator.check_schema(_load_json(path))
        except SchemaError as exc:
            report.add(rel, f"not a valid JSON Schema 2020-12: {exc.message}")
    for rel, old_path in old_files.items():
        if rel not in new_files:
            if major_bump:
                report.add(rel, "event schema removed with the contract's major version bump", breaking=False)
            else:
                report.add(rel, "event schema removed or renamed within a major version "
                                "(old consumers and producers still use it); keep it, add a new file instead")
            continue
        report.schemas_compared += 1
        compare_schemas(rel, _load_json(old_path), _load_json(new_files[rel]), report)
    for rel in new_files:
        if rel not in old_files:
            m = SCHEMA_FILE.match(Path(rel).name)
            if m and int(m.group("major")) > 1:
                report.add(rel, f"new major version v{m.group('major')} (not compared with earlier majors)",
                           breaking=False)
            else:
                report.add(rel, "new schema file", breaking=False)


def _refs_in(node: Any) -> set[str]:
    out: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                out.add(value)
            else:
                out |= _refs_in(value)
    elif isinstance(node, list):
        for value in node:
            out |= _refs_in(value)
    return out


def _inline_schema(node: Any, root: Any) -> Any:
    """Resolve a whole-node local $ref (``{$ref: '#/components/...'}``) so that moving a schema
    into components is not seen as a change."""
    for _ in range(16):
        if isinstance(node, dict) and set(node) == {"$ref"} and str(node["$ref"]).startswith("#"):
            try:
                node = _resolve_pointer(root, node["$ref"])
            except KeyError:
                return node
        else:
            return node
    return node


def compare_asyncapi(baseline: Path, current: Path, report: Report, *, major_bump: bool) -> None:
    old_path, new_path = baseline / "asyncapi.yaml", current / "asyncapi.yaml"
    if not old_path.is_file():
        report.add("asyncapi.yaml", f"baseline has no asyncapi.yaml ({old_path})")
        return
    if not new_path.is_file():
        report.add("asyncapi.yaml", "asyncapi.yaml removed")
        return
    old, new = _load_yaml(old_path), _load_yaml(new_path)
    if not isinstance(old, dict) or not isinstance(new, dict):
        report.add("asyncapi.yaml", "not a YAML mapping")
        return

    def removed(where: str, what: str) -> None:
        if major_bump:
            report.add(where, f"{what} removed with the contract's major version bump", breaking=False)
        else:
            report.add(where, f"{what} removed or renamed within a major version")

    old_channels: dict[str, Any] = old.get("channels") or {}
    new_channels: dict[str, Any] = new.get("channels") or {}
    for cid, och in old_channels.items():
        where = f"asyncapi.yaml#/channels/{_escape(cid)}"
        if cid not in new_channels:
            removed(where, f"channel {cid!r}")
            continue
        report.channels_compared += 1
        nch = new_channels[cid] or {}
        och = och or {}
        if och.get("address") != nch.get("address"):
            report.add(f"{where}/address",
                       f"topic address changed from {och.get('address')!r} to {nch.get('address')!r}")
        for mid in och.get("messages") or {}:
            if mid not in (nch.get("messages") or {}):
                removed(f"{where}/messages/{_escape(mid)}", f"message {mid!r} of channel {cid!r}")
        old_params: dict[str, Any] = och.get("parameters") or {}
        new_params: dict[str, Any] = nch.get("parameters") or {}
        for pid, op in old_params.items():
            pwhere = f"{where}/parameters/{_escape(pid)}"
            if pid not in new_params:
                removed(pwhere, f"parameter {pid!r}")
                continue
            np_ = _inline_schema(new_params[pid], new) or {}
            op = _inline_schema(op, old) or {}
            if "enum" in op and "enum" in np_:
                gone = [v for v in op["enum"] if v not in np_["enum"]]
                if gone:
                    report.add(f"{pwhere}/enum", f"parameter values {_fmt(gone)} removed (their topics disappear)")
            elif "enum" in np_:
                report.add(f"{pwhere}/enum", "parameter restricted to an enum (some topics disappear)")
    for cid in new_channels:
        if cid not in old_channels:
            report.add(f"asyncapi.yaml#/channels/{_escape(cid)}", f"channel {cid!r} added", breaking=False)

    old_ops: dict[str, Any] = old.get("operations") or {}
    new_ops: dict[str, Any] = new.get("operations") or {}
    for oid, oop in old_ops.items():
        where = f"asyncapi.yaml#/operations/{_escape(oid)}"
        if oid not in new_ops:
            removed(where, f"operation {oid!r}")
            continue
        report.operations_compared += 1
        nop = new_ops[oid] or {}
        oop = oop or {}
        if oop.get("action") != nop.get("action"):
            report.add(f"{where}/action", f"action changed from {oop.get('action')!r} to {nop.get('action')!r}")
        if _canon(oop.get("channel")) != _canon(nop.get("channel")):
            report.add(f"{where}/channel", f"operation moved from channel {_canon(oop.get('channel'))} to "
                                           f"{_canon(nop.get('channel'))}")
        for ref in sorted(_refs_in(oop.get("messages")) - _refs_in(nop.get("messages"))):
            removed(f"{where}/messages", f"message {ref}")

    old_msgs: dict[str, Any] = (old.get("components") or {}).get("messages") or {}
    new_msgs: dict[str, Any] = (new.get("components") or {}).get("messages") or {}
    for mid, om in old_msgs.items():
        where = f"asyncapi.yaml#/components/messages/{_escape(mid)}"
        if mid not in new_msgs:
            removed(where, f"message {mid!r}")
            continue
        report.messages_compared += 1
        nm = _inline_schema(new_msgs[mid], new) or {}
        om = _inline_schema(om, old) or {}
        if om.get("name") != nm.get("name"):
            report.add(f"{where}/name", f"message name (the event type) changed from {om.get('name')!r} "
                                        f"to {nm.get('name')!r}")
        if om.get("contentType") != nm.get("contentType"):
            report.add(f"{where}/contentType",
                       f"contentType changed from {om.get('contentType')!r} to {nm.get('contentType')!r}")
        for key in ("headers", "payload"):
            a, b = om.get(key), nm.get(key)
            if _remote_ref(a) or _remote_ref(b):
                a_ref, b_ref = _remote_ref(a), _remote_ref(b)
                if a_ref != b_ref:
                    report.add(f"{where}/{key}", f"{key} schema file changed from {a_ref!r} to {b_ref!r}")
                continue  # the schema files themselves are compared file by file
            if a is None and b is None:
                continue
            if a is None or b is None:
                report.add(f"{where}/{key}", f"{key} schema {'added' if b is not None else 'removed'}; review")
                continue
            # Compare within each AsyncAPI document: local $refs resolve against it.
            comparator = SchemaComparator("asyncapi.yaml", old, new, report)
            comparator.walk(a, b, f"/components/messages/{_escape(mid)}/{key}")
        key_old = ((om.get("bindings") or {}).get("kafka") or {}).get("key")
        key_new = ((nm.get("bindings") or {}).get("kafka") or {}).get("key")
        if key_old is not None or key_new is not None:
            if key_old is None or key_new is None:
                report.add(f"{where}/bindings/kafka/key", "record key schema added or removed; review")
            else:
                SchemaComparator("asyncapi.yaml", old, new, report).walk(
                    key_old, key_new, f"/components/messages/{_escape(mid)}/bindings/kafka/key")
    for mid in new_msgs:
        if mid not in old_msgs:
            report.add(f"asyncapi.yaml#/components/messages/{_escape(mid)}", f"message {mid!r} added",
                       breaking=False)


def check(baseline: Path, current: Path) -> tuple[Report, bool]:
    """Compare ``current`` with ``baseline``. Returns the report and whether it is a major bump."""
    for folder, what in ((baseline, "baseline"), (current, "current")):
        if not folder.is_dir():
            raise SetupError(f"{what} folder {folder} does not exist")
    old_doc = _load_yaml(baseline / "asyncapi.yaml") if (baseline / "asyncapi.yaml").is_file() else {}
    new_doc = _load_yaml(current / "asyncapi.yaml") if (current / "asyncapi.yaml").is_file() else {}
    old_major = _major(((old_doc or {}).get("info") or {}).get("version"))
    new_major = _major(((new_doc or {}).get("info") or {}).get("version"))
    major_bump = old_major is not None and new_major is not None and new_major > old_major
    report = Report()
    if old_major is not None and new_major is not None and new_major < old_major:
        report.add("asyncapi.yaml#/info/version", f"contract major version went down from {old_major} to {new_major}")
    compare_schema_files(baseline, current, report, major_bump=major_bump)
    compare_asyncapi(baseline, current, report, major_bump=major_bump)
    return report, major_bump


# --------------------------------------------------------------------------- releases


def _semver_key(name: str) -> tuple[int, int, int] | None:
    m = SEMVER.match(name)
    return (int(m.group(1)), int(m.group(2)), int(m.group(3))) if m else None


def released_versions(released_root: Path) -> list[Path]:
    if not released_root.is_dir():
        return []
    found = [(k, p) for p in released_root.iterdir() if p.is_dir() and (k := _semver_key(p.name)) is not None]
    return [p for _, p in sorted(found)]


def newest_baseline(released_root: Path) -> Path | None:
    versions = released_versions(released_root)
    return versions[-1] if versions else None


def release(version: str, current: Path, released_root: Path, *, force: bool = False) -> Path:
    """Write the snapshot ``released_root/<version>/`` of ``current`` (events/, personal/, asyncapi.yaml)."""
    if _semver_key(version) is None:
        raise SetupError(f"{version!r} is not a semantic version (MAJOR.MINOR.PATCH)")
    if not (current / "asyncapi.yaml").is_file():
        raise SetupError(f"{current} has no asyncapi.yaml")
    target = released_root / version
    if target.exists():
        if not force:
            raise SetupError(f"{target} already exists (a released contract is immutable; --force to overwrite)")
        shutil.rmtree(target)
    declared = ((_load_yaml(current / "asyncapi.yaml") or {}).get("info") or {}).get("version")
    if str(declared) != version:
        print(f"warning: releasing {version} but asyncapi.yaml says info.version {declared!r}", file=sys.stderr)
    previous = newest_baseline(released_root)
    if previous is not None and (_semver_key(version) or (0, 0, 0)) <= (_semver_key(previous.name) or (0, 0, 0)):
        print(f"warning: {version} is not newer than the newest release {previous.name}", file=sys.stderr)
    target.mkdir(parents=True)
    for sub in SCHEMA_DIRS:
        if (current / sub).is_dir():
            shutil.copytree(current / sub, target / sub, ignore=shutil.ignore_patterns("*~", ".*"))
    shutil.copy2(current / "asyncapi.yaml", target / "asyncapi.yaml")
    return target


# --------------------------------------------------------------------------- CLI


def _print_findings(title: str, findings: list[Finding], stream: Any) -> None:
    print(title, file=stream)
    for f in findings:
        print(f"  - {f}", file=stream)


def _rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def main_check(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="compat.py [check]", description="Check the contract against the "
                                     "last released version.")
    parser.add_argument("--current", type=Path, default=DEFAULT_CURRENT, help="the contract folder (schemas)")
    parser.add_argument("--baseline", type=Path, default=None,
                        help="a released snapshot (default: the newest schemas/released/<semver>)")
    parser.add_argument("--released-root", type=Path, default=None,
                        help="where released snapshots live (default: <current>/released)")
    parser.add_argument("--allow-no-baseline", action="store_true",
                        help="succeed (with a message) when there is no released snapshot yet")
    parser.add_argument("-v", "--verbose", action="store_true", help="also list the compatible changes")
    args = parser.parse_args(argv)
    current: Path = args.current
    released_root: Path = args.released_root or current / RELEASED_DIR
    baseline: Path | None = args.baseline or newest_baseline(released_root)
    if baseline is None:
        msg = (f"no released contract in {_rel(released_root)}/<semver>/ to compare with; "
               "create one with `python tools/contract/compat.py release <semver>`")
        if args.allow_no_baseline:
            print(f"Contract compatibility: skipped, {msg}")
            return 0
        print(f"Contract compatibility: ERROR, {msg} (or pass --allow-no-baseline)", file=sys.stderr)
        return 2
    try:
        report, major_bump = check(baseline, current)
    except SetupError as exc:
        print(f"Contract compatibility: ERROR, {exc}", file=sys.stderr)
        return 2
    name = baseline.name
    counts = (f"{report.schemas_compared} schemas, {report.channels_compared} channels, "
              f"{report.operations_compared} operations, {report.messages_compared} messages compared")
    if args.verbose and report.notes:
        _print_findings(f"Compatible changes since {name}:", report.notes, sys.stdout)
    if report.breaking:
        _print_findings(f"Contract compatibility: {_rel(current)} is INCOMPATIBLE with the released {name} "
                        f"({_rel(baseline)}), {len(report.breaking)} problem(s):", report.breaking, sys.stderr)
        print("Within a major version the contract may only grow: optional properties, new event files, new "
              "channels/messages. Keep existing constraints as they are, or publish a new major "
              "(<event>.v2.json). See tools/contract/README.md.", file=sys.stderr)
        return 1
    bump = ", major version bump" if major_bump else ""
    print(f"Contract compatibility: OK, {_rel(current)} is compatible with the released {name} ({counts}; "
          f"{len(report.notes)} compatible change(s){bump}).")
    return 0


def main_release(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="compat.py release", description="Snapshot the contract as released.")
    parser.add_argument("version", help="the released contract version, MAJOR.MINOR.PATCH")
    parser.add_argument("--current", type=Path, default=DEFAULT_CURRENT, help="the contract folder (schemas)")
    parser.add_argument("--released-root", type=Path, default=None,
                        help="where released snapshots live (default: <current>/released)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing snapshot")
    args = parser.parse_args(argv)
    current: Path = args.current
    released_root: Path = args.released_root or current / RELEASED_DIR
    previous = newest_baseline(released_root)
    if previous is not None:
        try:
            report, _ = check(previous, current)
        except SetupError as exc:
            print(f"release: {exc}", file=sys.stderr)
            return 2
        if report.breaking:
            _print_findings(f"release: refused, {_rel(current)} is incompatible with {previous.name}:",
                            report.breaking, sys.stderr)
            return 1
    try:
        target = release(args.version, current, released_root, force=args.force)
    except SetupError as exc:
        print(f"release: {exc}", file=sys.stderr)
        return 2
    print(f"Released contract {args.version}: wrote {_rel(target)} (commit it).")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "release":
        return main_release(args[1:])
    if args and args[0] == "check":
        args = args[1:]
    return main_check(args)


def iter_problems(report: Report) -> Iterator[str]:
    """The breaking findings as text (for tests and other tools)."""
    for f in report.breaking:
        yield str(f)


if __name__ == "__main__":
    sys.exit(main())
