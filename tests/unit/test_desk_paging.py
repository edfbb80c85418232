"""The inbox's `?page=` is read strictly: ASCII digits, bounded; anything else is the
first page (never a 500). The sign-in throttle's wait, in French."""

from __future__ import annotations

import pytest

from relais_desk.entrypoints.web import LAST_PAGE, page_number, wait_in_words


@pytest.mark.parametrize(("text", "page"), [
    ("1", 1), ("2", 2), ("0042", 42), (str(LAST_PAGE), LAST_PAGE), ("999999", LAST_PAGE),
    ("0", 1), ("", 1), ("-2", 1), ("+2", 1), (" 2", 1), ("2.0", 1), ("abc", 1),
    ("²", 1), ("٣", 1), ("３", 1), ("1²", 1), ("9" * 5000, 1),
])
def test_page_numbers(text: str, page: int) -> None:
    assert page_number(text) == page


def test_the_wait_in_words() -> None:
    assert wait_in_words(1) == "1 seconde"
    assert wait_in_words(42) == "42 secondes"
    assert wait_in_words(60) == "1 minute"
    assert wait_in_words(61) == "2 minutes"
    assert wait_in_words(300) == "5 minutes"
