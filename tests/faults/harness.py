"""What the fault tests share: a paced driver that refers citizens through the HTTP API
while a fault happens, and the reconciliation afterwards (referral database, the
notifications schema, the mailbox, the `notifications` topic) into a report of lost
and duplicated items.

How a POST whose answer was lost is handled. Creating a visit or a referral is not
idempotent in the API (no client-chosen id), and a request cut by a kill -9 may or
may not have committed. So every referral *attempt* gets an identity of its own that
can be found afterwards: a fresh visit with a citizen e-mail unique to the attempt
(`<tag>.<item>.<attempt>@example.fr`). When a referral POST fails without a definite
answer, the driver starts a new attempt (new visit, new e-mail) instead of re-posting.
Afterwards the referrals are read from the referral database and reconciled by that
e-mail: every referral there whose citizen carries our tag is expected to be
answered and notified exactly once, whether or not the driver saw its 201 (those it
did not see are reported as "created, answer lost"). Each e-mail belongs to at most
one referral, so mails are matched to referrals by recipient address. A visit POST is
simply retried: an orphan visit without a referral is harmless."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from email.utils import parseaddr
from typing import Any

import asyncpg
import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition

from deploy.local.launcher import TOPICS_FILE, LocalPlatform, log_tail
from relais_kit.runtime import open_vault
from relais_kit.settings import PlatformSettings
from relais_kit.topics import load_topics
from relais_referral.adapters.sealed import VISIT_CITIZEN

SITE = "agen-leon-blum-poste"
PROCEDURES = {"caf": "caf.prime-activite", "ants": "ants.carte-grise.changement-adresse",
              "dgfip": "dgfip.declaration-revenus", "cnam": "cnam.carte-vitale"}
LIFECYCLE = ("requested", "routed", "acknowledged", "answered")
# The moments the citizen is told of (the notifications service's MOMENTS): one mail,
# one delivery and one notification.sent each.
TOLD_MOMENTS = ("routed", "info_requested", "answered", "rejected")
SENT = "fr.franceservices.notification.sent.v1"
RETRYABLE_STATUS = {500, 502, 503, 504}
SHUN_S = 5.0


class Abandoned(Exception):
    """A request kept failing past the driver's patience."""


@dataclass
class Submitted:
    item: int
    attempt: int
    email: str
    operator: str
    referral_id: str


@dataclass
class DriverStats:
    visit_retries: int = 0
    referral_uncertain: int = 0  # referral POSTs without a definite answer (a new attempt followed)
    abandoned_items: list[int] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)


class Progress:
    """How many items have their referral created (201 seen); waitable."""

    def __init__(self) -> None:
        self.count = 0
        self._changed = asyncio.Condition()

    async def bump(self) -> None:
        async with self._changed:
            self.count += 1
            self._changed.notify_all()

    async def reached(self, n: int) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: self.count >= n)


def email_of(tag: str, item: int, attempt: int) -> str:
    return f"{tag}.{item}.{attempt}@example.fr"


