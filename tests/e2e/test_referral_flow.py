"""End to end: the three services as processes, the operator simulator, the real broker
and PostgreSQL, a real SMTP server. An adviser refers 50 citizens to three operators
through the HTTP API; every referral must come back answered, and every citizen must
get exactly one mail and be announced exactly once on the `notifications` topic.

One platform for the module (services start once); its database is a fresh one on the
test session's PostgreSQL server, its broker the module's (topics already created)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import parseaddr
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer, ConsumerRecord

from deploy.local.launcher import LocalPlatform

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

SITE = "agen-leon-blum-poste"
N = 50
BATCH = 10
DEADLINE_S = 120.0
PROCEDURES = {"caf": "caf.prime-activite", "ants": "ants.carte-grise.changement-adresse",
              "dgfip": "dgfip.declaration-revenus"}
LIFECYCLE = ["requested", "routed", "acknowledged", "answered"]
SENT = "fr.franceservices.notification.sent.v1"
# The moments each citizen here is told of: sent (with the status link), answered.
TOLD = 2


@dataclass(frozen=True)
class Referred:
    referral_id: str
    operator: str
    email: str


@dataclass
class Flow:
    platform: LocalPlatform
    token: str
    referrals: list[Referred]
    submitted_at: float

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@pytest.fixture(scope="module")
def platform(kafka_bootstrap: str, module_database_url: str,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPlatform]:
    data = Path(tmp_path_factory.mktemp("platform"))
    started = time.monotonic()
    with LocalPlatform(data, bootstrap=kafka_bootstrap, database_url=module_database_url, ports="free",
                       simulated_operators=None, demo_data=True) as p:
        print(f"platform ready in {time.monotonic() - started:.1f}s (logs in {p.log_dir})")
        yield p


async def deadline_poll(check: Any, what: str, timeout: float = DEADLINE_S, every: float = 0.25) -> Any:
    """Calls `check()` until it returns (result, done=True); fails with its last result."""
    deadline = time.monotonic() + timeout
    while True:
        result, done = await check()
        if done:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last: {result}")
        await asyncio.sleep(every)


def citizen(i: int, run: str) -> dict[str, Any]:
    return {"given_name": "Camille", "family_name": f"Martin-{i}", "birth_date": "1990-03-14",
            "contact": {"channel": "email", "email": f"camille.martin.{i}.{run}@example.fr",
                        "postal_address": {"street": "3 rue des Lilas", "postcode": "47000", "city": "Agen"}}}


class NotificationsTap:
    """Reads the `notifications` topic from the start with a fresh consumer group, in
    the background from before the first referral (joining a group takes seconds)."""

    def __init__(self, bootstrap: str) -> None:
        self.consumer = AIOKafkaConsumer(
            "notifications", bootstrap_servers=bootstrap, group_id=f"e2e-{uuid.uuid4().hex}",
            auto_offset_reset="earliest", enable_auto_commit=False,
            session_timeout_ms=10000, heartbeat_interval_ms=1000)
        self.records: list[ConsumerRecord] = []
        self.empty_polls = 0  # polls in a row that brought nothing
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Returns at once: the group is joined while the referrals are being made."""
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        await self.consumer.start()
        while True:
            batch = [r for rs in (await self.consumer.getmany(timeout_ms=300)).values() for r in rs]
            self.records += batch
            self.empty_polls = 0 if batch else self.empty_polls + 1

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.consumer.stop()

    async def sent_for(self, referral_ids: set[str], timeout: float) -> list[ConsumerRecord]:
        """The records, once each referral has its notification.sent of each moment told
        and the topic has been drained (two empty polls after that)."""

        async def check() -> tuple[str, bool]:
            per_referral = Counter(r.key.decode() for r in self.records if _type(r) == SENT and r.key)
            seen = {i for i, n in per_referral.items() if n >= TOLD}
            assert self._task is not None and not self._task.done(), "the reader stopped"
            return f"{len(referral_ids & seen)}/{len(referral_ids)} announced", \
                referral_ids <= seen and self.empty_polls >= 2

        await deadline_poll(check, "a notification.sent per referral and moment", timeout=timeout, every=0.1)
        return list(self.records)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def notifications_tap(platform: LocalPlatform) -> AsyncIterator[NotificationsTap]:
    tap = NotificationsTap(platform.bootstrap)
    tap.start()
    yield tap
    await tap.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def flow(platform: LocalPlatform, notifications_tap: NotificationsTap) -> Flow:
    """Signs in as the demo adviser and refers N citizens, BATCH at a time."""
    async with httpx.AsyncClient(base_url=platform.referral_url, timeout=30) as api:
        signed_in = await api.post("/api/v1/auth/token", data={"username": "demo-adviser", "password": "demo"})
        assert signed_in.status_code == 200, signed_in.text
        api.headers["Authorization"] = f"Bearer {signed_in.json()['access_token']}"

        # The demo sites reach the referral service through the `sites` topic: until
        # then, a visit at the demo site is refused with 422 naming site_id.
        async def site_known() -> tuple[str, bool]:
            probe = await api.post("/api/v1/visits", json={
                "site_id": SITE, "channel": "in_person",
                "citizen": {"given_name": "Essai", "family_name": "Sonde", "contact": {"channel": "none"}}})
            if probe.status_code == 422:
                assert "site_id" in probe.text, probe.text
            return f"{probe.status_code} {probe.text[:200]}", probe.status_code == 201

        began = time.monotonic()
        await deadline_poll(site_known, f"site {SITE} to reach the referral service", timeout=60)
        site_after = time.monotonic() - began

        run = uuid.uuid4().hex[:8]
        operators = list(PROCEDURES)

        async def refer(i: int) -> Referred:
            person = citizen(i, run)
            visit = await api.post("/api/v1/visits", json={"site_id": SITE, "channel": "in_person",
                                                           "citizen": person})
            assert visit.status_code == 201, visit.text
            operator = operators[i % len(operators)]
            created = await api.post(f"/api/v1/visits/{visit.json()['visit_id']}/referrals", json={
                "operator": operator, "procedure": PROCEDURES[operator],
                "summary": f"Demande n° {i} : la personne a besoin d’un conseiller expert.",
                "consent": {"given": True}})
            assert created.status_code == 201, created.text
            assert created.json()["status"] == "requested"
            return Referred(created.json()["referral_id"], operator, person["contact"]["email"])

        referred: list[Referred] = []
        for start in range(0, N, BATCH):
            referred += await asyncio.gather(*(refer(i) for i in range(start, min(start + BATCH, N))))
        print(f"demo site known to the referral service after {site_after:.1f}s; "
              f"{N} referrals submitted in {time.monotonic() - began - site_after:.1f}s")
        return Flow(platform, signed_in.json()["access_token"], referred, time.monotonic())


