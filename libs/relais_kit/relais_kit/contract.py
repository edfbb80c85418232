"""The JSON Schemas of `schemas/events/`, keyed by CloudEvents type, and of
`schemas/personal/` (the plaintext of sealed personal data), keyed by event name.
Every service validates what it produces and what it consumes against them."""

from __future__ import annotations

import json
from dataclasses import replace
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema_rs

from relais_kit.envelope import CloudEvent, InvalidEvent, event_type


class ContractViolation(InvalidEvent):
    def __init__(self, reason: str, error: str = "schema_violation") -> None:
        super().__init__(error, reason)


class Contract:
    def __init__(self, schemas_dir: Path) -> None:
        # jsonschema-rs: the same draft 2020-12 semantics as any validator an operator
        # uses, a hundred times faster than pure Python on the hot path.
        self._validators: dict[str, jsonschema_rs.Draft202012Validator] = {}
        self._ids: dict[str, str] = {}
        for path in sorted((schemas_dir / "events").glob("*.v*.json")):
            schema = json.loads(path.read_text())
            name, major = path.name.removesuffix(".json").rsplit(".v", 1)
            type_ = event_type(name, int(major))
            self._validators[type_] = jsonschema_rs.Draft202012Validator(schema, validate_formats=True)
            self._ids[type_] = schema["$id"]
        if not self._validators:
            raise RuntimeError(f"no event schema found under {schemas_dir / 'events'}")
        self._personal: dict[str, jsonschema_rs.Draft202012Validator] = {}
        for path in sorted((schemas_dir / "personal").glob("*.v1.json")):
            self._personal[path.name.removesuffix(".v1.json")] = jsonschema_rs.Draft202012Validator(
                json.loads(path.read_text()), validate_formats=True)

    @property
    def types(self) -> frozenset[str]:
        return frozenset(self._validators)

    def knows(self, type_: str) -> bool:
        return type_ in self._validators

    def schema_id(self, type_: str) -> str:
        return self._ids[type_]

    def check(self, type_: str, data: dict[str, Any]) -> None:
        """Raises ContractViolation naming the first offending field."""
        validator = self._validators.get(type_)
        if validator is None:
            raise ContractViolation(f"unknown event type {type_!r}", "unknown_event_type")
        _check(validator, data, "data")

    def check_personal(self, name: str, plaintext: dict[str, Any]) -> None:
        """The plaintext of `personal_data` in event `name` (before sealing, after
        opening); raises ContractViolation naming the offending field."""
        validator = self._personal.get(name)
        if validator is None:
            raise ContractViolation(f"no personal data schema for {name!r}", "unknown_event_type")
        _check(validator, plaintext, "personal_data")

    def validate(self, event: CloudEvent) -> None:
        self.check(event.type, event.data)

    def event(self, name: str, *, source: str, subject: str, data: dict[str, Any],
              id: str | None = None) -> CloudEvent:
        """Builds a platform event and checks it against its schema before anyone sees it."""
        type_ = event_type(name)
        self.check(type_, data)
        event = CloudEvent(type=type_, source=source, subject=subject, data=data,
                           dataschema=self._ids[type_])
        return replace(event, id=id) if id else event


def _check(validator: jsonschema_rs.Draft202012Validator, data: dict[str, Any], root: str) -> None:
    try:
        if validator.is_valid(data):
            return
        errors = sorted(validator.iter_errors(data), key=lambda e: [str(p) for p in e.instance_path])
    except ValueError as exc:  # jsonschema-rs: "Recursion limit reached"
        raise ContractViolation(f"{root}: cannot be checked ({exc})") from exc
    if errors:
        raise ContractViolation("; ".join(_describe(e, root) for e in errors[:3]))


_SAFE_DETAILS = ("format", "pattern", "types", "limit", "options")


def _describe(error: Any, root: str = "data") -> str:
    """Names the field and the rule it breaks, never the value: the value may be a
    citizen's name or address, and reasons end up in logs and dead-letter headers."""
    where = ".".join(str(p) for p in error.instance_path)
    field = f"{root}.{where}" if where else root
    kind = error.kind
    if kind.name in ("required", "additionalProperties", "unevaluatedProperties"):
        return f"{field}: {error.message}"  # names properties, not values
    details = {k: v for k, v in kind.as_dict().items() if k in _SAFE_DETAILS}
    shown = " ".join(repr(v)[:80] for v in details.values())
    return f"{field}: fails {kind.name}{' ' + shown if shown else ''}"


@cache
def load_contract(schemas_dir: Path) -> Contract:
    return Contract(schemas_dir)
