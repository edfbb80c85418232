"""Nothing an operator sends is dropped on the way to the adviser: every property of an
operator reply's schema (but the referral id and the operator's own time) is kept by the
referral service (service_layer/referrals.OPERATOR_MOVES) and is a property of the
lifecycle event it publishes, `referral.<move>`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from relais_referral.service_layer.referrals import OPERATOR_MOVES

EVENTS = Path(__file__).resolve().parents[2] / "schemas" / "events"
OPERATOR_OWN = {"referral_id", "acknowledged_at", "requested_at", "rejected_at", "answered_at"}


def schema(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((EVENTS / f"{name}.v1.json").read_text(encoding="utf-8"))
    return loaded


@pytest.mark.parametrize("name", sorted(OPERATOR_MOVES))
def test_every_field_of_the_reply_is_kept_and_carried_on(name: str) -> None:
    move, kept = OPERATOR_MOVES[name]
    sent = set(schema(name)["properties"]) - OPERATOR_OWN
    assert sent == set(kept), f"{name}: dropped {sorted(sent - set(kept))}"
    carried = set(schema(f"referral.{move.value}")["properties"])
    assert set(kept) <= carried, f"referral.{move.value} lacks {sorted(set(kept) - carried)}"


def test_the_lifecycle_event_carries_the_documents_asked_for() -> None:
    example = dict(schema("referral.info_requested")["examples"][0])
    validator = Draft202012Validator(schema("referral.info_requested"),
                                     format_checker=Draft202012Validator.FORMAT_CHECKER)
    assert list(validator.iter_errors(example)) == []
    without = {k: v for k, v in example.items() if k != "documents"}  # still optional
    assert list(validator.iter_errors(without)) == []
    assert list(validator.iter_errors({**example, "documents": []}))  # one at least when present