def recipient(message: EmailMessage) -> str:
    return parseaddr(str(message["To"]))[1].lower()


def mails_by_recipient(platform: LocalPlatform) -> dict[str, list[EmailMessage]]:
    found: dict[str, list[EmailMessage]] = {}
    for message in platform.mailbox.messages():
        found.setdefault(recipient(message), []).append(message)
    return found


def _type(record: ConsumerRecord) -> str:
    return dict(record.headers).get("ce_type", b"").decode()


async def test_fifty_referrals_are_answered_and_each_citizen_is_told_once(
        flow: Flow, notifications_tap: NotificationsTap) -> None:
    p = flow.platform
    ids = {r.referral_id for r in flow.referrals}
    assert len(ids) == N and len({r.email for r in flow.referrals}) == N
    assert Counter(r.operator for r in flow.referrals) == {"caf": 17, "ants": 17, "dgfip": 16}

    async with httpx.AsyncClient(base_url=p.referral_url, headers=flow.auth, timeout=30) as api:
        views: dict[str, dict[str, Any]] = {}

        async def all_answered() -> tuple[str, bool]:
            pending = [r for r in flow.referrals if views.get(r.referral_id, {}).get("status") != "answered"]
            for start in range(0, len(pending), BATCH):
                answers = await asyncio.gather(*(api.get(f"/api/v1/referrals/{r.referral_id}")
                                                 for r in pending[start:start + BATCH]))
                for answer in answers:
                    assert answer.status_code == 200, answer.text
                    views[answer.json()["referral_id"]] = answer.json()
            statuses = Counter(v["status"] for v in views.values())
            return f"statuses {dict(statuses)}", statuses["answered"] == N

        await deadline_poll(all_answered, f"{N} referrals answered", every=0.5)
    answered_after = time.monotonic() - flow.submitted_at

    for r in flow.referrals:
        view = views[r.referral_id]
        assert view["operator"] == r.operator and view["procedure"] == PROCEDURES[r.operator]
        assert view["site_id"] == SITE
        statuses = [e["status"] for e in view["timeline"] if e["status"] is not None]
        assert statuses == LIFECYCLE, (r.referral_id, view["timeline"])
        ats = [e["at"] for e in view["timeline"] if e["status"] is not None]
        assert ats == sorted(ats)

    emails = {r.email for r in flow.referrals}

    async def mails_each() -> tuple[str, bool]:
        mails = mails_by_recipient(p)
        got = {e for e in emails if len(mails.get(e, [])) >= TOLD}
        return f"{len(got)}/{N} citizens have their mails", got == emails

    await deadline_poll(mails_each, f"{TOLD} mails to each of the {N} citizens")
    mailed_after = time.monotonic() - flow.submitted_at
    records = await notifications_tap.sent_for(ids, timeout=DEADLINE_S)
    notified_after = time.monotonic() - flow.submitted_at

    # Exactly one mail per moment told (sent, answered), in French, about their operator,
    # the first with the status link; nothing else.
    mails = mails_by_recipient(p)
    for r in flow.referrals:
        assert len(mails[r.email]) == TOLD, f"{r.email} got {len(mails[r.email])} mails"
        subjects = sorted(str(m["Subject"]) for m in mails[r.email])
        assert any(s.startswith("Votre demande est envoyée à ") for s in subjects), subjects
        for message in mails[r.email]:
            body = message.get_body(preferencelist=("plain",))
            assert body is not None
            text = body.get_content()
            assert text.lstrip().startswith("Bonjour "), text
            assert "Bien cordialement" in text and "/suivi/" in text, text
            assert "demande" in str(message["Subject"]) or "rendez-vous" in str(message["Subject"])
    ours = [m for addr, ms in mails.items() if addr in emails for m in ms]
    assert len(ours) == TOLD * N
    assert len({m["Message-ID"] for m in ours}) == TOLD * N

    # Exactly one notification.sent per referral and moment on the `notifications` topic.
    sent = [r for r in records if _type(r) == SENT and r.key and r.key.decode() in ids]
    per_referral = Counter(r.key.decode() for r in sent)
    assert set(per_referral) == ids
    assert all(count == TOLD for count in per_referral.values()), per_referral.most_common(3)
    for record in sent:
        data = json.loads(record.value)
        assert data["referral_id"] == record.key.decode()
        assert (data["recipient"], data["channel"]) == ("citizen", "email")
    print(f"{N} referrals: all answered {answered_after:.1f}s after the last was submitted, "
          f"all mailed after {mailed_after:.1f}s, all events read after {notified_after:.1f}s")


