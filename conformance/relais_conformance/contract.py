"""The contract as the kit reads it from a `schemas/` folder, and the inbox events it
builds from the schemas' own examples (validated, strictly, before they are sent)."""

from __future__ import annotations

import copy
import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

TYPE_PREFIX = "fr.franceservices."
TYPE_RE = re.compile(r"^fr\.franceservices\.(?P<name>[a-z_.]+)\.v(?P<major>[0-9]+)$")
PLATFORM_SOURCE = "/relais/referral"
INBOX_EVENTS = ("referral.routed", "referral.info_provided", "referral.cancelled", "referral.reminder")
# What the contract says every event carries.
REQUIRED_HEADERS = ("ce_specversion", "ce_id", "ce_source", "ce_type", "content-type")
# An event type the kit invents, as a later minor version of the contract could add it.
FUTURE_EVENT = "referral.escalated"

Headers = list[tuple[str, bytes]]
# Encrypts a personal-data plaintext into a JWE (compact serialization).
Seal = Callable[[dict[str, Any]], str]


class ContractError(Exception):
    """The schemas folder is missing something the kit needs, or the kit built an
    event its own contract refuses."""


def event_type(name: str) -> str:
    return f"{TYPE_PREFIX}{name}.v1"


def now_rfc3339(delta: timedelta = timedelta(0)) -> str:
    return (datetime.now(UTC) + delta).isoformat(timespec="milliseconds")


def default_schemas_dir() -> Path | None:
    """`schemas/` next to the package when run from the Relais repository, else
    `./schemas` if there is one."""
    for candidate in (Path(__file__).resolve().parents[2] / "schemas", Path.cwd() / "schemas"):
        if (candidate / "events").is_dir():
            return candidate
    return None


def problems(validator: Draft202012Validator, data: Any) -> list[str]:
    """`path: message` for each error; the message may quote the value, which is fine
    for the operator's own replies (they should carry no citizen data)."""
    found = []
    for error in validator.iter_errors(data):
        path = ".".join(str(p) for p in error.absolute_path) or "(root)"
        message = error.message if len(error.message) <= 160 else error.message[:157] + "..."
        found.append(f"{path}: {message}")
    return sorted(found)


