"""What the desk takes from the events of its inbox. The personal data stays a JWE
(stored as received); at arrival its plaintext is only checked, never kept. Pure: no
I/O (decryption is done by the caller, with the operator's key)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any


class Unusable(Exception):
    """An inbox event the desk cannot take; `error` is the dead-letter code. Reasons
    name the field and the rule, never a value (it may be personal data)."""

    def __init__(self, error: str, reason: str) -> None:
        super().__init__(reason)
        self.error = error
        self.reason = reason


def when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@dataclass(frozen=True)
class RoutedCase:
    referral_id: str
    visit_id: str
    procedure: str
    site_id: str
    site: dict[str, Any]
    adviser_id: str
    adviser: dict[str, Any]
    consent: dict[str, Any]
    routed_at: datetime
    due_at: datetime
    personal_data: str


def personal_data_of(data: dict[str, Any]) -> str:
    token = data.get("personal_data")
    if not isinstance(token, str) or not token:
        raise Unusable("missing_personal_data", "data.personal_data: required on the inbox shape (a JWE)")
    return token


def check_operator(data: dict[str, Any], operator: str) -> None:
    if data.get("operator") != operator:
        raise Unusable("wrong_operator", f"data.operator: this desk serves operator {operator!r} only")


def routed_case(data: dict[str, Any]) -> RoutedCase:
    """The inbox shape of `referral.routed` (already checked against the contract)."""
    missing = [name for name in ("site", "adviser", "consent") if not isinstance(data.get(name), dict)]
    if missing:
        raise Unusable("schema_violation", f"data: the inbox shape needs {', '.join(missing)}")
    return RoutedCase(
        referral_id=data["referral_id"], visit_id=data["visit_id"], procedure=data["procedure"],
        site_id=data["site_id"], site=data["site"], adviser_id=data["adviser_id"], adviser=data["adviser"],
        consent=data["consent"], routed_at=when(data["occurred_at"]), due_at=when(data["due_at"]),
        personal_data=personal_data_of(data))


CITIZEN_LABELS = (
    ("given_name", "Prénom"),
    ("family_name", "Nom"),
    ("birth_date", "Date de naissance"),
    ("email", "Adresse électronique"),
    ("phone", "Téléphone"),
)


def _shown(name: str, value: Any) -> str:
    if name == "birth_date":
        try:
            return datetime.strptime(str(value), "%Y-%m-%d").strftime("%d/%m/%Y")
        except ValueError:
            return str(value)
    return str(value)


def citizen_lines(citizen: dict[str, Any]) -> list[tuple[str, str]]:
    """The citizen's fields as (label, value) for the case page, in a fixed order."""
    lines = [(label, _shown(name, citizen[name])) for name, label in CITIZEN_LABELS if citizen.get(name)]
    address = citizen.get("postal_address")
    if isinstance(address, dict):
        town = " ".join(str(address[k]) for k in ("postcode", "city") if address.get(k))
        lines.append(("Adresse postale", ", ".join(p for p in (str(address.get("street") or ""), town) if p)))
    return lines
