"""The citizen's rights end to end: the ops commands of the referral service
(`python -m relais_referral.privacy access|erase`) with the real notifications service
in-process, on a real PostgreSQL and the real broker. Access exports everything held
here and gathers the notifications service's part through `privacy`, sealed for the
command's one-off key; erasure is refused while a referral is in progress, then done
here and asked of the notifications service, whose `erased` answer the command awaits."""

from __future__ import annotations

import io
import json
import stat
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import pytest
import pytest_asyncio

from relais_kit.embedded import free_port
from relais_kit.runtime import until_ready
from relais_notifications.app import create_app as notifications_app
from relais_notifications.settings import NotificationsSettings
from relais_referral import privacy
from tests.referral_app import (
    SITE,
    citizen_visit,
    open_visit,
    operator_says,
    privacy_command,
    refer_visit,
    referral_api,
    status_is,
)
from tests.support import TopicReader, eventually, of_type, produce

pytestmark = pytest.mark.asyncio(loop_scope="module")
QUESTION = "Pouvez-vous joindre la notification de la caisse de retraite ?"
TO_CITIZEN = "Madame Ferrandière, votre prime est recalculée."


@dataclass
class Platform:
    api: httpx.AsyncClient  # the referral service's, signed in as the demo adviser
    db: asyncpg.Connection
    bootstrap: str


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def platform(module_database_url: str, kafka_bootstrap: str,
                   tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Platform]:
    settings = NotificationsSettings(  # the SMTP server is down: mails stay pending
        DATABASE_URL=module_database_url, KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap, RELAIS_SMTP_PORT=free_port(),
        RELAIS_SMTP_TIMEOUT_S=5, RELAIS_SMS_SPOOL=tmp_path_factory.mktemp("sms"),
        RELAIS_NOTIFICATIONS_MAX_ATTEMPTS=1000, RELAIS_NOTIFICATIONS_RETRY_BASE_S=0.05,
        RELAIS_NOTIFICATIONS_RETRY_MAX_S=2, RELAIS_NOTIFICATIONS_POLL_S=0.5)  # type: ignore[call-arg]
    notifications = notifications_app(settings)
    async with notifications.router.lifespan_context(notifications):
        await until_ready(notifications)
        await produce(kafka_bootstrap, "sites", "site.upserted", SITE, subject=SITE["site_id"],
                      source="/relais/sites")
        async with referral_api(module_database_url, kafka_bootstrap) as api:
            db = await asyncpg.connect(module_database_url)
            try:
                yield Platform(api, db, kafka_bootstrap)
            finally:
                await db.close()


async def answered(p: Platform, visit_id: str, *, close: bool) -> str:
    """A referral of the visit, answered by the CAF (the notifications service holds its
    deliveries), then closed if `close`."""
    referral_id = await refer_visit(p.api, visit_id, summary="Madame Ferrandière demande le recalcul de sa prime.")
    await operator_says(p.bootstrap, "operator.info_requested", referral_id, question=QUESTION)
    await eventually(lambda: status_is(p.api, referral_id, "info_requested"), what="info_requested")
    assert (await p.api.post(f"/api/v1/referrals/{referral_id}/info", json={"message": "Pièce jointe."})).is_success
    await operator_says(p.bootstrap, "operator.answered", referral_id, outcome="resolved",
                        message_to_citizen=TO_CITIZEN, message_to_adviser="Recalcul fait.")
    await eventually(lambda: status_is(p.api, referral_id, "answered"), what="answered")
    async def all_told() -> bool:  # sent, information asked, answered
        return len(await deliveries(p, referral_id)) == 3

    await eventually(all_told, timeout=45, what="the deliveries stored")
    if close:
        assert (await p.api.post(f"/api/v1/referrals/{referral_id}/close", json={"outcome": "resolved"})).is_success
    return referral_id


async def deliveries(p: Platform, referral_id: str) -> list[asyncpg.Record]:
    return await p.db.fetch("SELECT * FROM notifications.deliveries WHERE referral_id = $1 AND recipient = 'citizen'",
                            uuid.UUID(referral_id))


