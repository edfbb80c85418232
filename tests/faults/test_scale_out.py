"""Fault tests with two instances of each service (`referral`, `referral-2`, ...):
300 referrals driven through both referral instances while

1. one instance of each service is killed (kill -9) and stays down: the others take
   over its partitions, its outbox relay's lock, its deliveries;
2. one whole "host" is cut off the network: the second instance of each service runs
   in a network namespace of the test's own (its own address, joined to this host by
   a veth pair), and the host-side end of the veth is brought down mid-run. Its
   processes keep running, unaware, holding consumer-group memberships, PostgreSQL
   sessions (an advisory lock, row locks) and leases until the broker and PostgreSQL
   give up on them; the surviving instances then take over.

Afterwards: every referral answered once, every transition once, one mail, one
delivery and one `notification.sent` per moment the citizen is told of (harness.py
reconciles).

The host cut needs root and `ip` (iproute2); it is skipped, saying why, otherwise. It
only touches what it creates: a namespace `relais-<random>`, a veth pair and a /30 of
10.0.0.0/8 that no interface of the machine uses; they are removed at the end, even
on failure."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import random
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from deploy.local.launcher import LocalPlatform
from tests.faults.harness import (
    Driver,
    Report,
    dump_logs,
    reconcile,
    settle,
    signed_in_clients,
    sigterm_stop_times,
)
from tests.faults.test_faults import RATE, SETTLE_S, N, at

INSTANCES = 2
SERVICES = ("referral", "sites", "notifications")


def report_stop(p: LocalPlatform, capsys: pytest.CaptureFixture[str]) -> None:
    stops = sigterm_stop_times(p)
    p.stop()
    with capsys.disabled():
        print(f"stop on SIGTERM (s): {stops}; platform stop: {p.stop_timings}")


@pytest.fixture
def two_of_each(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Iterator[LocalPlatform]:
    started = time.monotonic()
    p = LocalPlatform(tmp_path / "platform", ports="free", simulated_operators=None, demo_data=True,
                      instances=INSTANCES)
    p.start()
    try:
        with capsys.disabled():
            print(f"\nplatform with {INSTANCES} instances of each service ready in "
                  f"{time.monotonic() - started:.1f}s (logs in {p.log_dir}): {p.children}")
        yield p
    finally:
        report_stop(p, capsys)


async def run_scaled(platform: LocalPlatform, name: str, fault, capsys: pytest.CaptureFixture[str]) -> Report:  # type: ignore[no-untyped-def]
    """Drives N referrals over every referral instance while `fault` runs, then
    settles, reconciles and prints the report (every log's tail on failure)."""
    began = time.monotonic()
    timeline: list[str] = []
    try:
        apis = await signed_in_clients(platform)
        try:
            driver = Driver(apis, tag=f"faute-{name}", n=N, rate=RATE)
            await asyncio.gather(driver.run(), fault(platform, driver, timeline))
        finally:
            for api in apis:
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


async def test_one_instance_of_each_service_killed_for_good_loses_and_duplicates_nothing(
        two_of_each: LocalPlatform, capsys: pytest.CaptureFixture[str]) -> None:
    """The first instances (the ones that started first, likely holding the outbox
    locks) die one after the other and are not restarted."""

    async def fault(p: LocalPlatform, driver: Driver, timeline: list[str]) -> None:
        began = time.monotonic()
        for k, name in ((N // 4, "notifications"), (N // 3, "referral"), (N // 2, "sites")):
            await driver.progress.reached(k)
            await asyncio.to_thread(p.kill, name)
            at(timeline, began, f"kill -9 {name} after referral #{driver.progress.count}; not restarted")

    await run_scaled(two_of_each, "scale-out-kill-9-one-of-each", fault, capsys)
    await check_one_leader_each(two_of_each, [f"{s}-2" for s in SERVICES], capsys)


async def outbox_relays(platform: LocalPlatform, names: list[str]) -> dict[str, str]:
    """What each instance's /healthz says of its outbox relay: leader or standby."""
    found = {}
    async with httpx.AsyncClient(timeout=5) as client:
        for name in names:
            found[name] = (await client.get(f"{platform.url(name)}/healthz")).json().get("outbox_relay", "?")
    return found


async def check_one_leader_each(platform: LocalPlatform, survivors: list[str],
                                capsys: pytest.CaptureFixture[str]) -> None:
    relays = await outbox_relays(platform, survivors)
    with capsys.disabled():
        print(f"outbox relays of the surviving instances: {relays}")
    assert set(relays.values()) == {"leader"}, f"each service's survivor publishes its outbox: {relays}"


# ---------------------------------------------------------------------- the host cut


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=15)


def _unused_subnet() -> ipaddress.IPv4Network:
    """A /30 of 10.0.0.0/8 that overlaps no address or route of this machine."""
    taken = []
    for line in (_ip("-o", "-4", "addr", "show").stdout + _ip("-4", "route", "show").stdout).splitlines():
        for word in line.split():
            try:
                taken.append(ipaddress.ip_network(word, strict=False))
            except ValueError:
                continue
    rng = random.Random()
    for _ in range(100):
        third, fourth = rng.randint(0, 255), rng.randrange(0, 256, 4)
        candidate = ipaddress.IPv4Network(f"10.{rng.randint(64, 250)}.{third}.{fourth}/30")
        if not any(candidate.overlaps(t) for t in taken if t.prefixlen > 0):
            return candidate
    raise RuntimeError("no free /30 found in 10.0.0.0/8")


class CutOffHost:
    """A network namespace joined to this host by a veth pair: `host_address` on this
    side, `address` inside. `cut()` brings this side's end down."""

    def __init__(self) -> None:
        suffix = uuid.uuid4().hex[:6]
        self.namespace = f"relais-{suffix}"
        self.outside, self.inside = f"rlh{suffix}", f"rln{suffix}"
        subnet = _unused_subnet()
        self.host_address, self.address = (str(a) for a in list(subnet.hosts())[:2])
        self.prefix = subnet.prefixlen

    def create(self) -> None:
        _ip("netns", "add", self.namespace)
        _ip("link", "add", self.outside, "type", "veth", "peer", "name", self.inside)
        _ip("link", "set", self.inside, "netns", self.namespace)
        _ip("addr", "add", f"{self.host_address}/{self.prefix}", "dev", self.outside)
        _ip("link", "set", self.outside, "up")
        _ip("-n", self.namespace, "addr", "add", f"{self.address}/{self.prefix}", "dev", self.inside)
        _ip("-n", self.namespace, "link", "set", self.inside, "up")
        _ip("-n", self.namespace, "link", "set", "lo", "up")

    def prefix_command(self) -> list[str]:
        return ["ip", "netns", "exec", self.namespace]

    def cut(self) -> None:
        _ip("link", "set", self.outside, "down")

    def remove(self) -> None:
        _ip("link", "delete", self.outside, check=False)  # takes its peer along
        _ip("netns", "delete", self.namespace, check=False)


def host_cut_unavailable() -> str | None:
    if shutil.which("ip") is None:
        return "the host cut needs `ip` (iproute2), not found"
    if os.geteuid() != 0:
        return "the host cut needs root (it makes a network namespace and a veth pair)"
    probe = f"relais-probe-{uuid.uuid4().hex[:6]}"
    made = _ip("netns", "add", probe, check=False)
    _ip("netns", "delete", probe, check=False)
    if made.returncode != 0:
        return f"cannot make a network namespace here: {made.stderr.strip()}"
    return None


@pytest.fixture
def host_cut_platform(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Iterator[tuple[LocalPlatform, CutOffHost]]:
    if reason := host_cut_unavailable():
        pytest.skip(reason)
    host = CutOffHost()
    try:
        host.create()
        # The broker (its front), the mailbox and PostgreSQL listen on this side's
        # veth address, which both sides reach; the second instances run inside.
        p = LocalPlatform(tmp_path / "platform", ports="free", simulated_operators=None, demo_data=True,
                          instances=INSTANCES, bind_host=host.host_address)
        for service in SERVICES:
            first, second = p.instance_names(service)
            p.child_hosts[first] = host.host_address
            p.child_hosts[second] = host.address
            p.child_prefix[second] = host.prefix_command()
        started = time.monotonic()
        try:
            p.start()
            with capsys.disabled():
                print(f"\nplatform ready in {time.monotonic() - started:.1f}s; namespace {host.namespace}: "
                      f"{host.address} (veth {host.outside}, this side {host.host_address}) runs "
                      f"{[n for n in p.children if n in p.child_prefix]}; logs in {p.log_dir}")
            yield p, host
        finally:
            report_stop(p, capsys)
    finally:
        host.remove()


async def test_a_host_cut_off_the_network_mid_run_loses_and_duplicates_nothing(
        host_cut_platform: tuple[LocalPlatform, CutOffHost], capsys: pytest.CaptureFixture[str]) -> None:
    platform, host = host_cut_platform

    async def fault(p: LocalPlatform, driver: Driver, timeline: list[str]) -> None:
        began = time.monotonic()
        await driver.progress.reached(N // 3)
        await asyncio.to_thread(host.cut)
        at(timeline, began, f"host {host.address} ({host.namespace}: referral-2, sites-2, notifications-2) "
                            f"cut off (veth down) after referral #{driver.progress.count}; never back")

    await run_scaled(platform, "scale-out-host-cut", fault, capsys)
    await check_one_leader_each(platform, list(SERVICES), capsys)
