"""Fault tests: 300 referrals through the whole platform (two instances of each of the
three services — RELAIS_FAULT_INSTANCES — and the operator simulator as processes, an
embedded broker and an embedded PostgreSQL owned by the platform, a real SMTP mailbox)
while a fault happens:

1. kill -9 of the referral service and of the notifications service at seeded random
   moments, each restarted at once;
2. the broker stopped (SIGSTOP) for 10 s mid-run, then continued;
3. PostgreSQL restarted mid-run.

Afterwards every referral is answered with each transition exactly once, and every
citizen got exactly one mail, one delivery row and one `notification.sent` event per
moment they are told of (sent, answered: harness.TOLD_MOMENTS).
The report (lost and duplicated counts) is printed for each scenario.

`RELAIS_FAULT_SEED` changes the seed (printed); `pytest -s tests/faults` or
`make test-faults` runs only these. See harness.py for how POSTs whose answer was
lost are reconciled."""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from deploy.local.launcher import LocalPlatform
from tests.faults.harness import (
    Driver,
    Report,
    dump_logs,
    reconcile,
    settle,
    signed_in_client,
    sigterm_stop_times,
)

N = 300
RATE = 20.0
SETTLE_S = 120.0
SEED = int(os.environ.get("RELAIS_FAULT_SEED", "20261122"))
SLOW_STOP_S = 10.0
# Every scenario runs with this many processes of each service (as a deployment does):
# a fault then also tests that the instances share the work and take it over.
INSTANCES = int(os.environ.get("RELAIS_FAULT_INSTANCES", "2"))

Fault = Callable[[LocalPlatform, Driver, list[str]], Coroutine[Any, Any, None]]


@pytest.fixture
def platform(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Iterator[LocalPlatform]:
    """A platform of the test's own: embedded broker and PostgreSQL, free ports, all
    operators simulated, demo data, INSTANCES of each service."""
    started = time.monotonic()
    p = LocalPlatform(tmp_path / "platform", ports="free", simulated_operators=None, demo_data=True,
                      instances=INSTANCES)
    p.start()
    try:
        with capsys.disabled():
            print(f"\nplatform with {INSTANCES} instance(s) of each service ready in "
                  f"{time.monotonic() - started:.1f}s (logs in {p.log_dir})")
        yield p
    finally:
        stops = sigterm_stop_times(p)
        p.stop()
        slow = {k: v for k, v in stops.items() if v > SLOW_STOP_S}
        with capsys.disabled():
            print(f"stop on SIGTERM (s): {stops}; platform stop: {p.stop_timings}"
                  + (f"; SLOWER THAN {SLOW_STOP_S:.0f}s: {slow}" if slow else ""))


async def run_scenario(platform: LocalPlatform, name: str, fault: Fault,
                       capsys: pytest.CaptureFixture[str]) -> Report:
    """Drives N referrals while `fault` runs, waits for the platform to settle,
    reconciles, prints the report; dumps every log's tail if anything fails."""
    began = time.monotonic()
    timeline: list[str] = []
    try:
        api = await signed_in_client(platform)
        try:
            driver = Driver(api, tag=f"faute-{name}", n=N, rate=RATE)
            await asyncio.gather(driver.run(), fault(platform, driver, timeline))
        finally:
            await api.aclose()
        driven = time.monotonic() - began
        observed, settle_s, state = await settle(platform, driver.tag, SETTLE_S)
        report = reconcile(name, driver, observed)
        report.notes += timeline
        report.notes.append(f"driving {driven:.1f}s, settling {settle_s:.1f}s ({state}); "
                            f"scenario total {time.monotonic() - began:.1f}s")
        with capsys.disabled():
            print(report.text())
        assert not report.bad, f"{name}: lost or duplicated items {report.bad}\n{report.text()}"
        return report
    except BaseException:
        with capsys.disabled():
            print(dump_logs(platform))
        raise


def at(timeline: list[str], began: float, what: str) -> None:
    line = f"t+{time.monotonic() - began:5.1f}s {what}"
    timeline.append(line)
    print(line, flush=True)


async def kill_and_restart(platform: LocalPlatform, name: str, timeline: list[str], began: float) -> None:
    await asyncio.to_thread(platform.kill, name)
    killed = time.monotonic()
    await asyncio.to_thread(platform.restart, name)
    at(timeline, began, f"kill -9 {name}; healthy again after {time.monotonic() - killed:.1f}s")


def kill_schedule(seed: int) -> list[tuple[int, str]]:
    """2-3 moments for each service, as 'when the k-th referral has been created'."""
    rng = random.Random(seed)
    moments = rng.sample(range(25, N - 25), 6)
    plan = [(k, "referral") for k in moments[:rng.randint(2, 3)]]
    plan += [(k, "notifications") for k in moments[3:3 + rng.randint(2, 3)]]
    return sorted(plan)


async def test_kill_9_of_the_referral_and_notifications_services_loses_and_duplicates_nothing(
        platform: LocalPlatform, capsys: pytest.CaptureFixture[str]) -> None:
    plan = kill_schedule(SEED)
    with capsys.disabled():
        print(f"seed {SEED} (RELAIS_FAULT_SEED): kill -9 after referral #k: {plan}")

    async def fault(p: LocalPlatform, driver: Driver, timeline: list[str]) -> None:
        began = time.monotonic()
        for k, name in plan:
            await driver.progress.reached(k)
            await kill_and_restart(p, name, timeline, began)

    await run_scenario(platform, "kill-9-services", fault, capsys)


async def test_a_broker_stopped_for_ten_seconds_loses_and_duplicates_nothing(
        platform: LocalPlatform, capsys: pytest.CaptureFixture[str]) -> None:
    async def fault(p: LocalPlatform, driver: Driver, timeline: list[str]) -> None:
        began = time.monotonic()
        await driver.progress.reached(N // 3)
        await asyncio.to_thread(p.pause, "broker")
        at(timeline, began, f"broker SIGSTOP after referral #{driver.progress.count}")
        try:
            await asyncio.sleep(10.0)  # the fault itself
        finally:
            await asyncio.to_thread(p.resume, "broker")
        at(timeline, began, f"broker SIGCONT; referral #{driver.progress.count} created meanwhile")

    await run_scenario(platform, "broker-sigstop-10s", fault, capsys)


async def pending_deliveries(dsn: str) -> int:
    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM notifications.deliveries WHERE status = 'pending'"))
    finally:
        await conn.close()


async def test_a_postgresql_restart_loses_and_duplicates_nothing(
        platform: LocalPlatform, capsys: pytest.CaptureFixture[str]) -> None:
    """PostgreSQL restarts while mails are being handed to the SMTP server. To make
    that moment certain rather than lucky, the mailbox is held (SIGSTOP) from just
    before the restart until just after it, with every delivery worker mid-send."""

    async def fault(p: LocalPlatform, driver: Driver, timeline: list[str]) -> None:
        began = time.monotonic()
        await driver.progress.reached(N // 2)
        await asyncio.to_thread(p.pause, "mailbox")
        try:
            deadline = time.monotonic() + 15.0
            while await pending_deliveries(p.database_url) < 5 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            restarting = time.monotonic()
            await asyncio.to_thread(p.restart, "postgres")
            at(timeline, began, f"PostgreSQL restarted (pg_ctl restart -m fast) after referral "
                                f"#{driver.progress.count}, in {time.monotonic() - restarting:.1f}s, "
                                f"mailbox held meanwhile")
        finally:
            await asyncio.to_thread(p.resume, "mailbox")

    await run_scenario(platform, "postgres-restart", fault, capsys)
