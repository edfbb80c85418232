"""Fault test: the embedded broker (memory storage) killed and restarted empty in the
middle of 300 referrals, while the services, the simulator and PostgreSQL keep running.

Every topic, record and consumer-group offset is gone with it. The platform must
notice (each service's broker marker has vanished), recreate its topics, re-publish
from its outbox what consumers may not have seen, and have the operators asked again
for the answers that were lost: afterwards every referral is answered with each
transition exactly once, every citizen got exactly one mail, one delivery row and
one `notification.sent` event per moment told (see harness.py for the reconciliation).

`make test-faults` runs it with the other fault tests."""

from __future__ import annotations

import asyncio
import time

import pytest

from deploy.local.launcher import LocalPlatform
from tests.faults.harness import Driver
from tests.faults.test_faults import N, at, platform, run_scenario  # noqa: F401  (the fixture)


async def test_a_broker_lost_and_restarted_empty_loses_and_duplicates_nothing(
        platform: LocalPlatform, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    async def fault(p: LocalPlatform, driver: Driver, timeline: list[str]) -> None:
        began = time.monotonic()
        await driver.progress.reached(N // 3)
        restarting = time.monotonic()
        await asyncio.to_thread(p.restart, "broker")
        at(timeline, began, f"broker killed and restarted empty (memory storage) after referral "
                            f"#{driver.progress.count}, in {time.monotonic() - restarting:.1f}s")

    await run_scenario(platform, "broker-lost-restarted-empty", fault, capsys)
