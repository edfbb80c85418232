"""The Prometheus of `make run` (deploy/local/prometheus.py): its configuration, generated
from a LocalPlatform's children without starting anything, lists every process with
its service and instance, loads the repository's alert rules, and is valid for
`promtool check config`."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from deploy.local import prometheus as local_prometheus
from deploy.local.launcher import LocalPlatform

ROOT = Path(__file__).resolve().parents[2]


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        if os.environ.get("RELAIS_REQUIRE_BROWSER") == "1":  # CI installs it: a skip there is a failure
            pytest.fail("promtool not installed (make prometheus)")
        pytest.skip("promtool not installed (Debian: prometheus; make prometheus)")
    return found


def generated(tmp_path: Path, instances: int = 1) -> tuple[LocalPlatform, dict[str, Any]]:
    ports = {"RELAIS_REFERRAL_PORT": "8000", "RELAIS_SITES_PORT": "8001", "RELAIS_DESK_PORT": "8003"}
    platform = LocalPlatform(tmp_path / "data", ports="default", desk_operator="justice", prometheus=True,
                             instances=instances, extra_env=ports)
    path = local_prometheus.write_configuration(platform.prometheus_config_file, platform.prometheus_targets())
    return platform, yaml.safe_load(path.read_text())


def test_every_child_of_the_platform_is_scraped_with_its_service_and_instance(tmp_path: Path) -> None:
    platform, config = generated(tmp_path, instances=2)
    (job,) = config["scrape_configs"]
    assert job["job_name"] == "relais-services" and job["metrics_path"] == "/metrics"
    scraped = {c["labels"]["instance"]: (c["labels"]["service"], c["targets"]) for c in job["static_configs"]}
    assert set(scraped) == set(platform.children)
    assert {"referral", "referral-2", "desk", "desk-2"} <= set(scraped)
    assert {service for service, _ in scraped.values()} == set(platform.services)  # ops too, once it is one
    assert scraped["referral"] == ("referral", ["127.0.0.1:8000"])
    assert scraped["sites-2"] == ("sites", ["127.0.0.1:8011"])
    assert scraped["desk"] == ("desk", ["127.0.0.1:8003"])


def test_a_platform_without_the_desk_does_not_scrape_it(tmp_path: Path) -> None:
    platform = LocalPlatform(tmp_path, ports="default", prometheus=True)
    assert "desk" not in {t.instance for t in platform.prometheus_targets()}
    assert {t.instance for t in platform.prometheus_targets()} == set(platform.children)


def test_it_evaluates_the_repositorys_alert_rules_every_5_seconds(tmp_path: Path) -> None:
    _, config = generated(tmp_path)
    assert config["global"]["scrape_interval"] == config["global"]["evaluation_interval"] == "5s"
    assert config["rule_files"] == [str(ROOT / "deploy" / "prometheus" / "rules.yml")]
    assert Path(config["rule_files"][0]).is_absolute()


def test_the_generated_configuration_passes_promtool(tmp_path: Path) -> None:
    tool = promtool()
    platform, _ = generated(tmp_path, instances=3)
    out = subprocess.run([tool, "check", "config", str(platform.prometheus_config_file)],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


def test_promtool_refuses_a_broken_configuration(tmp_path: Path) -> None:
    """The check above can fail: a rule file that is not there is refused."""
    tool = promtool()
    path = local_prometheus.write_configuration(tmp_path / "prometheus.yml",
                                                [local_prometheus.ScrapeTarget("referral", "referral", "x:1")],
                                                rule_files=[tmp_path / "missing.yml"])
    out = subprocess.run([tool, "check", "config", str(path)], capture_output=True, text=True)
    assert out.returncode != 0


def test_the_command_line_listens_where_asked_and_keeps_two_days(tmp_path: Path) -> None:
    line = local_prometheus.command("/usr/bin/prometheus", tmp_path / "p.yml", tmp_path / "data", "127.0.0.1:9090")
    assert line[0] == "/usr/bin/prometheus"
    assert {f"--config.file={tmp_path / 'p.yml'}", f"--storage.tsdb.path={tmp_path / 'data'}",
            "--web.listen-address=127.0.0.1:9090", "--storage.tsdb.retention.time=2d"} <= set(line[1:])


def test_without_the_binary_the_platform_starts_no_prometheus_and_says_so(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(local_prometheus, "binary", lambda: None)
    platform = LocalPlatform(tmp_path, ports="free", prometheus=True)
    platform._assign_ports()
    platform._start_prometheus()
    assert "prometheus" not in platform.processes and platform.prometheus_url is None
    assert "no `prometheus` binary" in capsys.readouterr().err
    assert "prometheus" not in platform.planned_ports()


def test_only_a_platform_asked_for_it_plans_a_port_for_prometheus(tmp_path: Path) -> None:
    if local_prometheus.binary() is None:
        pytest.skip("prometheus not installed")
    assert LocalPlatform(tmp_path, ports="default", prometheus=True).planned_ports()["prometheus"] == 9090
    assert "prometheus" not in LocalPlatform(tmp_path, ports="default").planned_ports()
