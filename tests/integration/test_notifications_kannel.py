"""SMS through a real Kannel (Debian's bearerbox and smsbox, with kannel-extras'
fakesmsc as the operator's SMSC) and the notifications service served over HTTP (Kannel
calls its delivery-report callback), with the real broker and PostgreSQL: the SMS goes
through Kannel to fakesmsc, the report comes back and the delivery is `delivered`, with
`notification.delivered` on the topic; a failed report fails it with
`notification.failed`; a forged callback is refused."""

from __future__ import annotations

import asyncio
import json
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import httpx
import pytest
import uvicorn

from deploy.kannel.config import Kannel, KannelPorts, installed
from relais_kit.embedded import free_port, wait_for_port
from relais_kit.envelope import event_type
from relais_kit.runtime import until_ready
from relais_notifications.adapters.kannel import dlr_secret
from relais_notifications.app import create_app
from relais_notifications.domain.model import delivery_id
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

DELIVERED = event_type("notification.delivered")
FAILED = event_type("notification.failed")

pytestmark = pytest.mark.skipif(not installed(), reason="Kannel not installed (deploy/kannel/install-kannel.sh)")


class RunningKannel:
    def __init__(self, directory: Path) -> None:
        self.kannel = Kannel(directory, KannelPorts(free_port(), free_port(), free_port(), free_port()))
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.directory = directory

    def log(self, name: str) -> str:
        return (self.directory / f"{name}.log").read_text(encoding="utf-8", errors="replace")

    def start(self, *names: str) -> None:
        commands = self.kannel.commands()
        for name in names or tuple(commands):
            with (self.directory / f"{name}.log").open("ab") as out:
                self.processes[name] = subprocess.Popen(commands[name], stdout=out, stderr=subprocess.STDOUT,
                                                        stdin=subprocess.DEVNULL, start_new_session=True)
            if name == "bearerbox":
                wait_for_port(self.kannel.ports.smsbox)
                wait_for_port(self.kannel.ports.smsc)
            elif name == "smsbox":
                wait_for_port(self.kannel.ports.sendsms)

    def stop(self, *names: str) -> None:
        for name in names or ("fakesmsc", "smsbox", "bearerbox"):
            proc = self.processes.pop(name, None)
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


@pytest.fixture
def kannel(tmp_path: Path) -> Iterator[RunningKannel]:
    running = RunningKannel(tmp_path / "kannel")
    running.kannel.write()
    try:
        running.start()
        yield running
    finally:
        running.stop()


@asynccontextmanager
async def served(monkeypatch: pytest.MonkeyPatch, database_url: str, kafka_bootstrap: str,
                 kannel: RunningKannel) -> AsyncIterator[str]:
    """The notifications service on a real port (Kannel calls it back); its URL."""
    port = free_port()
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
        await eventually(lambda: _started(server), timeout=60.0, what="the service to listen")
        await until_ready(app)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)


async def _started(server: uvicorn.Server) -> bool:
    return server.started


async def _maybe_row(db: asyncpg.Connection, notification_id: uuid.UUID) -> asyncpg.Record | None:
    return await db.fetchrow("SELECT * FROM notifications.deliveries WHERE id = $1", notification_id)


async def _row(db: asyncpg.Connection, notification_id: uuid.UUID) -> asyncpg.Record:
    row = await _maybe_row(db, notification_id)
    assert row is not None
    return row


