"""Numbers from the query are read strictly (relais_kit.numbers): ASCII digits, bounded;
anything else is the first page (never a 500). The sign-in throttle's wait, in French."""

from __future__ import annotations

import pytest

from relais_desk.entrypoints.web import LAST_PAGE
from relais_kit.numbers import fr_wait, page


@pytest.mark.parametrize(("text", "wanted"), [
    ("1", 1), ("2", 2), ("0042", 42), (str(LAST_PAGE), LAST_PAGE), ("999999", 1),
    ("0", 1), ("", 1), ("-2", 1), ("+2", 1), (" 2", 1), ("2.0", 1), ("abc", 1),
    ("²", 1), ("٣", 1), ("３", 1), ("1²", 1), ("9" * 5000, 1),
])
def test_page_numbers(text: str, wanted: int) -> None:
    assert page(text, LAST_PAGE) == wanted


def test_the_fr_wait() -> None:
    assert fr_wait(1) == "1 seconde"
    assert fr_wait(42) == "42 secondes"
    assert fr_wait(60) == "1 minute"
    assert fr_wait(61) == "2 minutes"
    assert fr_wait(300) == "5 minutes"