class Driver:
    """Refers `n` citizens at `rate` per second, at most `concurrency` in flight, and
    rides through the API being down (connection refused, cut, 5xx) with backoff.
    Given several clients (one per instance of the referral service), it spreads the
    items over them and moves to the next one after a failure."""

    def __init__(self, api: httpx.AsyncClient | Sequence[httpx.AsyncClient], tag: str, *, n: int = 300,
                 rate: float = 20.0, concurrency: int = 8, patience_s: float = 90.0) -> None:
        self.apis = [api] if isinstance(api, httpx.AsyncClient) else list(api)
        self.api = self.apis[0]
        self._shunned_until = [0.0] * len(self.apis)  # a client that just failed rests a while
        self.tag = tag
        self.n = n
        self.rate = rate
        self.concurrency = concurrency
        self.patience_s = patience_s
        self.submitted: list[Submitted] = []
        self.stats = DriverStats()
        self.progress = Progress()
        self.elapsed_s = 0.0

    async def run(self) -> None:
        operators = list(PROCEDURES)
        slots = asyncio.Semaphore(self.concurrency)
        tasks: list[asyncio.Task[None]] = []
        began = time.monotonic()

        async def one(item: int) -> None:
            try:
                await self._refer(item, operators[item % len(operators)])
            except Abandoned as exc:
                self.stats.abandoned_items.append(item)
                self.stats.errors[f"abandoned: {exc}"] += 1
            finally:
                slots.release()

        for item in range(self.n):
            await asyncio.sleep(max(0.0, began + item / self.rate - time.monotonic()))
            await slots.acquire()
            tasks.append(asyncio.create_task(one(item)))
        await asyncio.gather(*tasks)
        self.elapsed_s = time.monotonic() - began

    async def _refer(self, item: int, operator: str) -> None:
        deadline = time.monotonic() + self.patience_s
        attempt = 0
        while True:
            email = email_of(self.tag, item, attempt)
            visit = await self._post("/api/v1/visits", {
                "site_id": SITE, "channel": "in_person",
                "citizen": {"given_name": "Camille", "family_name": f"Faute-{item}", "birth_date": "1990-03-14",
                            "contact": {"channel": "email", "email": email, "postal_address": {
                                "street": "3 rue des Lilas", "postcode": "47000", "city": "Agen"}}}},
                deadline, retry=True,
                turn=item + attempt)
            assert visit is not None
            created = await self._post(f"/api/v1/visits/{visit['visit_id']}/referrals", {
                "operator": operator, "procedure": PROCEDURES[operator],
                "summary": f"Demande n° {item} (essai {attempt}) : besoin d’un conseiller expert.",
                "consent": {"given": True}}, deadline, retry=False, turn=item + attempt)
            if created is not None:
                assert created["status"] == "requested", created
                self.submitted.append(Submitted(item, attempt, email, operator, created["referral_id"]))
                await self.progress.bump()
                return
            # No definite answer: that referral may exist. Never re-post it: a new
            # attempt with a new visit and e-mail; the reconciliation finds both.
            self.stats.referral_uncertain += 1
            attempt += 1

    def _pick(self, turn: int) -> int:
        """The client of this turn, or the next one not resting after a failure."""
        n = len(self.apis)
        for k in range(n):
            if self._shunned_until[(turn + k) % n] <= time.monotonic():
                return (turn + k) % n
        return turn % n

    async def _post(self, path: str, body: dict[str, Any], deadline: float, *,
                    retry: bool, turn: int = 0) -> dict[str, Any] | None:
        """The 201's body; None (retry=False) or retries (retry=True) when the answer is
        not definite (transport error, 5xx). Any other status is a failure of the test.
        `turn` picks the client; each retry takes the next one."""
        delay = 0.1
        while True:
            index = self._pick(turn)
            turn = index + 1
            try:
                response = await self.apis[index].post(path, json=body)
                if response.status_code == 201:
                    return response.json()  # type: ignore[no-any-return]
                if response.status_code not in RETRYABLE_STATUS:
                    raise AssertionError(f"POST {path} answered {response.status_code}: {response.text[:300]}")
                self.stats.errors[f"HTTP {response.status_code}"] += 1
            except httpx.TransportError as exc:
                self.stats.errors[type(exc).__name__] += 1
                self._shunned_until[index] = time.monotonic() + SHUN_S
            if not retry:
                return None
            self.stats.visit_retries += 1
            if time.monotonic() > deadline:
                raise Abandoned(f"POST {path} still failing after {self.patience_s:.0f}s")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)


async def retrying(what: str, call: Callable[[], Awaitable[httpx.Response]], timeout: float = 60.0) -> httpx.Response:
    """A call that must end in 2xx, retried on transport errors and 5xx until `timeout`."""
    deadline = time.monotonic() + timeout
    last = ""
    while True:
        try:
            response = await call()
            if response.status_code < 300:
                return response
            last = f"HTTP {response.status_code} {response.text[:200]}"
            if response.status_code < 500 and response.status_code != 422:
                raise AssertionError(f"{what}: {last}")
        except httpx.TransportError as exc:
            last = repr(exc)
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: still failing after {timeout:.0f}s ({last})")
        await asyncio.sleep(0.25)


async def signed_in_client(platform: LocalPlatform, base_url: str | None = None) -> httpx.AsyncClient:
    """An API client signed in as the demo adviser, once the demo site has reached
    the referral service (through the `sites` topic)."""
    api = httpx.AsyncClient(base_url=base_url or platform.referral_url, timeout=10.0,
                            limits=httpx.Limits(max_connections=16, max_keepalive_connections=16))
    token = await retrying("sign in", lambda: api.post(
        "/api/v1/auth/token", data={"username": "demo-adviser", "password": "demo"}))
    api.headers["Authorization"] = f"Bearer {token.json()['access_token']}"
    await retrying(f"site {SITE} known to the referral service", lambda: api.post("/api/v1/visits", json={
        "site_id": SITE, "channel": "in_person",
        "citizen": {"given_name": "Essai", "family_name": "Sonde", "contact": {"channel": "none"}}}))
    return api


