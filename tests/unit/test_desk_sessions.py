"""The desk's session cookie is the kit's (tests/unit/test_kit_webui.py), signed with
the desk's own keys under its own issuer: refused by another desk and by the
platform's APIs; nothing the referral service signs opens the desk."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fastapi import HTTPException

from relais_desk.app import desk_issuer
from relais_desk.domain.inbox import citizen_lines
from relais_kit import webui
from relais_kit.auth import REFERRAL_ISSUER, TokenVerifier, User, api_audience, issue_token, read_token
from relais_kit.tokenkeys import TokenKeySet, new_key
from relais_kit.tokens import FixedKeys, TokenSigner

NOW = datetime.now(UTC)
JUSTICE = TokenSigner(FixedKeys(TokenKeySet.of(new_key("d1"))), desk_issuer("justice"))
CROUS = TokenSigner(FixedKeys(TokenKeySet.of(new_key("d1"))), desk_issuer("crous"))
REFERRAL = TokenSigner(FixedKeys(TokenKeySet.of(new_key("r1"))), REFERRAL_ISSUER)
JUSTICE_UI = "relais-ui:desk:justice"


def _cookie(signer: TokenSigner, audience: str = JUSTICE_UI) -> str:
    session = webui.new_session(NOW, timedelta(hours=1), user_id="demo-expert", display_name="C")
    return webui.encode(session, signer, audience)


def test_a_desk_session_is_only_valid_at_its_desk() -> None:
    assert webui.decode(_cookie(JUSTICE), JUSTICE, JUSTICE_UI) is not None
    assert webui.decode(_cookie(CROUS), JUSTICE, JUSTICE_UI) is None
    assert webui.decode(_cookie(CROUS, "relais-ui:desk:crous"), JUSTICE, JUSTICE_UI) is None


async def test_a_desk_token_opens_no_api() -> None:
    for service in ("referral", "sites", "notifications"):
        with pytest.raises(HTTPException) as refused:  # the APIs know the referral service's keys only
            await read_token(_cookie(JUSTICE), TokenVerifier(REFERRAL, audience=api_audience(service)))
        assert refused.value.status_code == 401
    # Even a desk that minted an API-shaped token: wrong keys; and were they known, wrong issuer.
    minted = issue_token(User("x", "ops", None, "X"), JUSTICE)
    with pytest.raises(HTTPException, match="does not publish"):
        await read_token(minted, TokenVerifier(REFERRAL, audience=api_audience("referral")))
    with pytest.raises(HTTPException, match="issuer"):
        await read_token(minted, TokenVerifier(JUSTICE, audience=api_audience("referral")))


def test_nothing_the_referral_service_signs_opens_the_desk() -> None:
    bearer = issue_token(User("u-ops", "ops", None, "Nina"), REFERRAL)
    assert webui.decode(bearer, JUSTICE, JUSTICE_UI) is None
    assert webui.decode(_cookie(REFERRAL), JUSTICE, JUSTICE_UI) is None
    assert webui.decode(_cookie(REFERRAL, "relais-ui:referral-ui"), JUSTICE, JUSTICE_UI) is None


def test_citizen_lines_in_a_fixed_order_with_a_french_date() -> None:
    lines = citizen_lines({"phone": "0612345678", "given_name": "Nadia", "family_name": "Dupont",
                           "birth_date": "1987-06-02",
                           "postal_address": {"street": "1 rue X", "postcode": "47000", "city": "Agen"}})
    assert lines == [("Prénom", "Nadia"), ("Nom", "Dupont"), ("Date de naissance", "02/06/1987"),
                     ("Téléphone", "0612345678"), ("Adresse postale", "1 rue X, 47000 Agen")]
    assert citizen_lines({}) == []
