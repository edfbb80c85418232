"""`make run` options that decide which operators the simulator plays."""

import pytest

from deploy.local.run import desk_operator, simulated_operators


def test_without_a_desk_every_operator_is_simulated() -> None:
    assert simulated_operators({"RELAIS_DESK_OPERATOR": ""}) is None
    assert desk_operator({"RELAIS_DESK_OPERATOR": ""}) is None


def test_the_desks_operator_is_left_to_the_desk() -> None:
    assert desk_operator({}) == "justice"
    simulated = simulated_operators({})
    assert simulated is not None and "justice" not in simulated.split(",")
    assert len(simulated.split(",")) == 10
    simulated = simulated_operators({"RELAIS_DESK_OPERATOR": "crous"})
    assert simulated is not None and "crous" not in simulated and "justice" in simulated


def test_an_unknown_desk_operator_is_named() -> None:
    with pytest.raises(SystemExit, match="RELAIS_DESK_OPERATOR: unknown operator cpam"):
        desk_operator({"RELAIS_DESK_OPERATOR": "cpam"})


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
