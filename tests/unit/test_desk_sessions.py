"""The desk's session cookie is the kit's (tests/unit/test_kit_webui.py), keyed for one
operator's desk: refused by another desk and by the platform's APIs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fastapi import HTTPException

from relais_desk.domain.inbox import citizen_lines
from relais_kit import webui
from relais_kit.auth import read_token

SECRET = "a-secret-for-the-desk-session-tests"
NOW = datetime.now(UTC)


def _token(label: str) -> str:
    session = webui.new_session(NOW, timedelta(hours=1), user_id="demo-expert", display_name="C")
    return webui.encode(session, webui.session_key(SECRET, label), f"relais-ui:{label}")


def test_a_desk_session_is_only_valid_at_its_desk() -> None:
    justice = "desk:justice"
    assert webui.decode(_token(justice), webui.session_key(SECRET, justice), f"relais-ui:{justice}") is not None
    assert webui.decode(_token("desk:crous"), webui.session_key(SECRET, justice), f"relais-ui:{justice}") is None
    with pytest.raises(HTTPException):
        read_token(_token(justice), SECRET)


def test_citizen_lines_in_a_fixed_order_with_a_french_date() -> None:
    lines = citizen_lines({"phone": "0612345678", "given_name": "Nadia", "family_name": "Dupont",
                           "birth_date": "1987-06-02",
                           "postal_address": {"street": "1 rue X", "postcode": "47000", "city": "Agen"}})
    assert lines == [("Prénom", "Nadia"), ("Nom", "Dupont"), ("Date de naissance", "02/06/1987"),
                     ("Téléphone", "0612345678"), ("Adresse postale", "1 rue X, 47000 Agen")]
    assert citizen_lines({}) == []
