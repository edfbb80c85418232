"""Operators, their answer deadlines and their procedures."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import yaml

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


@cache
def load_catalogue(path: Path = CATALOGUE_FILE) -> Catalogue:
    return Catalogue.from_mapping(yaml.safe_load(path.read_text()))
