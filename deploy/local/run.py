"""`make run`: the whole of Relais on this machine, until Ctrl-C.

Uses the broker in KAFKA_BOOTSTRAP_SERVERS if set, else starts an embedded one on
127.0.0.1:9092 (RELAIS_BROKER_PORT to change it); the PostgreSQL in DATABASE_URL if
set, else an embedded one kept in `.data/postgres` (it survives restarts; the embedded
broker does not). Service ports: RELAIS_REFERRAL_PORT (8000), RELAIS_SITES_PORT (8001),
RELAIS_NOTIFICATIONS_PORT (8002), RELAIS_SMTP_PORT (8025). Prometheus (Debian's
`prometheus`, `make prometheus` installs it) on RELAIS_PROMETHEUS_PORT (9090), scraping
every process every 5s into `.data/prometheus`. Simulated operators:
RELAIS_SIMULATED_OPERATORS (unset = all, empty = none), or RELAIS_LIVE_OPERATORS: the
operators your own consumer (an example, the conformance kit) plays, every other one being
simulated. The operator desk (RELAIS_DESK_PORT, 8003) plays RELAIS_DESK_OPERATOR
(default `justice`; empty: no desk), which the simulator then leaves alone too. Logs in
`.data/logs`, mails in `.data/mail`. RELAIS_INSTANCES=N starts N processes of each
service (`referral`, `referral-2`, ...; instance k on the service's port + 10 (k - 1)):
any instance answers the API and the pages, they share the consumers' partitions, and
one at a time per service publishes its outbox.
"""

from __future__ import annotations

import os
import sys

# Also runnable as `python deploy/local/run.py` without PYTHONPATH.
_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
for _path in reversed([_ROOT, os.path.join(_ROOT, "libs", "relais_kit")]):
    if _path not in sys.path:
        sys.path.insert(0, _path)

import warnings  # noqa: E402

# pgserver asks platformdirs for a runtime folder; without XDG_RUNTIME_DIR it uses /tmp.
warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")

import argparse  # noqa: E402
import json  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from types import FrameType  # noqa: E402

from deploy.local.launcher import LocalPlatform, PlatformError, log_tail, service_of  # noqa: E402
from relais_kit.topics import load_topics  # noqa: E402

ROOT = Path(_ROOT)
DATA = ROOT / ".data"
DEMO_SITE = "agen-leon-blum-poste"

PORT_VARIABLES = {"referral": "RELAIS_REFERRAL_PORT", "sites": "RELAIS_SITES_PORT",
                  "notifications": "RELAIS_NOTIFICATIONS_PORT", "desk": "RELAIS_DESK_PORT",
                  "ops": "RELAIS_OPS_PORT",
                  "smtp": "RELAIS_SMTP_PORT",
                  "broker": "RELAIS_BROKER_PORT",
                  "prometheus": "RELAIS_PROMETHEUS_PORT"}


class Stop(Exception):
    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_stop(signum: int, _: FrameType | None) -> None:
    raise Stop(signum)