async def test_sms_through_kannel_delivered_then_a_failed_report(
        monkeypatch: pytest.MonkeyPatch, database_url: str, kafka_bootstrap: str, kannel: RunningKannel) -> None:
    async with served(monkeypatch, database_url, kafka_bootstrap, kannel) as url:
        db = await asyncpg.connect(database_url)
        try:
            by_sms = answered_event(answered_data(channel="sms"))
            sms_id = delivery_id(by_sms.id, "citizen")
            await produce(kafka_bootstrap, by_sms)

            async def delivered() -> asyncpg.Record | None:
                row = await _maybe_row(db, sms_id)
                return row if row is not None and row["delivered_at"] is not None else None

            row = await eventually(delivered, timeout=60.0, what="the delivery report of the SMS")
            assert (row["status"], row["report"]) == ("sent", "delivered")
            # fakesmsc, the operator, got it from the sender name, to the number, readable.
            received = kannel.log("fakesmsc")
            assert "Got message" in received and "FranceSvcs +33612345678 text " in received
            assert "rendez-vous le mardi 25/03 à 10h30" in received

            records = await read_topic(kafka_bootstrap, "notifications", lambda rs: any(
                header_map(r)["ce_type"] == DELIVERED and r.key.decode() == by_sms.subject for r in rs))
            told = [r for r in records if r.key.decode() == by_sms.subject and header_map(r)["ce_type"] == DELIVERED]
            assert len(told) == 1
            payload = json.loads(told[0].value)
            contract.check(DELIVERED, payload)
            assert (payload["notification_id"], payload["channel"]) == (str(sms_id), "sms")

            async with httpx.AsyncClient(base_url=url) as client:
                secret = kannel.kannel.dlr_secret
                # The same report again (Kannel retrying): nothing changes, nothing more told.
                again = await client.get("/kannel/dlr", params={"id": str(sms_id), "type": "1",
                                                                "secret": dlr_secret(secret, sms_id)})
                assert again.status_code == 200
                # A failure after delivery is ignored: the telephone has it.
                late = await client.get("/kannel/dlr", params={"id": str(sms_id), "type": "16",
                                                               "secret": dlr_secret(secret, sms_id)})
                assert late.status_code == 200
                assert (await _row(db, sms_id))["status"] == "sent"
                # Forged callbacks: no secret, another delivery's secret, an unknown delivery.
                for params, code in (({"id": str(sms_id), "type": "2"}, 403),
                                     ({"id": str(sms_id), "type": "2", "secret": dlr_secret(secret, uuid.uuid4())},
                                      403),
                                     ({"id": str(sms_id), "type": "2", "secret": "0" * 32}, 403)):
                    refused = await client.get("/kannel/dlr", params=params)
                    assert refused.status_code == code
                    assert str(sms_id) not in refused.text
                unknown = uuid.uuid4()
                missing = await client.get("/kannel/dlr", params={"id": str(unknown), "type": "1",
                                                                  "secret": dlr_secret(secret, unknown)})
                assert missing.status_code == 404
                assert (await _row(db, sms_id))["status"] == "sent"

                # The operator gone: Kannel queues the next SMS, no report comes. Then the
                # operator reports it rejected (16), as Kannel would call us.
                kannel.stop("fakesmsc")
                second = answered_event(answered_data(channel="sms"))
                second_id = delivery_id(second.id, "citizen")
                await produce(kafka_bootstrap, second)

                async def sent() -> asyncpg.Record | None:
                    row = await _maybe_row(db, second_id)
                    return row if row is not None and row["status"] == "sent" else None

                await eventually(sent, timeout=60.0, what="the second SMS handed to Kannel")
                rejected = await client.post("/kannel/dlr", params={"id": str(second_id), "type": "16",
                                                                    "secret": dlr_secret(secret, second_id)})
                assert rejected.status_code == 200
                row = await _row(db, second_id)
                assert (row["status"], row["report"], row["delivered_at"]) == ("failed", "rejected", None)
                assert row["reason"] == "l'opérateur téléphonique a refusé le SMS (numéro invalide ?)"

            records = await read_topic(kafka_bootstrap, "notifications", lambda rs: any(
                header_map(r)["ce_type"] == FAILED and r.key.decode() == second.subject for r in rs))
            failed = [json.loads(r.value) for r in records
                      if r.key.decode() == second.subject and header_map(r)["ce_type"] == FAILED]
            assert len(failed) == 1
            contract.check(FAILED, failed[0])
            assert failed[0]["reason"] == row["reason"]
        finally:
            await db.close()
