"""CloudEvents 1.0 in Kafka binary content mode: data as the JSON record value,
attributes as `ce_*` headers, the subject as the record key."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

TYPE_PREFIX = "fr.franceservices."
REQUIRED_HEADERS = ("ce_specversion", "ce_id", "ce_source", "ce_type", "content-type")

Headers = list[tuple[str, bytes]]


class InvalidEvent(ValueError):
    """A record that is not a readable CloudEvent; `error` is the dead-letter code."""

    def __init__(self, error: str, reason: str) -> None:
        super().__init__(reason)
        self.error = error
        self.reason = reason


def event_type(name: str, major: int = 1) -> str:
    """`referral.routed` → `fr.franceservices.referral.routed.v1`."""
    return f"{TYPE_PREFIX}{name}.v{major}"


def now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class CloudEvent:
    type: str
    source: str
    subject: str
    data: dict[str, Any]
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    time: datetime = field(default_factory=now)
    dataschema: str | None = None
    key: str | None = None
    extensions: dict[str, str] = field(default_factory=dict)

    @property
    def record_key(self) -> str:
        return self.key or self.subject

    @property
    def name(self) -> str:
        """`fr.franceservices.referral.routed.v1` → `referral.routed`."""
        return self.type.removeprefix(TYPE_PREFIX).rsplit(".v", 1)[0]


def to_record(event: CloudEvent) -> tuple[bytes, bytes, Headers]:
    headers: Headers = [
        ("ce_specversion", b"1.0"),
        ("ce_id", event.id.encode()),
        ("ce_source", event.source.encode()),
        ("ce_type", event.type.encode()),
        ("ce_time", event.time.isoformat().encode()),
        ("ce_subject", event.subject.encode()),
        ("ce_partitionkey", event.record_key.encode()),
        ("content-type", b"application/json"),
    ]
    if event.dataschema:
        headers.append(("ce_dataschema", event.dataschema.encode()))
    headers += [(f"ce_{k}", v.encode()) for k, v in event.extensions.items()]
    value = json.dumps(event.data, ensure_ascii=False, separators=(",", ":")).encode()
    return event.record_key.encode(), value, headers


_KNOWN = {"ce_specversion", "ce_id", "ce_source", "ce_type", "ce_time", "ce_subject",
          "ce_dataschema", "ce_partitionkey", "content-type"}


def from_record(key: bytes | None, value: bytes | None, headers: Headers) -> CloudEvent:
    """Reads a binary-mode CloudEvent; raises InvalidEvent naming what is wrong."""
    attrs: dict[str, str] = {}
    for name, raw in headers or ():
        try:
            attrs[name.lower()] = raw.decode() if raw is not None else ""
        except UnicodeDecodeError as exc:
            raise InvalidEvent("invalid_envelope", f"header {name} is not UTF-8") from exc
    missing = [h for h in REQUIRED_HEADERS if not attrs.get(h)]
    if missing:
        raise InvalidEvent("invalid_envelope", f"missing CloudEvents header(s): {', '.join(missing)}")
    if attrs["ce_specversion"] != "1.0":
        raise InvalidEvent("invalid_envelope", f"ce_specversion {attrs['ce_specversion']!r} is not 1.0")
    if attrs["content-type"].split(";")[0].strip() != "application/json":
        raise InvalidEvent("invalid_envelope", f"content-type {attrs['content-type']!r} is not application/json")
    data = _decode_json(value)
    time = _parse_time(attrs.get("ce_time"))
    key_text = key.decode(errors="replace") if key else None
    return CloudEvent(
        id=attrs["ce_id"],
        source=attrs["ce_source"],
        type=attrs["ce_type"],
        subject=attrs.get("ce_subject") or key_text or "",
        time=time,
        dataschema=attrs.get("ce_dataschema"),
        key=key_text,
        data=data,
        extensions={k[3:]: v for k, v in attrs.items() if k.startswith("ce_") and k not in _KNOWN},
    )


def _decode_json(value: bytes | None) -> dict[str, Any]:
    if value is None:
        raise InvalidEvent("invalid_json", "record value is empty")
    try:
        data = json.loads(value.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidEvent("invalid_json", f"record value is not UTF-8 JSON: {exc}") from exc
    except (ValueError, RecursionError) as exc:  # a 5,000-digit number, nesting 1,000 deep
        raise InvalidEvent("invalid_json", f"record value is JSON this platform refuses: {type(exc).__name__}") \
            from exc
    if not isinstance(data, dict):
        raise InvalidEvent("invalid_json", "record value is not a JSON object")
    return data


def _parse_time(text: str | None) -> datetime:
    if not text:
        return now()
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise InvalidEvent("invalid_envelope", f"ce_time {text!r} is not RFC 3339") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