# ---------------------------------------------------------------------- the outcome


@dataclass
class Observed:
    """Everything read back after the run, keyed by referral id."""

    referrals: dict[str, dict[str, Any]]          # id -> {email, status, item, attempt}
    timelines: dict[str, Counter[str]]             # id -> transition/fact -> count
    deliveries: dict[str, list[str]]               # id -> statuses of its citizen deliveries
    pending_deliveries: int
    unpublished: dict[str, int]                    # schema -> outbox rows not yet published
    mails: Counter[str]                            # recipient address -> mails
    sent_records: dict[str, Counter[str]] = field(default_factory=dict)  # id -> ce_id -> records
    mail_repeats: int = 0                          # same mail (same Message-ID) received again


async def read_database(dsn: str, tag: str) -> Observed:
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        # The citizen's contact is sealed at rest: opened with the platform's data keys.
        vault = open_vault(PlatformSettings(), "referral")
        rows = await conn.fetch(
            "SELECT r.referral_id::text AS id, r.status, v.visit_id::text AS visit_id, v.citizen"
            " FROM referral.referrals r JOIN referral.visits v USING (visit_id) WHERE v.citizen IS NOT NULL")
        referrals: dict[str, dict[str, Any]] = {}
        for row in rows:
            email = json.loads(vault.open(row["citizen"], VISIT_CITIZEN.context(row["visit_id"]))).get("email")
            if not email or not email.startswith(f"{tag}."):
                continue
            _, item, attempt = email.split("@")[0].rsplit(".", 2)
            referrals[row["id"]] = {"email": email, "status": row["status"],
                                    "item": int(item), "attempt": int(attempt)}
        timelines: dict[str, Counter[str]] = defaultdict(Counter)
        for row in await conn.fetch(
                "SELECT referral_id::text AS id, coalesce(status, event) AS what, count(*) AS n"
                " FROM referral.referral_timeline GROUP BY 1, 2"):
            if row["id"] in referrals:
                timelines[row["id"]][row["what"]] = row["n"]
        deliveries: dict[str, list[str]] = defaultdict(list)
        for row in await conn.fetch(
                "SELECT referral_id::text AS id, status FROM notifications.deliveries WHERE recipient = 'citizen'"):
            deliveries[row["id"]].append(row["status"])
        pending = await conn.fetchval("SELECT count(*) FROM notifications.deliveries WHERE status = 'pending'")
        unpublished = {}
        for schema in ("referral", "sites", "notifications"):
            unpublished[schema] = await conn.fetchval(
                f"SELECT count(*) FROM {schema}.outbox WHERE published_at IS NULL")
    finally:
        await conn.close()
    return Observed(referrals, dict(timelines), dict(deliveries), pending, unpublished, Counter())


def _mail_heads(platform: LocalPlatform) -> list[tuple[str, str]]:
    """(recipient, Message-ID) of every mail the mailbox kept (the file name when a
    mail has no Message-ID)."""
    found = []
    for path in platform.mailbox.files():
        with contextlib.suppress(OSError):
            with path.open("rb") as f:
                head = f.read(4096).decode("utf-8", errors="replace")
            to, message_id = "", path.name
            for line in head.splitlines():
                if line.lower().startswith("to:") and not to:
                    to = parseaddr(line[3:].strip())[1].lower()
                elif line.lower().startswith("message-id:"):
                    message_id = line.split(":", 1)[1].strip()
            if to:
                found.append((to, message_id))
    return found


def read_mails(platform: LocalPlatform) -> Counter[str]:
    """Mails per recipient, as the citizen's mail system shows them: one per
    Message-ID. A delivery whose sender died after the SMTP server accepted it and
    before it was marked sent goes out again with the same Message-ID (see the
    notifications service's delivery loop): counted in `mail_repeats`, not here."""
    return Counter(to for to, _ in set(_mail_heads(platform)))


def mail_repeats(platform: LocalPlatform) -> int:
    heads = _mail_heads(platform)
    return len(heads) - len(set(heads))


async def signed_in_clients(platform: LocalPlatform) -> list[httpx.AsyncClient]:
    """One client per instance of the referral service, each signed in on its own
    instance (sessions are in PostgreSQL: any instance could check any token)."""
    return [await signed_in_client(platform, url) for url in platform.urls("referral")]


