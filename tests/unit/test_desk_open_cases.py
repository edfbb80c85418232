"""`relais_desk_open_cases`: the desk's count of open cases, set per operator from a
fake of the query, once per refresh."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from relais_desk.service_layer.open_cases import OpenCasesGauge


def open_cases(operator: str) -> float | None:
    return REGISTRY.get_sample_value("relais_desk_open_cases", {"operator": operator})


async def test_the_gauge_shows_the_last_count_of_its_operator():
    found = [3]

    async def count() -> int:
        return found[0]

    gauge = OpenCasesGauge(count, "unit-desk")
    await gauge.refresh()
    assert open_cases("unit-desk") == 3
    found[0] = 0
    await gauge.refresh()
    assert open_cases("unit-desk") == 0
    assert open_cases("unit-other-desk") is None


async def test_a_failed_count_keeps_the_last_figure_and_ends_the_loop():
    async def count() -> int:
        return 7

    async def away() -> int:
        raise ConnectionError

    await OpenCasesGauge(count, "unit-desk-away").refresh()
    with pytest.raises(ConnectionError):
        await OpenCasesGauge(away, "unit-desk-away").run(every_s=0.01)
    assert open_cases("unit-desk-away") == 7
