"""/healthz tells the truth about the background loops: a loop that fails at each
restart is failing, one stuck on a step is stalled, and both make the process unhealthy
(and relais_loop_healthy 0). The runtime's ports are fakes of our own."""

import asyncio
from types import SimpleNamespace
from typing import Any

from prometheus_client import REGISTRY

from relais_kit.progress import Progress
from relais_kit.runtime import Runtime
from relais_kit.settings import PlatformSettings


class FakeConnection:
    async def fetchval(self, _: str) -> int:
        return 1


class FakePool:
    def acquire(self, timeout: float = 0) -> Any:
        class Acquired:
            async def __aenter__(self) -> FakeConnection:
                return FakeConnection()

            async def __aexit__(self, *_: object) -> None:
                return None
        return Acquired()


def runtime(stall_after_s: float) -> Runtime:
    settings = PlatformSettings(RELAIS_STALL_AFTER_S=stall_after_s)
    relay = SimpleNamespace(leading=True, parked=0)
    return Runtime("unit", settings, contract=None, pool=FakePool(), producer=None,  # type: ignore[arg-type]
                   relay=relay, vault=None)  # type: ignore[arg-type]


async def test_a_loop_that_fails_at_each_restart_is_reported_failing_not_running():
    rt = runtime(stall_after_s=30)

    async def broken() -> None:
        raise ConnectionRefusedError("no broker")

    async def fine() -> None:
        await asyncio.Event().wait()

    rt.supervise("consumer:unit-broken", broken)
    rt.supervise("consumer:unit-fine", fine)
    try:
        for _ in range(100):  # 3 failures: 0.5 s + 1 s of back-off
            if rt.loop_state("consumer:unit-broken") != "running":
                break
            await asyncio.sleep(0.05)
        report = await rt.health()
        assert report["status"] == "degraded"
        assert report["loops"]["consumer:unit-broken"] == (
            "failing: failed 3 times in a row, last: ConnectionRefusedError")
        assert report["loops"]["consumer:unit-fine"] == "running"
        assert REGISTRY.get_sample_value("relais_loop_healthy", {"loop": "consumer:unit-broken"}) == 0
        assert REGISTRY.get_sample_value("relais_loop_healthy", {"loop": "consumer:unit-fine"}) == 1
        assert REGISTRY.get_sample_value("relais_loop_restarts_total", {"loop": "consumer:unit-broken"}) >= 2
    finally:
        for task in rt.loops.values():
            task.cancel()


async def test_a_loop_stuck_on_a_step_is_stalled_and_healthy_again_once_it_moves():
    rt = runtime(stall_after_s=0.2)
    progress = Progress()

    async def relay() -> None:
        await asyncio.Event().wait()

    rt.supervise("outbox-relay-unit", relay, progress=progress)
    try:
        progress.stuck("publishing fails: KafkaTimeoutError")
        assert (await rt.health())["status"] == "ok", "not yet: a broker blip is no stall"
        await asyncio.sleep(0.25)
        report = await rt.health()
        assert report["status"] == "degraded"
        assert report["loops"]["outbox-relay-unit"].startswith("stalled: no progress for 0 s: publishing fails")
        assert REGISTRY.get_sample_value("relais_loop_healthy", {"loop": "outbox-relay-unit"}) == 0
        progress.moved()
        assert (await rt.health())["status"] == "ok"
    finally:
        for task in rt.loops.values():
            task.cancel()
