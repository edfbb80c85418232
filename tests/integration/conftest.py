"""Fixtures shared by the integration tests of this folder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from relais_kit.embedded import free_port
from tests.support import LosableBroker


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[LosableBroker]:
    """A broker of the test's own, to lose (tests of what survives a broker loss)."""
    b = LosableBroker(free_port(), tmp_path / "tansu.log")
    b.start()
    yield b
    b.stop()
