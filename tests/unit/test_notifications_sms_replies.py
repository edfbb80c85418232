"""The STOP recogniser, the number's E.164 form and the MO callback's secret check."""

from __future__ import annotations

import pytest

from relais_notifications.domain.sms_replies import e164, is_stop
from relais_notifications.entrypoints.kannel import mo_secret_matches


@pytest.mark.parametrize("text", ["STOP", "stop", " Stop ", "ARRET", "Arrêt", "arrêt.", "STOP SMS",
                                  "stop  sms", "DESINSCRIRE", "Désinscrire", "Stop!"])
def test_stop_words(text: str) -> None:
    assert is_stop(text)


@pytest.mark.parametrize("text", ["", "Merci", "stop il pleut", "OK", "ne pas arreter", "STOPPER"])
def test_other_texts(text: str) -> None:
    assert not is_stop(text)


@pytest.mark.parametrize(("given", "expected"), [
    ("0612345678", "+33612345678"), ("06 12 34 56 78", "+33612345678"), ("+33612345678", "+33612345678"),
    ("0033612345678", "+33612345678"), ("33612345678", "+33612345678"), ("06.12.34.56.78", "+33612345678"),
    ("FranceSvcs", None), ("", None), ("12", None)])
def test_e164(given: str, expected: str | None) -> None:
    assert e164(given) == expected


def test_mo_secret() -> None:
    secret = "s" * 32
    assert mo_secret_matches(secret, secret)
    assert not mo_secret_matches(secret, "")
    assert not mo_secret_matches(secret, "s" * 31)
    assert not mo_secret_matches("", "")
    assert not mo_secret_matches(None, "")
    assert not mo_secret_matches("short", "short")
