"""The real Prometheus (Debian's `prometheus`), started as `make run` starts it
(deploy/local/prometheus.py), scrapes a process serving our metrics and answers the
figures on its HTTP API, with the alert rules of deploy/prometheus/rules.yml loaded.

The process here is this test's own: prometheus-client's HTTP server serving the
default registry, where relais_kit.metrics declares every metric of the kit."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from prometheus_client import start_http_server

from deploy.local import prometheus as local_prometheus
from relais_kit import metrics
from relais_kit.embedded import free_port

SCHEMA = "scrape-test"  # a schema of no service: this test's own series
DEADLINE_S = 60.0  # a safety net against hanging, not a measure: scrapes come every second


@pytest.fixture(scope="module")
def prometheus_binary() -> str:
    found = local_prometheus.binary()
    if found is None:
        if os.environ.get("RELAIS_REQUIRE_BROWSER") == "1":  # CI installs it: a skip there is a failure
            pytest.fail("the prometheus binary is not installed (make prometheus)")
        pytest.skip("the prometheus binary is not installed (Debian: prometheus; make prometheus)")
    return found


@pytest.fixture(scope="module")
def served_metrics() -> Iterator[str]:
    """Our metrics on a port of their own, as a service's /metrics serves them."""
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1")
    metrics.outbox_pending.labels(SCHEMA).set(42)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        metrics.outbox_pending.remove(SCHEMA)
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture(scope="module")
def prometheus_url(prometheus_binary: str, served_metrics: str,
                   tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp_path = tmp_path_factory.mktemp("prometheus")
    config = local_prometheus.write_configuration(
        tmp_path / "prometheus.yml", [local_prometheus.ScrapeTarget("referral", "referral-under-test", served_metrics)],
        scrape_interval="1s", evaluation_interval="1s")
    listen = f"127.0.0.1:{free_port()}"
    with (tmp_path / "prometheus.log").open("wb") as log:
        proc = subprocess.Popen(local_prometheus.command(prometheus_binary, config, tmp_path / "data", listen),
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    try:
        local_prometheus.wait_ready(f"http://{listen}", DEADLINE_S, proc)
        yield f"http://{listen}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def query_until(url: str, promql: str) -> list[dict[str, Any]]:
    """The instant query's result once it holds a sample (Prometheus scrapes every
    second); what it last held after DEADLINE_S."""
    deadline = time.monotonic() + DEADLINE_S
    with httpx.Client(timeout=5.0) as client:
        while True:
            response = client.get(f"{url}/api/v1/query", params={"query": promql})
            response.raise_for_status()
            result: list[dict[str, Any]] = response.json()["data"]["result"]
            if result or time.monotonic() > deadline:
                return result
            time.sleep(0.2)


def test_prometheus_scrapes_a_process_and_answers_its_figures(prometheus_url: str) -> None:
    (up,) = query_until(prometheus_url, 'up{job="relais-services"} == 1')
    assert up["metric"]["instance"] == "referral-under-test" and up["metric"]["service"] == "referral"

    (pending,) = query_until(prometheus_url, f'relais_outbox_pending_rows{{schema="{SCHEMA}"}}')
    assert pending["value"][1] == "42"
    assert pending["metric"] == {"__name__": "relais_outbox_pending_rows", "schema": SCHEMA,
                                 "job": "relais-services", "service": "referral",
                                 "instance": "referral-under-test"}

    metrics.outbox_pending.labels(SCHEMA).set(7)  # the next scrape sees the change
    (changed,) = query_until(prometheus_url, f'relais_outbox_pending_rows{{schema="{SCHEMA}"}} == 7')
    assert changed["value"][1] == "7"


def test_prometheus_loads_the_alert_rules(prometheus_url: str) -> None:
    rules = httpx.get(f"{prometheus_url}/api/v1/rules", params={"type": "alert"}, timeout=5.0).json()
    alerts = {rule["name"] for group in rules["data"]["groups"] for rule in group["rules"]}
    assert {"RelaisProcessDown", "RelaisConsumerGroupStalled", "RelaisOperatorInboxUnread", "RelaisDeadLetters",
            "RelaisOutboxBacklog", "RelaisOutboxRowsParked", "RelaisNotificationFailures",
            "RelaisLoopNotHealthy"} <= alerts
    assert all(rule["health"] != "err" for group in rules["data"]["groups"] for rule in group["rules"])
