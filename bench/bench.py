"""`make bench`: N referrals through the whole platform (visit → needs expert →
operator inbox → answer → citizen notified) with the operator simulator, and, on the
same broker in the same run, a raw aiokafka produce→consume→produce baseline.

`--instances 1,2` (the default; BENCH_INSTANCES) runs the platform once per count of
processes per service and reports them side by side; the API load is spread over every
referral instance.

`--telemetry off,on` (the default; BENCH_TELEMETRY) runs the first count once per mode
and reports what metrics and tracing cost: `off` is RELAIS_METRICS=0 and no trace
exporter; `on` is as production runs, the per-event metrics counted and every span
exported over OTLP/HTTP (to a sink that only counts them: bench/otlp_sink.py). The other
counts run with telemetry on.

Prints throughput and p50/p95/p99 latencies and writes them as JSON."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from otlp_sink import OtlpSink  # noqa: E402  (beside this script)

from deploy.local.launcher import LocalPlatform  # noqa: E402
from relais_kit import kafka  # noqa: E402

OPERATORS = {"caf": "caf.prime-activite", "ants": "ants.carte-grise.changement-adresse",
             "dgfip": "dgfip.declaration-revenus"}


def percentiles(samples: list[float]) -> dict[str, float]:
    if not samples:
        return {"p50_ms": float("nan"), "p95_ms": float("nan"), "p99_ms": float("nan")}
    q = statistics.quantiles(samples, n=100, method="inclusive")
    return {"p50_ms": round(q[49] * 1000, 1), "p95_ms": round(q[94] * 1000, 1),
            "p99_ms": round(q[98] * 1000, 1)}


class Arrivals:
    """Reads the topics where a referral shows up and notes when, per referral id."""

    def __init__(self, bootstrap: str, security: Any = None) -> None:
        topics = ["referrals", "notifications", *[f"operator.{o}.inbox" for o in OPERATORS]]
        self._consumer = AIOKafkaConsumer(
            *topics, **kafka.connection(bootstrap, security), group_id=f"bench-{uuid.uuid4().hex[:8]}",
            auto_offset_reset="latest", enable_auto_commit=False, fetch_max_wait_ms=25,
            session_timeout_ms=10000, heartbeat_interval_ms=1000)
        self.inbox: dict[str, float] = {}
        self.answered: dict[str, float] = {}
        self.notified: dict[str, float] = {}

    async def start(self) -> None:
        await self._consumer.start()
        while not self._consumer.assignment():
            await self._consumer.getmany(timeout_ms=100)
        await self._consumer.seek_to_end()

    async def run(self) -> None:
        while True:
            batch = await self._consumer.getmany(timeout_ms=100, max_records=1000)
            now = time.perf_counter()
            for records in batch.values():
                for r in records:
                    ce_type = dict(r.headers).get("ce_type", b"").decode()
                    key = r.key.decode() if r.key else ""
                    if r.topic.endswith(".inbox") and ce_type.endswith("referral.routed.v1"):
                        self.inbox.setdefault(key, now)
                    elif ce_type.endswith("referral.answered.v1"):
                        self.answered.setdefault(key, now)
                    elif ce_type.endswith("notification.sent.v1"):
                        self.notified.setdefault(key, now)

    async def stop(self) -> None:
        await self._consumer.stop()


async def refer(client: httpx.AsyncClient, i: int, site_id: str) -> tuple[str, float]:
    operator = list(OPERATORS)[i % len(OPERATORS)]
    visit = await client.post("/api/v1/visits", json={
        "site_id": site_id, "channel": "in_person",
        "citizen": {"given_name": "Camille", "family_name": f"Bench{i}",
                    "birth_date": "1980-01-01",
                    "contact": {"channel": "email", "email": f"camille.bench{i}@example.org",
                                "postal_address": {"street": "3 rue des Lilas", "postcode": "47000", "city": "Agen"}}}})
    visit.raise_for_status()
    started = time.perf_counter()
    response = await client.post(f"/api/v1/visits/{visit.json()['visit_id']}/referrals", json={
        "operator": operator, "procedure": OPERATORS[operator],
        "summary": "Demande de banc d'essai.", "consent": {"given": True}})
    response.raise_for_status()
    return response.json()["referral_id"], started


async def platform_run(p: LocalPlatform, n: int, concurrency: int, timeout: float,
                       rate: float | None = None) -> dict[str, Any]:
    """`rate` None: submit as fast as `concurrency` allows (throughput); else pace the
    submissions at `rate` referrals/s (latency under a steady load)."""
    arrivals = Arrivals(p.bootstrap, getattr(p, "kafka_security", None))
    await arrivals.start()
    listener = asyncio.create_task(arrivals.run())
    limits = httpx.Limits(max_connections=concurrency)
    async with contextlib.AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(httpx.AsyncClient(base_url=url, timeout=30, limits=limits))
                   for url in p.urls("referral")]
        for client in clients:  # each signed in on its own instance
            token = await client.post("/api/v1/auth/token", data={"username": "demo-adviser", "password": "demo"})
            token.raise_for_status()
            client.headers["Authorization"] = f"Bearer {token.json()['access_token']}"
            await _wait_for_site(client, "agen-leon-blum-poste")
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in range(n):
            queue.put_nowait(i)
        requested: dict[str, float] = {}

        t0 = time.perf_counter()

        async def worker() -> None:
            while not queue.empty():
                i = queue.get_nowait()
                if rate:
                    await asyncio.sleep(max(0.0, t0 + i / rate - time.perf_counter()))
                rid, started = await refer(clients[i % len(clients)], i, "agen-leon-blum-poste")
                requested[rid] = started

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        submitted = time.perf_counter()
        deadline = submitted + timeout
        while len([r for r in requested if r in arrivals.notified]) < n and time.perf_counter() < deadline:
            await asyncio.sleep(0.2)
        done = time.perf_counter()
    listener.cancel()
    await arrivals.stop()
    notified = [r for r in requested if r in arrivals.notified]
    last = max((arrivals.notified[r] for r in notified), default=done)
    return {
        "referrals": n,
        "offered_rate_per_s": rate,
        "completed": len(notified),
        "submit_rate_per_s": round(n / (submitted - t0), 1),
        "throughput_per_s": round(len(notified) / (last - t0), 1),
        "requested_to_inbox": percentiles([arrivals.inbox[r] - s for r, s in requested.items()
                                           if r in arrivals.inbox]),
        "requested_to_answered": percentiles([arrivals.answered[r] - s for r, s in requested.items()
                                              if r in arrivals.answered]),
        "requested_to_notified": percentiles([arrivals.notified[r] - s for r, s in requested.items()
                                              if r in arrivals.notified]),
    }


async def _wait_for_site(client: httpx.AsyncClient, site_id: str) -> None:
    for _ in range(300):
        probe = await client.post("/api/v1/visits", json={
            "site_id": site_id, "channel": "in_person",
            "citizen": {"given_name": "A", "family_name": "B", "contact": {"channel": "none"}}})
        if probe.status_code == 201:
            return
        await asyncio.sleep(0.2)
    raise RuntimeError(f"site {site_id} never reached the referral service")


async def baseline(bootstrap: str, n: int, rate: float | None = None, security: Any = None) -> dict[str, Any]:
    """Raw aiokafka: produce to A, a relay consumes A and produces to B, a reader
    consumes B. Same acks=all and manual commits as the platform."""
    suffix = uuid.uuid4().hex[:6]
    a, b = f"bench.a.{suffix}", f"bench.b.{suffix}"
    admin = AIOKafkaAdminClient(**kafka.connection(bootstrap, security))
    await admin.start()
    await admin.create_topics([NewTopic(a, 3, 1), NewTopic(b, 3, 1)])
    await admin.close()
    producer = AIOKafkaProducer(**kafka.connection(bootstrap, security), acks="all", linger_ms=2)
    await producer.start()

    def consumer(topic: str) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(topic, **kafka.connection(bootstrap, security), group_id=f"{topic}-g",
                                auto_offset_reset="earliest", enable_auto_commit=False, fetch_max_wait_ms=25,
                                session_timeout_ms=10000, heartbeat_interval_ms=1000)

    relay_in, reader = consumer(a), consumer(b)
    await relay_in.start()
    await reader.start()
    latencies: list[float] = []

    async def relay() -> None:
        while True:
            batch = await relay_in.getmany(timeout_ms=100, max_records=500)
            for tp, records in batch.items():
                futures = [await producer.send(b, r.value, key=r.key) for r in records]
                await asyncio.gather(*futures)
                await relay_in.commit({tp: records[-1].offset + 1})

    async def read() -> None:
        while len(latencies) < n:
            batch = await reader.getmany(timeout_ms=100, max_records=500)
            now = time.perf_counter()
            for tp, records in batch.items():
                latencies.extend(now - float(r.value.decode()) for r in records)
                await reader.commit({tp: records[-1].offset + 1})

    relaying = asyncio.create_task(relay())
    reading = asyncio.create_task(read())
    t0 = time.perf_counter()
    for i in range(n):
        if rate:
            await asyncio.sleep(max(0.0, t0 + i / rate - time.perf_counter()))
        await producer.send(a, str(time.perf_counter()).encode(), key=str(i % 97).encode())
    await producer.flush()
    await asyncio.wait_for(reading, timeout=300)
    elapsed = time.perf_counter() - t0
    relaying.cancel()
    for closing in (relay_in.stop(), reader.stop(), producer.stop()):
        await closing
    return {"messages": n, "offered_rate_per_s": rate, "throughput_per_s": round(n / elapsed, 1),
            "latency": percentiles(latencies)}


HOPS = ("requested_to_inbox", "requested_to_answered", "requested_to_notified")


def _latencies(run: dict[str, Any]) -> list[str]:
    return [f"    {hop:<24} p50 {run[hop]['p50_ms']:>8} ms   p95 {run[hop]['p95_ms']:>8} ms   "
            f"p99 {run[hop]['p99_ms']:>8} ms" for hop in HOPS]


def _baseline(run: dict[str, Any]) -> str:
    q = run["latency"]
    return (f"{run['throughput_per_s']} msg/s, p50 {q['p50_ms']} ms, p95 {q['p95_ms']} ms, "
            f"p99 {q['p99_ms']} ms")


def report(result: dict[str, Any]) -> str:
    flat, paced = result["platform"]["saturated"], result["platform"]["paced"]
    return "\n".join([
        f"Relais benchmark on {result['machine']['cpus']} CPUs"
        f" ({next(iter(result.get('instances', {'1': 0})))} instance(s) of each service)",
        f"  saturated: {flat['completed']}/{flat['referrals']} referrals notified, "
        f"{flat['throughput_per_s']} referrals/s end to end (API accepted {flat['submit_rate_per_s']}/s)",
        *_latencies(flat),
        f"  paced at {paced['offered_rate_per_s']}/s: {paced['completed']}/{paced['referrals']} notified",
        *_latencies(paced),
        f"  baseline, raw aiokafka produce→consume→produce, as fast as possible: "
        f"{_baseline(result['baseline']['saturated'])}",
        f"  baseline paced at {result['baseline']['paced']['offered_rate_per_s']}/s: "
        f"{_baseline(result['baseline']['paced'])}",
    ])


def side_by_side(runs: dict[str, dict[str, Any]], header: str = "instances per service:") -> str:
    """The same measures for each run (count of instances, telemetry), one column each."""
    counts = list(runs)
    rows: list[tuple[str, list[str]]] = [
        ("referrals/s end to end (saturated)", [str(runs[c]["saturated"]["throughput_per_s"]) for c in counts]),
        ("API accepted/s (saturated)", [str(runs[c]["saturated"]["submit_rate_per_s"]) for c in counts]),
        ("completed (saturated)", [f"{runs[c]['saturated']['completed']}/{runs[c]['saturated']['referrals']}"
                                   for c in counts]),
    ]
    for mode in ("saturated", "paced"):
        for hop in HOPS:
            for q in ("p50_ms", "p95_ms"):
                rows.append((f"{mode} {hop} {q[:3]} ms", [str(runs[c][mode][hop][q]) for c in counts]))
    width = max(len(label) for label, _ in rows)
    lines = [f"  {header:<{width}}" + "".join(f"{c:>12}" for c in counts)]
    lines += [f"  {label:<{width}}" + "".join(f"{v:>12}" for v in values) for label, values in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--referrals", type=int, default=int(os.environ.get("BENCH_REFERRALS", 2000)))
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--paced-rate", type=float, default=10.0,
                        help="referrals/s of the steady-load run that measures latency")
    parser.add_argument("--paced-referrals", type=int, default=300)
    parser.add_argument("--instances", default=os.environ.get("BENCH_INSTANCES", "1,2"),
                        help="processes per service, one platform run per count, e.g. 1,2 (side by side) or 1")
    parser.add_argument("--telemetry", default=os.environ.get("BENCH_TELEMETRY", "off,on"),
                        help="the first count's runs: off (RELAIS_METRICS=0, no traces), on (metrics, "
                             "traces exported over OTLP), or both to price them")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "latest.json")
    args = parser.parse_args()
    counts = [int(c) for c in args.instances.split(",") if c.strip()]
    if not counts or min(counts) < 1:
        parser.error(f"--instances: counts of at least 1, comma-separated (got {args.instances!r})")
    modes = [m.strip() for m in args.telemetry.split(",") if m.strip()]
    if not modes or not set(modes) <= {"off", "on"}:
        parser.error(f"--telemetry: off, on or off,on (got {args.telemetry!r})")
    runs: dict[str, dict[str, Any]] = {}
    telemetry: dict[str, dict[str, Any]] = {}
    baseline_result: dict[str, Any] = {}
    sink = OtlpSink()
    with sink:
        for count, mode in [(counts[0], m) for m in modes] + [(c, "on") for c in counts[1:]]:
            env = ({"RELAIS_METRICS": "1", "OTEL_EXPORTER_OTLP_ENDPOINT": sink.endpoint} if mode == "on"
                   else {"RELAIS_METRICS": "0", "OTEL_TRACES_EXPORTER": "none"})
            with tempfile.TemporaryDirectory(prefix="relais-bench-") as tmp, \
                    LocalPlatform(Path(tmp), ports="free", database_url=os.environ.get("DATABASE_URL"),
                                  bootstrap=os.environ.get("KAFKA_BOOTSTRAP_SERVERS"), instances=count,
                                  extra_env=env) as p:
                run = {
                    "saturated": asyncio.run(platform_run(p, args.referrals, args.concurrency, args.timeout)),
                    "paced": asyncio.run(platform_run(p, args.paced_referrals, args.concurrency, args.timeout,
                                                      rate=args.paced_rate)),
                }
                if count == counts[0]:
                    telemetry[mode] = run
                if mode == modes[-1] or count != counts[0]:
                    runs[str(count)] = run
                if not baseline_result:  # the broker's own pace, once
                    security = getattr(p, "kafka_security", None)
                    baseline_result = {
                        "saturated": asyncio.run(baseline(p.bootstrap, args.referrals, security=security)),
                        "paced": asyncio.run(baseline(p.bootstrap, args.paced_referrals, rate=args.paced_rate,
                                                      security=security)),
                    }
    platform_result = runs[str(counts[0])]
    result: dict[str, Any] = {"when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                          "system": platform.platform()},
              "platform": platform_result, "instances": runs, "baseline": baseline_result,
              "telemetry": telemetry, "spans_exported": {"exports": sink.exports, "bytes": sink.bytes}}
    result["overhead_ratio"] = round(baseline_result["saturated"]["throughput_per_s"]
                                     / max(platform_result["saturated"]["throughput_per_s"], 0.001), 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False))
    print(report(result))
    if len(runs) > 1:
        print(f"  side by side ({', '.join(runs)} instances of each service; "
              f"{result['machine']['cpus']} CPUs shared by all of them):")
        print(side_by_side(runs))
    if len(telemetry) > 1:
        off, on = telemetry["off"]["saturated"]["throughput_per_s"], telemetry["on"]["saturated"]["throughput_per_s"]
        print(f"  telemetry (metrics and traces) off vs on, {counts[0]} instance(s) of each service; "
              f"{sink.exports} OTLP exports ({sink.bytes // 1024} KiB) received; "
              f"saturated throughput {100 * (on - off) / max(off, 0.001):+.1f} %:")
        print(side_by_side(telemetry, header="telemetry:"))
    print(f"  throughput ratio baseline/platform: {result['overhead_ratio']} "
          f"(the platform does ~12 produces, ~14 consumes and ~7 transactions per referral)")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