async def read_sent_records(bootstrap: str, referral_ids: set[str], timeout: float = 30.0,
                            security: Any = None) -> dict[str, Counter[str]]:
    """Every `notification.sent` record on `notifications`, from the beginning to the
    end offsets of now, without a consumer group (nothing to join, nothing deduped)."""
    from relais_kit import kafka

    consumer = AIOKafkaConsumer(**kafka.connection(bootstrap, security), enable_auto_commit=False,
                                auto_offset_reset="earliest", fetch_max_wait_ms=50)
    await consumer.start()
    found: dict[str, Counter[str]] = defaultdict(Counter)
    try:
        spec = next(t for t in load_topics(TOPICS_FILE).topics if t.name == "notifications")
        partitions = [TopicPartition("notifications", p) for p in range(spec.partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        deadline = time.monotonic() + timeout
        while [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
            if time.monotonic() > deadline:
                raise AssertionError("could not read the notifications topic to its end")
            for records in (await consumer.getmany(timeout_ms=200, max_records=1000)).values():
                for r in records:
                    headers = {k: v.decode() for k, v in r.headers}
                    if headers.get("ce_type") == SENT and r.key and r.key.decode() in referral_ids:
                        found[r.key.decode()][headers.get("ce_id", "")] += 1
    finally:
        await consumer.stop()
    return dict(found)


def told(o: Observed, referral_id: str) -> int:
    """How many messages the citizen of this referral is owed: one per moment reached."""
    timeline = o.timelines.get(referral_id, Counter())
    return sum(1 for moment in TOLD_MOMENTS if timeline[moment])


def settled(o: Observed) -> tuple[bool, str]:
    """Nothing left in flight: every referral answered and noted as notified of each
    moment, every citizen delivery settled, every outbox published, a mail for each."""
    answered = sum(1 for r in o.referrals.values() if r["status"] == "answered")
    owed = {i: max(told(o, i), 1) for i in o.referrals}  # at least the answer, once it is there
    noted = sum(1 for i in o.referrals if o.timelines.get(i, Counter())["notification.sent"] >= owed[i])
    delivered = sum(1 for i in o.referrals
                    if len(o.deliveries.get(i, [])) >= owed[i] and "pending" not in o.deliveries.get(i, []))
    mailed = sum(1 for i, r in o.referrals.items() if o.mails[r["email"]] >= owed[i])
    n = len(o.referrals)
    done = (answered == noted == delivered == mailed == n and o.pending_deliveries == 0
            and not any(o.unpublished.values()))
    return done, (f"{n} referrals: {answered} answered, {delivered} delivered, {mailed} mailed, "
                  f"{noted} noted as notified; {o.pending_deliveries} pending deliveries; "
                  f"unpublished outbox {o.unpublished}")


async def settle(platform: LocalPlatform, tag: str, timeout: float = 120.0) -> tuple[Observed, float, str]:
    began = time.monotonic()
    deadline = began + timeout
    while True:
        try:
            observed = await read_database(platform.database_url, tag)
            observed.mails = read_mails(platform)
            observed.mail_repeats = mail_repeats(platform)
            done, state = settled(observed)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            done, state = False, f"database not readable: {exc!r}"
        if done or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    observed.sent_records = await read_sent_records(platform.bootstrap, set(observed.referrals),
                                                    security=getattr(platform, "kafka_security", None))
    return observed, time.monotonic() - began, state


@dataclass
class Report:
    scenario: str
    items: int
    submitted: int
    counts: dict[str, int]
    examples: dict[str, list[str]]
    notes: list[str]

    @property
    def bad(self) -> dict[str, int]:
        return {k: v for k, v in self.counts.items() if k in ZERO and v}

    def text(self) -> str:
        width = max(len(k) for k in self.counts)
        lines = [f"=== fault scenario: {self.scenario}"]
        lines += [f"  {k:<{width}}  {v}" for k, v in self.counts.items()]
        lines += [f"  {k}: {', '.join(v[:5])}" for k, v in self.examples.items() if v]
        lines += [f"  note: {n}" for n in self.notes]
        lines.append(f"  => {'OK: nothing lost, nothing duplicated' if not self.bad else f'FAILED: {self.bad}'}")
        return "\n".join(lines)


ZERO = ("items without a referral", "lost (not answered)", "201 seen but not in the database",
        "duplicated transitions", "citizen deliveries missing", "citizen deliveries duplicated",
        "mails missing", "mails duplicated", "mails to unknown addresses",
        "notification.sent missing", "notification.sent duplicated", "timeline notification notes duplicated")


def reconcile(scenario: str, driver: Driver, o: Observed) -> Report:
    ids = set(o.referrals)
    seen_201 = {s.referral_id for s in driver.submitted}
    items_with_referral = {r["item"] for r in o.referrals.values()}
    examples: dict[str, list[str]] = defaultdict(list)

    lost = [i for i, r in o.referrals.items() if r["status"] != "answered"]
    examples["lost"] = [f"{i} ({o.referrals[i]['status']})" for i in lost]
    dup_transitions = 0
    for i in ids:
        for step in LIFECYCLE:
            extra = o.timelines.get(i, Counter())[step] - 1
            if extra > 0:
                dup_transitions += extra
                examples["duplicated transitions"].append(f"{i}:{step}x{extra + 1}")
    owed = {i: told(o, i) for i in ids}
    deliveries_missing = [i for i in ids if len(o.deliveries.get(i, [])) < owed[i]]
    deliveries_dup = [i for i in ids if len(o.deliveries.get(i, [])) > owed[i]]
    owed_mails = {r["email"]: owed[i] for i, r in o.referrals.items()}
    our_mails = {r["email"]: o.mails[r["email"]] for r in o.referrals.values()}
    mails_missing = [e for e, n in our_mails.items() if n < owed_mails[e]]
    mails_dup = sum(n - owed_mails[e] for e, n in our_mails.items() if n > owed_mails[e])
    examples["mails duplicated"] = [f"{e} x{n}" for e, n in our_mails.items() if n > owed_mails[e]]
    unknown = sum(n for a, n in o.mails.items() if a.startswith(f"{driver.tag}.") and a not in our_mails)
    sent_missing = [i for i in ids if len(o.sent_records.get(i, {})) < owed[i]]
    sent_dup = sum(len(c) - owed[i] for i, c in o.sent_records.items() if i in owed and len(c) > owed[i])
    examples["notification.sent duplicated"] = [f"{i} ce_ids={sorted(c)}" for i, c in o.sent_records.items()
                                                if i in owed and len(c) > owed[i]]
    redelivered = sum(n - 1 for c in o.sent_records.values() for n in c.values() if n > 1)
    notes_dup = sum(max(0, o.timelines.get(i, Counter())["notification.sent"] - owed[i]) for i in ids)

    counts = {
        "items driven": driver.n,
        "referrals submitted (201 seen)": len(seen_201),
        "referrals created, answer lost": len(ids - seen_201),
        "referrals in the database": len(ids),
        "answered": len(ids) - len(lost),
        "items without a referral": driver.n - len(items_with_referral),
        "lost (not answered)": len(lost),
        "201 seen but not in the database": len(seen_201 - ids),
        "duplicated transitions": dup_transitions,
        "citizen deliveries missing": len(deliveries_missing),
        "citizen deliveries duplicated": len(deliveries_dup),
        "mails missing": len(mails_missing),
        "mails duplicated": mails_dup,
        "mails to unknown addresses": unknown,
        "mails re-sent with the same Message-ID (shown once)": o.mail_repeats,
        "notification.sent missing": len(sent_missing),
        "notification.sent duplicated": sent_dup,
        "notification.sent redelivered (harmless)": redelivered,
        "timeline notification notes duplicated": notes_dup,
    }
    examples["mails missing"] = mails_missing
    examples["notification.sent missing"] = sent_missing
    notes = [f"driver: {driver.n} items in {driver.elapsed_s:.1f}s; {driver.stats.visit_retries} retried "
             f"visit POSTs, {driver.stats.referral_uncertain} referral POSTs without a definite answer; "
             f"errors seen {dict(driver.stats.errors)}"]
    return Report(scenario, driver.n, len(seen_201), counts, dict(examples), notes)


def dump_logs(platform: LocalPlatform, lines: int = 60) -> str:
    parts = []
    for name in [*platform.processes, "mailbox"]:
        path = platform.log_path(name)
        if path.exists():
            parts.append(f"--- last {lines} lines of {path}:\n{log_tail(path, lines)}")
    return "\n".join(dict.fromkeys(parts))


def sigterm_stop_times(platform: LocalPlatform, limit_s: float = 15.0) -> dict[str, float]:
    """Stops the simulator and the services one by one with SIGTERM, timing each (a
    child still running after `limit_s` is killed and reported as such)."""
    import signal
    import subprocess

    timings: dict[str, float] = {}
    for name in ("simulator", "referral", "sites", "notifications"):
        proc = platform.processes.get(name)
        if proc is None or proc.poll() is not None:
            continue
        began = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(limit_s)
            timings[name] = round(time.monotonic() - began, 2)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            timings[name] = float("inf")
    return timings


def jsonable(report: Report) -> str:
    return json.dumps({"scenario": report.scenario, "counts": report.counts}, ensure_ascii=False)
