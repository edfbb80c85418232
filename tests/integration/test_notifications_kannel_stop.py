"""A telephone answers STOP through a real Kannel (fakesmsc sends the MO message,
smsbox's `sms-service` calls the notifications service): the number is opted out (only
its keyed hash is kept), the next SMS to it is never handed to Kannel and the delivery
fails with the reason the adviser reads; a forged callback is refused."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import httpx
import pytest
import uvicorn

from deploy.kannel.config import FAKESMSC, installed, program
from relais_kit.embedded import free_port
from relais_kit.runtime import until_ready
from relais_notifications.app import create_app
from relais_notifications.domain.model import delivery_id
from relais_notifications.domain.sms_replies import OPTED_OUT_REASON
from tests.integration.test_notifications_kannel import FAILED, RunningKannel
from tests.integration.test_notifications_service import (
    answered_data,
    answered_event,
    contract,
    header_map,
    produce,
    read_topic,
)
from tests.support import eventually
from tests.tokens_support import JWKS_URL

pytestmark = pytest.mark.skipif(not installed(), reason="Kannel not installed (deploy/kannel/install-kannel.sh)")

CITIZEN = "+33612345678"  # answered_data's telephone


@asynccontextmanager
async def served(monkeypatch: pytest.MonkeyPatch, database_url: str, kafka_bootstrap: str,
                 tmp_path: Path) -> AsyncIterator[tuple[str, RunningKannel]]:
    """Kannel, configured to call back the notifications service on its port, and the service."""
    port = free_port()
    kannel = RunningKannel(tmp_path / "kannel")
    kannel.kannel = dataclasses.replace(kannel.kannel, mo_url=f"http://127.0.0.1:{port}/kannel/mo")
    kannel.kannel.write()
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    monkeypatch.setenv("RELAIS_TOKEN_JWKS_URL", JWKS_URL)
    monkeypatch.setenv("RELAIS_SMTP_PORT", str(free_port()))
    monkeypatch.setenv("RELAIS_NOTIFICATIONS_POLL_S", "0.5")
    for name, value in kannel.kannel.notifications_env(f"http://127.0.0.1:{port}/kannel/dlr").items():
        monkeypatch.setenv(name, value)
    app = create_app()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve())
    try:
        kannel.start()
        await eventually(lambda: _started(server), timeout=60.0, what="the service to listen")
        await until_ready(app)
        yield f"http://127.0.0.1:{port}", kannel
    finally:
        kannel.stop()
        kannel.stop("replying")
        server.should_exit = True
        await asyncio.wait_for(task, 30)


async def _started(server: uvicorn.Server) -> bool:
    return server.started


def reply(kannel: RunningKannel, sender: str, text: str) -> None:
    """The operator's SMSC hands one text from `sender` to Kannel (a fakesmsc sending one MO)."""
    kannel.stop("fakesmsc")
    with (kannel.directory / "replying.log").open("ab") as out:
        kannel.processes["replying"] = subprocess.Popen(
            [program(FAKESMSC), "-H", kannel.kannel.host, "-r", str(kannel.kannel.ports.smsc), "-m", "1",
             "-i", "0.2", f"{sender} 36000 text {text}"],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)


async def test_stop_reply_opts_the_number_out(monkeypatch: pytest.MonkeyPatch, database_url: str,
                                              kafka_bootstrap: str, tmp_path: Path) -> None:
    async with served(monkeypatch, database_url, kafka_bootstrap, tmp_path) as (url, kannel):
        db = await asyncpg.connect(database_url)
        try:
            async with httpx.AsyncClient(base_url=url) as client:
                # Forged: no secret, a wrong one. Nothing recorded.
                for params in ({"from": "0611111111", "text": "STOP"},
                               {"from": "0611111111", "text": "STOP", "secret": "x" * 32}):
                    assert (await client.get("/kannel/mo", params=params)).status_code == 403
            assert await db.fetchval("SELECT count(*) FROM notifications.sms_opt_outs") == 0

            # The citizen answers "Stop" from the telephone (the operator writes it nationally).
            reply(kannel, "0612345678", "Stop")

            async def opted_out() -> int | None:
                count = await db.fetchval("SELECT count(*) FROM notifications.sms_opt_outs")
                return count or None

            await eventually(opted_out, timeout=60.0, what="the STOP reply recorded")
            stored = await db.fetch("SELECT * FROM notifications.sms_opt_outs")
            assert len(stored) == 1 and "612345678" not in json.dumps([dict(r) for r in stored], default=str)
            kannel.stop("replying")
            kannel.start("fakesmsc")

            by_sms = answered_event(answered_data(channel="sms"))
            sms_id = delivery_id(by_sms.id, "citizen")
            await produce(kafka_bootstrap, by_sms)

            async def failed() -> asyncpg.Record | None:
                row = await db.fetchrow("SELECT * FROM notifications.deliveries WHERE id = $1", sms_id)
                return row if row is not None and row["status"] == "failed" else None

            row = await eventually(failed, timeout=60.0, what="the SMS to the opted-out number failed")
            assert row["reason"] == OPTED_OUT_REASON
            assert row["attempts"] == 1 and row["sent_at"] is None
            await asyncio.sleep(1.0)
            assert CITIZEN not in kannel.log("fakesmsc") and "Got message" not in kannel.log("fakesmsc")

            records = await read_topic(kafka_bootstrap, "notifications", lambda rs: any(
                header_map(r)["ce_type"] == FAILED and r.key.decode() == by_sms.subject for r in rs))
            told = [json.loads(r.value) for r in records
                    if r.key.decode() == by_sms.subject and header_map(r)["ce_type"] == FAILED]
            assert len(told) == 1
            contract.check(FAILED, told[0])
            assert told[0]["reason"] == OPTED_OUT_REASON
        finally:
            await db.close()
