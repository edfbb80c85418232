"""`make run` with several instances of each service (RELAIS_INSTANCES): names, ports,
and each instance's environment, without starting anything."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploy.local.launcher import LocalPlatform, over_tcp, service_of
from deploy.local.run import instances


def platform(tmp_path: Path, n: int) -> LocalPlatform:
    p = LocalPlatform(tmp_path, ports="default", instances=n, desk_operator="justice",
                      extra_env={"RELAIS_REFERRAL_PORT": "9000"})
    p._assign_ports()
    return p


def test_each_instance_has_its_name_and_its_own_port(tmp_path: Path) -> None:
    p = platform(tmp_path, 3)
    assert p.instance_names("referral") == ["referral", "referral-2", "referral-3"]
    assert [p.service_ports[n] for n in p.instance_names("referral")] == [9000, 9010, 9020]
    assert [p.service_ports[n] for n in p.instance_names("sites")] == [8001, 8011, 8021]
    assert p.urls("desk")[1] == "http://127.0.0.1:8013"
    assert len(set(p.planned_ports().values())) == len(p.planned_ports()), "no two parts on one port"


def test_a_child_name_maps_to_its_service() -> None:
    assert [service_of(n) for n in ("referral", "referral-2", "desk-3", "simulator", "kafka-gateway")] == \
        ["referral", "referral", "desk", None, None]


def test_an_instance_gets_its_services_settings_and_its_own(tmp_path: Path) -> None:
    p = platform(tmp_path, 2)
    p.child_env["referral"] = {"DATABASE_URL": "postgresql://relais_referral:pw@/postgres?host=/run/pg",
                               "KAFKA_SASL_USERNAME": "relais-referral"}
    p.child_env["referral-2"] = {"KAFKA_SASL_USERNAME": "relais-referral-second"}
    first, second = p.env_for("referral"), p.env_for("referral-2")
    assert (first["RELAIS_REFERRAL_PORT"], second["RELAIS_REFERRAL_PORT"]) == ("9000", "9010")
    assert second["DATABASE_URL"] == first["DATABASE_URL"]
    assert second["KAFKA_SASL_USERNAME"] == "relais-referral-second"
    assert second["RELAIS_INSTANCE"] == "referral-2"
    assert "DATABASE_URL" not in p.env_for("sites"), "no role given: not the administrator's URL either"


def test_an_instance_in_another_network_reaches_postgresql_over_tcp(tmp_path: Path) -> None:
    p = platform(tmp_path, 2)
    p.child_env["referral"] = {"DATABASE_URL": "postgresql://relais_referral:pw@/postgres?host=/run/pg"}
    p.child_hosts["referral-2"] = "10.77.0.2"
    p.bind_host, p.database_tcp_port = "10.77.0.1", 5432
    assert p.env_for("referral-2")["DATABASE_URL"] == "postgresql://relais_referral:pw@10.77.0.1:5432/postgres"
    assert p.env_for("referral-2")["RELAIS_HOST"] == "10.77.0.2"
    assert p.env_for("referral")["DATABASE_URL"].endswith("?host=/run/pg")
    assert p.url("referral-2") == "http://10.77.0.2:9010"


def test_over_tcp_keeps_role_database_and_other_options() -> None:
    assert over_tcp("postgresql://u:p@/db?host=/s&sslmode=disable", "10.0.0.1", 5433) == \
        "postgresql://u:p@10.0.0.1:5433/db?sslmode=disable"


@pytest.mark.parametrize("raw", ["0", "-1", "two", "10"])
def test_a_wrong_number_of_instances_is_named(raw: str) -> None:
    with pytest.raises(SystemExit, match="RELAIS_INSTANCES"):
        instances({"RELAIS_INSTANCES": raw})


def test_one_instance_by_default() -> None:
    assert instances({}) == 1 and instances({"RELAIS_INSTANCES": "3"}) == 3
