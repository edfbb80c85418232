"""SIGTERM stops each service, in a bounded time, also while its broker or its
database is out of reach (a stop must never wait for them)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
import pytest

from relais_kit.embedded import free_port
from tests.conftest import ROOT

PYTHONPATH = os.pathsep.join(str(ROOT / p) for p in (
    "libs/relais_kit", "services/referral", "services/sites", "services/notifications", "."))
PORT_VARIABLE = {"referral": "RELAIS_REFERRAL_PORT", "sites": "RELAIS_SITES_PORT",
                 "notifications": "RELAIS_NOTIFICATIONS_PORT"}


def start(service: str, database_url: str, bootstrap: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": PYTHONPATH, "DATABASE_URL": database_url,
           "KAFKA_BOOTSTRAP_SERVERS": bootstrap, PORT_VARIABLE[service]: str(port)}
    proc = subprocess.Popen([sys.executable, "-m", f"relais_{service}"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    return proc, port


def health(port: int, proc: subprocess.Popen[bytes]) -> dict:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
        try:
            return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).json()
        except httpx.HTTPError:
            time.sleep(0.1)
    raise AssertionError("the service never answered /healthz")


def stops_on_sigterm(proc: subprocess.Popen[bytes]) -> bool:
    """True when the process shut down on its own (uvicorn re-raises the signal once it
    has stopped cleanly, hence the exit status)."""
    proc.send_signal(signal.SIGTERM)
    try:
        output, _ = proc.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError("still running 15 s after SIGTERM") from None
    assert proc.returncode in (0, -signal.SIGTERM), proc.returncode
    return b"Application shutdown complete" in output and b"service_stopped" in output


@pytest.mark.parametrize("service", ["referral", "sites", "notifications"])
def test_stops_while_the_broker_is_unreachable(service: str, database_url: str) -> None:
    proc, port = start(service, database_url, f"127.0.0.1:{free_port()}")
    assert health(port, proc)["status"] == "starting"
    assert httpx.get(f"http://127.0.0.1:{port}/api/v1/notifications?referral_id=x", timeout=2).status_code \
        in (401, 503)
    assert stops_on_sigterm(proc)


def test_stops_while_the_database_is_unreachable() -> None:
    proc, port = start("referral", f"postgresql://postgres@127.0.0.1:{free_port()}/postgres",
                       f"127.0.0.1:{free_port()}")
    assert health(port, proc)["status"] == "starting"
    assert stops_on_sigterm(proc)


def test_stops_promptly_when_running(database_url: str, kafka_bootstrap: str) -> None:
    proc, port = start("referral", database_url, kafka_bootstrap)
    deadline = time.monotonic() + 60
    while health(port, proc)["status"] != "ok":
        assert time.monotonic() < deadline, "never became healthy"
        time.sleep(0.2)
    assert stops_on_sigterm(proc)