def _port_taken(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def busy_ports(platform: LocalPlatform) -> list[str]:
    problems = []
    for name, port in platform.planned_ports().items():
        if not _port_taken(port):
            continue
        if name == "broker":
            problems.append(
                f"port {port} is taken, and the embedded broker needs it (KAFKA_BOOTSTRAP_SERVERS is not set).\n"
                f"    - a Kafka already runs there? use it: KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:{port} make run\n"
                f"    - otherwise stop what uses it (ss -ltnp 'sport = :{port}'), or pick another port: "
                f"RELAIS_BROKER_PORT=19093 make run")
        else:
            problems.append(f"port {port} ({name}) is taken: stop what uses it (ss -ltnp 'sport = :{port}') "
                            f"or pick another: {PORT_VARIABLES[service_of(name) or name]}=<port> make run")
    return problems


def walkthrough(p: LocalPlatform) -> str:
    r, n = p.referral_url, p.notifications_url
    auth = '-H "Authorization: Bearer $TOKEN"'
    json_ = "-H 'Content-Type: application/json'"
    visit = json.dumps({"site_id": DEMO_SITE, "channel": "in_person", "citizen": {
        "given_name": "Nadia", "family_name": "Dupont", "birth_date": "1987-06-02",
        "contact": {"channel": "email", "email": "nadia.dupont@example.fr",
                    "postal_address": {"street": "3 rue des Lilas", "postcode": "47000", "city": "Agen"}}}},
        ensure_ascii=False)
    referral = json.dumps({"operator": "caf", "procedure": "caf.prime-activite",
                           "summary": "Calcul de la prime d’activité après une reprise d’emploi.",
                           "consent": {"given": True}}, ensure_ascii=False)
    return "\n".join([
        "  field() { python3 -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' \"$1\"; }",
        f"  TOKEN=$(curl -s -X POST {r}/api/v1/auth/token -d username=demo-adviser -d password=demo "
        "| field access_token)",
        f"  VISIT=$(curl -s -X POST {r}/api/v1/visits {auth} {json_} \\",
        f"      -d '{visit}' | field visit_id)",
        f"  REFERRAL=$(curl -s -X POST {r}/api/v1/visits/$VISIT/referrals {auth} {json_} \\",
        f"      -d '{referral}' | field referral_id)",
        "  sleep 3   # the simulated CAF acknowledges, then answers, within a second or two",
        f"  curl -s {r}/api/v1/referrals/$REFERRAL {auth}; echo",
        f'  curl -s "{n}/api/v1/notifications?referral_id=$REFERRAL" {auth}; echo',
        f"  ls -t {p.mail_dir} | head -1   # the citizen's mail, as a .eml file",
    ])


def banner(p: LocalPlatform) -> str:
    broker = (f"{p.bootstrap} (embedded tansu, in memory: emptied at every start)" if p.embedded_broker
              else f"{p.bootstrap} (KAFKA_BOOTSTRAP_SERVERS)")
    if p.kafka_auth:
        broker += ("\n                TLS + SCRAM-SHA-512, one user per service; to connect a tool as ops:\n"
                   f"                set -a; . {p.kafka_credentials.env_file('relais-ops')}; set +a")
    database = ("embedded PostgreSQL in .data/postgres (kept between runs; `make clean` wipes it)"
                if p.embedded_postgres else "DATABASE_URL")
    operators = p.simulated_operators
    simulated = ("every operator" if operators is None else "none (RELAIS_SIMULATED_OPERATORS is empty)"
                 if operators == "" else operators)
    rows = [("referral", p.referral_url, "the adviser API: sign in, visits, referrals"),
            ("sites", p.sites_url, "the France Services sites registry"),
            ("notifications", p.notifications_url, "what was sent to citizens and advisers"),
            ("ops", p.url("ops"), "the ops console: /console (demo-ops / demo); lag: /api/lag, /metrics")]
    if p.desk_operator:
        rows.append(("desk", p.url("desk"), f"the operator desk, playing {p.desk_operator}: "
                                            f"demo-expert / demo"))
    lines = ["", "=" * 78, "Relais is running.", "",
             f"Adviser's screens  {p.referral_url}/   (sign in as demo-adviser / demo)", "",
             "Services (OpenAPI at /docs, health at /healthz):"]
    for service, _, what in rows:
        for name, url in zip(p.instance_names(service), p.urls(service), strict=True):
            docs = f"{url}/docs" if service != "desk" else f"{url}/".ljust(len(url) + 5)
            lines.append(f"  {name:<16} {docs}   {url}/healthz   ({what})")
    if p.instances > 1:
        lines.append(f"  ({p.instances} instances of each service, RELAIS_INSTANCES: any of them answers)")
    lines += [
        "",
        f"Broker          {broker}",
        f"Database        {database}",
        f"Mail (SMTP)     smtp://127.0.0.1:{p.smtp_port}; every mail is kept as a .eml file in {p.mail_dir}",
        (f"SMS             Kannel {p.kannel.sendsms_url}; fakesmsc (the operator) logs each SMS in "
         f"{p.log_path('fakesmsc')}" if p.kannel else
         f"SMS             no Kannel: every SMS is a line of {p.data_dir / 'sms' / 'sms.jsonl'}"),
        f"Operators       simulated: {simulated}",
        *([f"                played by the operator desk: {p.desk_operator}"] if p.desk_operator else []),
        *([f"                yours to play (RELAIS_LIVE_OPERATORS): {os.environ['RELAIS_LIVE_OPERATORS']}; "
           f"demo private keys in deploy/demo/operator-keys/"]
          if os.environ.get("RELAIS_LIVE_OPERATORS") and "RELAIS_SIMULATED_OPERATORS" not in os.environ else []),
        f"Prometheus      {p.prometheus_url}/alerts   (scrapes every process; alert rules in "
        f"deploy/prometheus/rules.yml)" if p.prometheus_url
        else "Prometheus      not started: no `prometheus` binary (`make prometheus` installs Debian's)",
        f"Logs            {p.log_dir}",
        "",
        f"Demo sign-in    demo-adviser / demo   (adviser at site {DEMO_SITE} and its permanences);",
        "                also demo-adviser-martignas, demo-supervisor (department 47), demo-ops (read-only);",
        f"                in the pages at {p.referral_url}/, or for the API: POST {p.referral_url}/api/v1/auth/token,",
        f"                or 'Authorize' in {p.referral_url}/docs",
        "",
        "Try it (bash; copy and paste). Right after a first start, a 422 naming site_id means the demo",
        "sites are still on their way to the referral service: try again a few seconds later.",
        walkthrough(p),
        "",
        "Ctrl-C stops everything.",
        "=" * 78,
        "",
    ]
    return "\n".join(lines)


def watch(p: LocalPlatform, reported: set[str]) -> None:
    """Tells once about a child that died on its own."""
    for name, proc in p.processes.items():
        if name not in reported and proc.poll() is not None:
            reported.add(name)
            print(f"\n!! {name} exited with code {proc.returncode}; last lines of {p.log_path(name)}:\n"
                  f"{log_tail(p.log_path(name), 15)}\n", file=sys.stderr, flush=True)


DEFAULT_DESK_OPERATOR = "justice"


def desk_operator(environ: dict[str, str] | os._Environ[str]) -> str | None:
    """The operator the desk plays (RELAIS_DESK_OPERATOR; empty: no desk)."""
    code = environ.get("RELAIS_DESK_OPERATOR", DEFAULT_DESK_OPERATOR).strip()
    if code and code not in load_topics(ROOT / "deploy" / "topics.yaml").operators:
        raise SystemExit(f"RELAIS_DESK_OPERATOR: unknown operator {code}")
    return code or None


def simulated_operators(environ: dict[str, str] | os._Environ[str]) -> str | None:
    """RELAIS_SIMULATED_OPERATORS as given; else every operator but RELAIS_LIVE_OPERATORS
    and the desk's (None: all of them)."""
    if "RELAIS_SIMULATED_OPERATORS" in environ:
        return environ["RELAIS_SIMULATED_OPERATORS"]
    live = {code.strip() for code in environ.get("RELAIS_LIVE_OPERATORS", "").split(",") if code.strip()}
    desk = desk_operator(environ)
    if desk:
        live.add(desk)
    if not live:
        return None
    operators = load_topics(ROOT / "deploy" / "topics.yaml").operators
    unknown = sorted(live - set(operators))
    if unknown:
        raise SystemExit(f"RELAIS_LIVE_OPERATORS: unknown operator(s) {', '.join(unknown)}; "
                         f"known: {', '.join(operators)}")
    return ",".join(code for code in operators if code not in live)


def instances(environ: dict[str, str] | os._Environ[str]) -> int:
    """RELAIS_INSTANCES: processes per service (default 1)."""
    raw = environ.get("RELAIS_INSTANCES", "1").strip() or "1"
    if not raw.isdigit() or not 1 <= int(raw) <= 9:
        raise SystemExit(f"RELAIS_INSTANCES must be a whole number from 1 to 9 (got {raw!r})")
    return int(raw)


def main() -> int:
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    simulated = simulated_operators(os.environ)
    platform = LocalPlatform(DATA, bootstrap=os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or None,
                             database_url=os.environ.get("DATABASE_URL") or None,
                             ports="default", simulated_operators=simulated, demo_data=True,
                             desk_operator=desk_operator(os.environ), instances=instances(os.environ),
                             prometheus=True)
    for leftover in platform.reap_leftovers():
        print(f"Stopped {leftover}, left running by an earlier `make run` that was killed.", flush=True)
    problems = busy_ports(platform)
    if problems:
        print("Cannot start Relais:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _raise_stop)
    started = time.monotonic()
    reason = "stopped"
    try:
        print("Starting Relais: " + ("embedded broker, " if platform.embedded_broker else "")
              + ("embedded PostgreSQL, " if platform.embedded_postgres else "")
              + "topics, mailbox, " + ", ".join(platform.children)
              + (", operator simulator" if simulated != "" else "") + ", Prometheus ...", flush=True)
        platform.start()
        print(banner(platform) + f"(ready in {time.monotonic() - started:.1f}s)", flush=True)
        reported: set[str] = set()
        while True:
            time.sleep(1.0)
            watch(platform, reported)
    except Stop as stop:
        reason = f"{stop} received"
    except PlatformError as exc:
        print(f"\nRelais did not start: {exc}", file=sys.stderr, flush=True)
        reason = "start failed"
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, signal.SIG_IGN)  # a second Ctrl-C must not cut the stop short
        print(f"\n{reason}: stopping Prometheus, the simulator, the services, the mailbox"
              + (", the broker" if platform.embedded_broker else "")
              + (", PostgreSQL" if platform.embedded_postgres else "") + " ...", flush=True)
        platform.stop()
        print("Relais stopped. Everything it started has ended.", flush=True)
    return 0 if reason != "start failed" else 1


if __name__ == "__main__":
    sys.exit(main())