@dataclass
class Outgoing:
    """One inbox record the kit sends."""

    name: str
    referral_id: str
    data: dict[str, Any]
    ce_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    extra_headers: Headers = field(default_factory=list)
    dataschema: str | None = None

    @property
    def type(self) -> str:
        return event_type(self.name)

    def record(self) -> tuple[bytes, bytes, Headers]:
        """Key, value and headers, as the platform writes them (CloudEvents 1.0, binary mode)."""
        headers: Headers = [
            ("ce_specversion", b"1.0"),
            ("ce_id", self.ce_id.encode()),
            ("ce_source", PLATFORM_SOURCE.encode()),
            ("ce_type", self.type.encode()),
            ("ce_time", now_rfc3339().encode()),
            ("ce_subject", self.referral_id.encode()),
            ("ce_partitionkey", self.referral_id.encode()),
            ("content-type", b"application/json"),
        ]
        if self.dataschema:
            headers.append(("ce_dataschema", self.dataschema.encode()))
        headers += self.extra_headers
        value = json.dumps(self.data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        return self.referral_id.encode(), value, headers


class Contract:
    """The event schemas (and the personal-data schemas, when the folder has them)."""

    def __init__(self, schemas_dir: Path) -> None:
        events = schemas_dir / "events"
        if not events.is_dir():
            raise ContractError(f"{schemas_dir} has no events/ folder: give the Relais schemas/ folder with --schemas")
        checker = Draft202012Validator.FORMAT_CHECKER
        self.schemas: dict[str, dict[str, Any]] = {}
        self.validators: dict[str, Draft202012Validator] = {}
        for path in sorted(events.glob("*.v1.json")):
            name = path.name.removesuffix(".v1.json")
            schema = json.loads(path.read_text(encoding="utf-8"))
            Draft202012Validator.check_schema(schema)
            self.schemas[name] = schema
            self.validators[name] = Draft202012Validator(schema, format_checker=checker)
        self.personal: dict[str, dict[str, Any]] = {}
        self.personal_validators: dict[str, Draft202012Validator] = {}
        for path in sorted((schemas_dir / "personal").glob("*.v1.json")):
            name = path.name.removesuffix(".v1.json")
            schema = json.loads(path.read_text(encoding="utf-8"))
            Draft202012Validator.check_schema(schema)
            self.personal[name] = schema
            self.personal_validators[name] = Draft202012Validator(schema, format_checker=checker)
        missing = [n for n in INBOX_EVENTS if n not in self.schemas]
        if missing:
            raise ContractError(f"{events} lacks {', '.join(f'{n}.v1.json' for n in missing)}")
        self.operator_events = sorted(n for n in self.schemas if n.startswith("operator."))
        if not self.operator_events:
            raise ContractError(f"{events} has no operator.*.v1.json schema")
        self.operators: list[str] = self.schemas["referral.routed"]["$defs"]["operator"]["enum"]

    # --- personal data -------------------------------------------------------------

    def encrypted(self, name: str) -> bool:
        """Whether the inbox shape of `name` carries `personal_data` (a JWE)."""
        return "personal_data" in self.schemas[name].get("properties", {})

    def _example(self, name: str, inbox_marker: str) -> dict[str, Any]:
        for example in self.schemas[name].get("examples", []):
            if inbox_marker in example:
                return copy.deepcopy(example)
        raise ContractError(f"schemas/events/{name}.v1.json has no inbox-shape example (with `{inbox_marker}`)")

    def _personal_example(self, name: str) -> dict[str, Any]:
        examples = self.personal.get(name, {}).get("examples", [])
        return copy.deepcopy(examples[0]) if examples else {}

    def check_personal(self, name: str, plaintext: dict[str, Any]) -> None:
        if name in self.personal_validators:
            found = problems(self.personal_validators[name], plaintext)
            if found:
                raise ContractError(f"the kit built personal data for {name} that its schema refuses: {found}")

    # --- building inbox events -----------------------------------------------------

    def check(self, name: str, data: dict[str, Any]) -> None:
        found = problems(self.validators[name], data)
        if found:
            raise ContractError(f"the kit built a {name} that schemas/events/{name}.v1.json refuses: {found}")

    def dataschema(self, name: str) -> str | None:
        return self.schemas[name].get("$id") if name in self.schemas else None

    def routed(self, referral_id: str, operator: str, procedure: str, seal: Seal,
               sealed_referral_id: str | None = None) -> Outgoing:
        """An inbox-shape referral.routed for `operator`, built from the schema's example.
        `sealed_referral_id` puts another referral id inside the personal data (a
        ciphertext moved from another referral, which the consumer must refuse)."""
        data = self._example("referral.routed", "site")
        personal = self._personal_example("referral.routed")
        summary = data.pop("summary", None) or personal.get("summary") or "Demande de test du kit de conformité."
        citizen = data.pop("citizen", None)
        if citizen is None:
            citizen = personal.get("citizen", {})
        data.pop("personal_data", None)
        data.update(referral_id=referral_id, visit_id=str(uuid.uuid4()), operator=operator, procedure=procedure,
                    status="routed", occurred_at=now_rfc3339(), due_at=now_rfc3339(timedelta(days=7)))
        if isinstance(data.get("consent"), dict):
            data["consent"]["given_to"] = operator
            data["consent"]["given_at"] = now_rfc3339(timedelta(minutes=-2))
        plaintext = {"referral_id": sealed_referral_id or referral_id, "summary": summary, "citizen": citizen}
        if self.encrypted("referral.routed"):
            self.check_personal("referral.routed", plaintext)
            data["personal_data"] = seal(plaintext)
        else:  # a contract from before personal data was encrypted
            data["summary"], data["citizen"] = summary, citizen
        self.check("referral.routed", data)
        return Outgoing("referral.routed", referral_id, data, dataschema=self.dataschema("referral.routed"))

    def info_provided(self, referral_id: str, operator: str, seal: Seal) -> Outgoing:
        data = self._example("referral.info_provided", "provided_at")
        personal = self._personal_example("referral.info_provided")
        message = data.pop("message", None) or personal.get("message") or "Informations complémentaires (test)."
        data.pop("personal_data", None)
        data.update(referral_id=referral_id, operator=operator, provided_at=now_rfc3339())
        if self.encrypted("referral.info_provided"):
            plaintext = {"referral_id": referral_id, "message": message}
            self.check_personal("referral.info_provided", plaintext)
            data["personal_data"] = seal(plaintext)
        else:
            data["message"] = message
        self.check("referral.info_provided", data)
        return Outgoing("referral.info_provided", referral_id, data,
                        dataschema=self.dataschema("referral.info_provided"))

    def cancelled(self, referral_id: str, operator: str) -> Outgoing:
        data = self._example("referral.cancelled", "cancelled_at")
        data.update(referral_id=referral_id, operator=operator, cancelled_at=now_rfc3339())
        self.check("referral.cancelled", data)
        return Outgoing("referral.cancelled", referral_id, data, dataschema=self.dataschema("referral.cancelled"))

    def reminder(self, referral_id: str, operator: str) -> Outgoing:
        data = copy.deepcopy(self.schemas["referral.reminder"]["examples"][0])
        data.update(referral_id=referral_id, operator=operator, due_at=now_rfc3339(timedelta(minutes=-5)),
                    overdue_since=now_rfc3339(timedelta(minutes=-5)))
        self.check("referral.reminder", data)
        return Outgoing("referral.reminder", referral_id, data, dataschema=self.dataschema("referral.reminder"))

    def future_event(self, referral_id: str, operator: str) -> Outgoing:
        """`referral.escalated`: a type no v1 schema describes, as a later minor version
        of the contract may add one."""
        data = {"referral_id": referral_id, "operator": operator, "escalated_at": now_rfc3339(),
                "level": 2, "reason": "Escalade automatique (événement d'une version future du contrat)."}
        routed_id = self.dataschema("referral.routed") or ""
        return Outgoing(FUTURE_EVENT, referral_id, data,
                        dataschema=routed_id.replace("referral.routed", FUTURE_EVENT) or None)

    def with_unknown_fields(self, event: Outgoing) -> Outgoing:
        """The same routed event with fields and headers a later v1 may add: top level
        and nested in `site`, plus extension `ce_` headers. Only `additionalProperties`
        errors are allowed on the result."""
        data = copy.deepcopy(event.data)
        data["priority"] = "haute"
        data["channel"] = {"kind": "guichet", "languages": ["fr", "oc"]}
        if isinstance(data.get("site"), dict):
            data["site"]["accessibility"] = "pmr"
            data["site"]["opening_hours"] = "Lu-Ve 9h-17h"
        for error in self.validators[event.name].iter_errors(data):
            if error.validator not in ("additionalProperties", "unevaluatedProperties"):
                raise ContractError(f"unexpected error on the extended event: {error.message}")
        headers: Headers = [
            ("ce_traceparent", b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            ("ce_relaispriority", b"haute"),
            ("traceparent", b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        ]
        return Outgoing(event.name, event.referral_id, data, extra_headers=headers, dataschema=event.dataschema)


class Sealer:
    """Encrypts personal data for the operator: JWE compact, ECDH-ES + A256GCM."""

    def __init__(self, public_jwk: dict[str, Any]) -> None:
        from joserfc.jwk import ECKey

        if public_jwk.get("kty") != "EC" or public_jwk.get("crv") != "P-256":
            raise ContractError("the operator public key must be an EC P-256 JWK")
        if "d" in public_jwk:
            raise ContractError("this is a PRIVATE key: give the kit the operator's PUBLIC key")
        self.key = ECKey.import_key(public_jwk)
        self.kid = public_jwk.get("kid")

    def __call__(self, plaintext: dict[str, Any]) -> str:
        from joserfc import jwe

        header: dict[str, Any] = {"alg": "ECDH-ES", "enc": "A256GCM", "cty": "application/json"}
        if self.kid:
            header["kid"] = self.kid
        payload = json.dumps(plaintext, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        return jwe.encrypt_compact(header, payload, self.key)
