"""Operators, their answer deadlines and their procedures."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import yaml

from relais_referral.domain.model import Citizen

CATALOGUE_FILE = Path(__file__).resolve().parents[1] / "catalogue.yaml"
CITIZEN_FIELDS = frozenset({"given_name", "family_name", "birth_date", "email", "phone", "postal_address"})


@dataclass(frozen=True)
class Procedure:
    code: str
    label: str
    citizen_fields: frozenset[str]


@dataclass(frozen=True)
class Operator:
    code: str
    name: str
    deadline_days: int
    procedures: dict[str, Procedure]


class Catalogue:
    def __init__(self, operators: dict[str, Operator]) -> None:
        self.operators = operators

    @classmethod
    def from_mapping(cls, doc: dict[str, dict]) -> Catalogue:  # type: ignore[type-arg]
        operators = {}
        for code, spec in doc.items():
            procedures = {
                p: Procedure(p, info["label"], frozenset(info["citizen_fields"]) & CITIZEN_FIELDS)
                for p, info in spec["procedures"].items()
            }
            operators[code] = Operator(code, spec["name"], int(spec["deadline_days"]), procedures)
        return cls(operators)

    def operator(self, code: str) -> Operator | None:
        return self.operators.get(code)

    def procedure(self, operator: str, code: str) -> Procedure | None:
        found = self.operators.get(operator)
        return found.procedures.get(code) if found else None


# What the operator's expert needs that a visit may lack (the names are always there),
# in the order they are asked for.
ASKED_FIELDS = ("birth_date", "postal_address", "email", "phone")


def missing_citizen_fields(procedure: Procedure, citizen: Citizen) -> tuple[str, ...]:
    """The fields the procedure needs (`citizen_fields`) that the citizen's record lacks:
    nothing may be sent to the operator until they are given (the pages ask for them,
    the API refuses with a 422 naming them)."""
    known = {"birth_date": citizen.birth_date, "postal_address": citizen.postal_address,
             "email": citizen.email, "phone": citizen.phone}
    return tuple(f for f in ASKED_FIELDS if f in procedure.citizen_fields and not known[f])


@cache
def load_catalogue(path: Path = CATALOGUE_FILE) -> Catalogue:
    return Catalogue.from_mapping(yaml.safe_load(path.read_text()))
