"""The desk's session cookie and CSRF token: signed, bound to one desk, refused when
forged, expired or taken to another desk or to the platform's APIs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fastapi import HTTPException

from relais_desk.domain import sessions
from relais_desk.domain.inbox import citizen_lines
from relais_kit.auth import read_token

SECRET = "a-secret-for-the-desk-session-tests"
KEY = sessions.session_key(SECRET, "justice")
NOW = datetime.now(UTC)


def test_a_session_round_trips() -> None:
    session = sessions.new_session(NOW, timedelta(hours=1), user_id="demo-expert", display_name="Chantal")
    back = sessions.decode(sessions.encode(session, KEY), KEY)
    assert back is not None
    assert (back.user_id, back.display_name, back.csrf, back.signed_in) == ("demo-expert", "Chantal",
                                                                            session.csrf, True)


def test_an_anonymous_session_carries_a_csrf_token_only() -> None:
    session = sessions.new_session(NOW, timedelta(hours=1))
    back = sessions.decode(sessions.encode(session, KEY), KEY)
    assert back is not None and not back.signed_in and len(back.csrf) >= 32


def test_each_session_gets_its_own_csrf_token() -> None:
    assert sessions.new_session(NOW, timedelta(hours=1)).csrf != sessions.new_session(NOW, timedelta(hours=1)).csrf


@pytest.mark.parametrize("token", [None, "", "garbage", "a.b.c"])
def test_nonsense_is_no_session(token: str | None) -> None:
    assert sessions.decode(token, KEY) is None


def test_a_forged_or_expired_or_foreign_session_is_refused() -> None:
    session = sessions.new_session(NOW, timedelta(hours=1), user_id="demo-expert", display_name="C")
    token = sessions.encode(session, KEY)
    header, payload, signature = token.split(".")
    assert sessions.decode(f"{header}.{payload}.{signature[::-1]}", KEY) is None
    expired = sessions.new_session(NOW - timedelta(hours=2), timedelta(hours=1), user_id="demo-expert")
    assert sessions.decode(sessions.encode(expired, KEY), KEY) is None
    # Another operator's desk, same platform secret: not valid here.
    assert sessions.decode(sessions.encode(session, sessions.session_key(SECRET, "crous")), KEY) is None
    assert sessions.decode(token, sessions.session_key(SECRET, "crous")) is None


def test_a_desk_session_is_not_a_bearer_token_of_the_platform() -> None:
    token = sessions.encode(sessions.new_session(NOW, timedelta(hours=1), user_id="demo-expert"), KEY)
    with pytest.raises(HTTPException):
        read_token(token, SECRET)


def test_csrf_token_must_match_the_session() -> None:
    session = sessions.new_session(NOW, timedelta(hours=1))
    assert sessions.csrf_ok(session, session.csrf)
    assert not sessions.csrf_ok(session, None)
    assert not sessions.csrf_ok(session, "")
    assert not sessions.csrf_ok(session, session.csrf[:-1] + ("A" if session.csrf[-1] != "A" else "B"))
    assert not sessions.csrf_ok(None, session.csrf)


def test_citizen_lines_in_a_fixed_order_with_a_french_date() -> None:
    lines = citizen_lines({"phone": "0612345678", "given_name": "Nadia", "family_name": "Dupont",
                           "birth_date": "1987-06-02",
                           "postal_address": {"street": "1 rue X", "postcode": "47000", "city": "Agen"}})
    assert lines == [("Prénom", "Nadia"), ("Nom", "Dupont"), ("Date de naissance", "02/06/1987"),
                     ("Téléphone", "0612345678"), ("Adresse postale", "1 rue X, 47000 Agen")]
    assert citizen_lines({}) == []
