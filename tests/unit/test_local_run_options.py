"""`make run` options that decide which operators the simulator plays."""

import pytest

from deploy.local.run import simulated_operators


def test_every_operator_is_simulated_by_default() -> None:
    assert simulated_operators({}) is None


def test_live_operators_are_left_to_the_operators_own_consumer() -> None:
    simulated = simulated_operators({"RELAIS_LIVE_OPERATORS": "dgfip, justice"})
    assert simulated is not None
    codes = simulated.split(",")
    assert "dgfip" not in codes and "justice" not in codes
    assert {"caf", "ants", "la-poste"} <= set(codes) and len(codes) == 9


def test_an_explicit_list_wins() -> None:
    assert simulated_operators({"RELAIS_SIMULATED_OPERATORS": "", "RELAIS_LIVE_OPERATORS": "caf"}) == ""


def test_an_unknown_live_operator_is_named() -> None:
    with pytest.raises(SystemExit, match=r"unknown operator.*cpam"):
        simulated_operators({"RELAIS_LIVE_OPERATORS": "cpam"})