async def test_the_citizens_mail_and_the_notifications_api_agree(flow: Flow) -> None:
    p = flow.platform
    chosen = flow.referrals[:: N // 5]  # five referrals, across the three operators
    async with httpx.AsyncClient(base_url=p.notifications_url, headers=flow.auth, timeout=30) as api:
        for r in chosen:
            async def delivered(r: Referred = r) -> tuple[Any, bool]:
                listed = await api.get("/api/v1/notifications", params={"referral_id": r.referral_id})
                assert listed.status_code == 200, listed.text
                citizen_side = [d for d in listed.json() if d["recipient"] == "citizen"]
                mail = mails_by_recipient(p).get(r.email, [])
                done = len(citizen_side) == TOLD and all(d["status"] == "sent" for d in citizen_side) \
                    and len(mail) == TOLD
                return (listed.json(), mail), done

            deliveries, mails = await deadline_poll(delivered, f"the deliveries of {r.referral_id}")
            citizen_side = [d for d in deliveries if d["recipient"] == "citizen"]
            adviser_side = [d for d in deliveries if d["recipient"] == "adviser"]
            assert len(citizen_side) == TOLD and len(mails) == TOLD
            # Each mail is one delivery: its Message-ID is derived from the delivery id.
            assert sorted(str(m["Message-ID"]) for m in mails) == sorted(
                f"<{d['id']}@france-services.example>" for d in citizen_side)
            for delivery in citizen_side:
                assert delivery["referral_id"] == r.referral_id
                assert delivery["channel"] == "email" and delivery["status"] == "sent"
                assert delivery["sent_at"] is not None and delivery["attempts"] >= 1
                assert delivery["message"] is None
            # The API never shows the citizen's address nor the text sent to them.
            assert r.email not in json.dumps(deliveries)
            # The adviser is told on their screen, with the operator's note.
            assert len(adviser_side) == 1 and adviser_side[0]["channel"] == "adviser_screen"
            assert adviser_side[0]["message"]


def samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Prometheus' text format, read by prometheus-client's own parser: name -> (labels, value)."""
    from prometheus_client.parser import text_string_to_metric_families

    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((sample.labels, sample.value))
    return found


def total(found: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str) -> float:
    return sum(value for have, value in found.get(name, ()) if labels.items() <= have.items())


async def test_every_process_tells_prometheus_what_the_flow_did_and_nothing_about_anyone(flow: Flow) -> None:
    p = flow.platform
    async with httpx.AsyncClient(timeout=30) as http:  # no token: scraped from inside the cluster
        scraped = {name: await http.get(f"{p.url(name)}/metrics") for name in ("referral", "sites", "notifications")}
    for name, answer in scraped.items():
        assert answer.status_code == 200, (name, answer.text[:200])
        assert answer.headers["content-type"].startswith("text/plain"), name
    referral = samples(scraped["referral"].text)
    notifications = samples(scraped["notifications"].text)
    by_operator = Counter(r.operator for r in flow.referrals)

    # HTTP, by route template: the 50 referrals were created through one route.
    assert total(referral, "http_server_request_duration_seconds_count", http_request_method="POST",
                 http_route="/api/v1/visits/{visit_id}/referrals", http_response_status_code="201") >= N
    # Messaging: every operator's answers were read and handled by the referral service...
    for operator, count in by_operator.items():
        topic = f"operator.{operator}.outbox"
        assert total(referral, "messaging_client_consumed_messages_total",
                     messaging_destination_name=topic) >= 2 * count, topic  # acknowledged + answered
        assert total(referral, "messaging_process_duration_seconds_count",
                     messaging_destination_name=topic, error_type="") >= 2 * count, topic
        assert total(referral, "messaging_client_sent_messages_total",
                     messaging_destination_name=f"operator.{operator}.inbox", error_type="") >= count
    assert total(referral, "relais_outbox_published_total", schema="referral") >= 4 * N
    assert total(notifications, "messaging_client_consumed_messages_total", messaging_destination_name="referrals") > 0
    assert total(notifications, "relais_consumer_last_processed_timestamp_seconds") > time.time() - 3600
    assert total(notifications, "relais_notification_deliveries_total", channel="email", outcome="sent") >= N
    assert total(notifications, "relais_notification_deliveries_total", outcome="failed") == 0
    for operator in by_operator:  # every referral was answered: nothing waits on an operator
        assert total(referral, "relais_operator_inbox_unacknowledged_referrals", operator=operator) == 0
    # ... every background loop healthy, nothing dead-lettered or parked.
    for name, answer in scraped.items():
        found = samples(answer.text)
        assert found["relais_loop_healthy"] and all(v == 1 for _, v in found["relais_loop_healthy"]), name
        assert total(found, "relais_dead_letters_total") == 0, name
        assert total(found, "relais_outbox_parked_rows") == 0, name
    # No label carries a referral id, nor anything about a citizen.
    everything = " ".join(answer.text for answer in scraped.values())
    for r in flow.referrals:
        assert r.referral_id not in everything and r.email not in everything


async def test_the_lag_of_every_consumer_group_is_measured_from_outside_and_ends_ok(flow: Flow) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        async def all_ok() -> tuple[Any, bool]:
            found = samples((await http.get(f"{flow.platform.url('ops')}/metrics")).text)
            status = {labels["group"]: labels["status"]
                      for labels, value in found.get("relais_consumergroup_status", ()) if value == 1}
            lag = {labels["group"]: value for labels, value in found.get("relais_consumergroup_max_lag_seconds", ())}
            measured = {"relais-referral-router", "relais-referral-operators"} <= set(status)
            caught_up = all(s == "OK" for s in status.values()) and all(v == 0 for v in lag.values())
            return (status, lag), measured and caught_up

        # Every referral was notified: each group ends with nothing unread, and says so.
        await deadline_poll(all_ok, "every consumer group OK and caught up once the flow is done")