async def test_access_exports_everything_held_with_the_other_services_part(platform: Platform, tmp_path: Path) -> None:
    p = platform
    email = "annette.ferrandiere@example.org"
    visit_id = await open_visit(p.api, citizen_visit("Annette", "Ferrandière", birth_date="1957-09-30", email=email))
    referral_id = await answered(p, visit_id, close=True)
    await p.api.get(f"/api/v1/referrals/{referral_id}")  # a view, audited

    out = tmp_path / "export.json"
    code, printed = await privacy_command(p.api, "access", "--by", "ops.access", "--email", email,
                                          "--out", str(out), "--timeout", "45")
    assert code == 0, printed
    assert "notifications: answered" in printed and visit_id in printed and "Ferrandi" not in printed
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    export = json.loads(out.read_text())
    [visit] = export["referral"]["visits"]
    assert visit["visit_id"] == visit_id and visit["citizen"]["email"] == email
    assert visit["citizen"]["family_name"] == "Ferrandière" and visit["citizen"]["birth_date"] == "1957-09-30"
    [referral] = export["referral"]["referrals"]
    assert referral["referral_id"] == referral_id and referral["summary"].startswith("Madame Ferrandière")
    assert any(e["detail"].get("question") == QUESTION for e in referral["timeline"])
    assert {(a["user_id"], a["action"]) for a in referral["seen_or_changed_by"]} >= {
        ("demo-adviser", "refer"), ("demo-adviser", "view"), ("demo-adviser", "close")}
    records = export["services"]["notifications"]["records"]["deliveries"]
    # The notifications service's own copies: the citizen was told it was sent, asked, answered.
    told = [d for d in records if d["recipient"] == "citizen"]
    assert [d["subject"] for d in sorted(told, key=lambda d: d["created_at"])][:1] == [
        "Votre demande est envoyée à la CAF"]
    [mail] = [d for d in told if TO_CITIZEN in (d["body"] or "")]
    assert mail["referral_id"] == referral_id and email in mail["address"] and TO_CITIZEN in mail["body"]
    assert export["not_answered"] == {}
    recorded = await p.db.fetchrow("SELECT * FROM referral.privacy_requests WHERE requested_by = 'ops.access'")
    assert recorded["kind"] == "access" and recorded["selector"] == "email" and recorded["finished_at"]
    assert json.loads(recorded["answers"]) == {"notifications": "answered"}
    assert [str(v) for v in recorded["visit_ids"]] == [visit_id] and "Ferrandi" not in str(dict(recorded))

    # A service that does not answer is named, on the output and in the export.
    waiting_for_two = p.api.app.state.settings.model_copy(  # type: ignore[attr-defined]
        update={"privacy_services": "notifications,archives"})
    late = tmp_path / "late.json"
    printed_late = io.StringIO()
    code = await privacy.run(["access", "--by", "ops.access", "--visit", visit_id, "--out", str(late),
                              "--timeout", "8"], settings=waiting_for_two, out=printed_late)
    assert code == 3
    assert "archives: no answer" in printed_late.getvalue() and "notifications: answered" in printed_late.getvalue()
    assert json.loads(late.read_text())["not_answered"] == {"archives": "no answer"}

    code, printed = await privacy_command(p.api, "access", "--by", "ops.access", "--email", "nobody@example.org",
                                          "--out", str(tmp_path / "nothing.json"))
    assert code == 1 and json.loads((tmp_path / "nothing.json").read_text())["referral"] == {
        "visits": [], "referrals": []}


async def test_erasure_is_refused_while_a_referral_is_in_progress_then_done_everywhere(platform: Platform) -> None:
    p = platform
    phone = "06 70 80 90 10"
    first_visit = await open_visit(p.api, citizen_visit("Annette", "Ferrandière", birth_date="1957-09-30", phone=phone,
                                                        channel="sms"))
    done = await answered(p, first_visit, close=True)
    second_visit = await open_visit(p.api, citizen_visit("Annette", "Ferrandière", birth_date="1957-09-30",
                                                         phone="+33 6 70 80 90 10", channel="sms"))
    pending = await refer_visit(p.api, second_visit)

    code, printed = await privacy_command(p.api, "erase", "--by", "ops.erase", "--phone", phone,
                                          "--reason", "courrier de Mme F. du 2 avril")
    assert code == 2
    assert f"refused: referral {pending} is routed" in printed and done not in printed
    assert await summaries(p, done, pending) == [True, True]  # nothing erased

    assert (await p.api.post(f"/api/v1/referrals/{pending}/cancel", json={"reason": "Elle renonce."})).is_success
    code, printed = await privacy_command(p.api, "erase", "--by", "ops.erase", "--phone", phone,
                                          "--reason", "courrier de Mme F. du 2 avril", "--wait", "--timeout", "45")
    assert code == 0, printed
    assert "erased: 2 visit(s), 2 referral(s)" in printed and "notifications: erased" in printed
    assert await summaries(p, done, pending) == [False, False]
    citizens = await p.db.fetch("SELECT citizen, identity_index, contact_index FROM referral.visits"
                                " WHERE visit_id = ANY($1::uuid[])", [first_visit, second_visit])
    assert [tuple(r) for r in citizens] == [(None, None, None)] * 2
    erased = [(d["address"], d["body"], d["erased_at"] is not None) for d in await deliveries(p, done)]
    assert len(erased) == 3 and set(erased) == {(None, None, True)}  # sent, asked, answered: all erased

    requests = await p.db.fetch("SELECT * FROM referral.privacy_requests WHERE requested_by = 'ops.erase'"
                                " ORDER BY requested_at")
    assert [(r["kind"], json.loads(r["counts"])) for r in requests] == [
        ("erase", {"in_progress": 1}),
        ("erase", {"visits": 2, "referrals": 2, "outbox_rows": json.loads(requests[1]["counts"])["outbox_rows"]})]
    assert json.loads(requests[1]["answers"]) == {"notifications": "erased"}
    assert requests[1]["note"].startswith("rv1:")  # the reason ops gave, sealed
    request_id = str(requests[1]["request_id"])
    async with TopicReader(p.bootstrap, "privacy") as reader:
        records = await reader.until(lambda rs: any(r.key == request_id.encode()
                                                    for r in of_type(rs, "personal_data.erased")),
                                     what="the notifications service's answer")
    [asked] = [json.loads(r.value) for r in of_type(records, "personal_data.erasure_requested")
               if r.key == request_id.encode()]
    assert asked["reason"] == "erasure_request"
    assert sorted(asked["referral_ids"]) == sorted([done, pending])
    assert sorted(asked["visit_ids"]) == sorted([first_visit, second_visit])

    code, printed = await privacy_command(p.api, "find", "--by", "ops.erase", "--phone", phone)
    assert code == 1  # the blind indexes went with the rest


async def summaries(p: Platform, *referral_ids: str) -> list[bool]:
    rows = await p.db.fetch("SELECT summary IS NOT NULL AS held FROM referral.referrals"
                            " WHERE referral_id = ANY($1::uuid[]) ORDER BY array_position($1::uuid[], referral_id)",
                            list(referral_ids))
    return [r["held"] for r in rows]
