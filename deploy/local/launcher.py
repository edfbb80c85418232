"""The whole of Relais on one machine, as child processes: the broker (embedded tansu
unless one is given), PostgreSQL (embedded pgserver unless a URL is given), every topic
of `deploy/topics.yaml`, the local SMTP mailbox, the three services and the operator
simulator. Used by `make run` (deploy/local/run.py), the end-to-end tests, the
benchmark and the fault tests.

    with LocalPlatform(Path(".data"), ports="free") as platform:
        httpx.get(f"{platform.referral_url}/healthz")
        platform.kill("notifications"); platform.restart("notifications")

Synchronous on purpose: usable from a script, a sync pytest fixture or a benchmark.
Every child runs in a session of its own (a Ctrl-C in the terminal reaches only the
parent, which then stops the children in order) and writes to `<log_dir>/<name>.log`.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import IO, Any, Literal, TypeVar

from deploy.kannel import config as kannel_config
from deploy.local import pgroles
from deploy.local import prometheus as local_prometheus
from deploy.local.kafka_auth import LocalKafkaAuth
from deploy.local.mailbox import Mailbox
from deploy.local.waiting import until_ok
from relais_kit.embedded import free_port, start_broker, start_postgres, wait_for_port
from relais_kit.kafka import KafkaSecurity
from relais_kit.topics import create_topics, load_topics

ROOT = Path(__file__).resolve().parents[2]
TOPICS_FILE = ROOT / "deploy" / "topics.yaml"
SIMULATOR = ROOT / "simulator" / "operator_simulator.py"
PYTHONPATH = [ROOT / "libs" / "relais_kit", ROOT / "services" / "referral", ROOT / "services" / "sites",
              ROOT / "services" / "notifications", ROOT / "services" / "desk", ROOT / "services" / "ops", ROOT]

# name -> (python module, port variable, default port)
SERVICES: dict[str, tuple[str, str, int]] = {
    "referral": ("relais_referral", "RELAIS_REFERRAL_PORT", 8000),
    "sites": ("relais_sites", "RELAIS_SITES_PORT", 8001),
    "notifications": ("relais_notifications", "RELAIS_NOTIFICATIONS_PORT", 8002),
    # Only with `desk_operator`: the operator desk, playing that operator.
    "desk": ("relais_desk", "RELAIS_DESK_PORT", 8003),
    # The ops service: the lag of every consumer group, from outside (Kafka principal relais-ops).
    "ops": ("relais_ops", "RELAIS_OPS_PORT", 8004),
}
# Services that keep nothing in PostgreSQL: no role, no schema, no DATABASE_URL (none
# today: the ops service keeps its console's sessions and audit in schema `ops`).
WITHOUT_DATABASE: frozenset[str] = frozenset()
DEFAULT_BROKER_PORT = 9092
DEFAULT_SMTP_PORT = 8025
STOP_TIMEOUT_S = 10.0
LOG_TAIL_LINES = 40
KANNEL_CHILDREN = ("fakesmsc", "smsbox", "bearerbox")  # in the order to stop them

T = TypeVar("T")


class PlatformError(RuntimeError):
    """A part of the platform did not start (the message carries its log's tail)."""


def service_of(name: str) -> str | None:
    """The service a child runs: `referral` for `referral` and its instances
    (`referral-2`...); None for the other children (broker, mailbox, simulator...)."""
    service = name.split("-")[0]
    return service if service in SERVICES else None


def over_tcp(url: str, host: str, port: int) -> str:
    """A PostgreSQL URL (maybe through a Unix socket: `?host=/dir`) made to reach
    `host`:`port` over TCP instead, with the same role and database."""
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    parts = urlsplit(url)
    user = parts.netloc.rpartition("@")[0]
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query) if k not in ("host", "port")])
    return urlunsplit(parts._replace(netloc=f"{user + '@' if user else ''}{host}:{port}", query=query))


def wait_healthy(url: str, timeout: float = 60.0, *, process: subprocess.Popen[bytes] | None = None,
                 name: str | None = None) -> None:
    """Polls `<url>/healthz` (or `url` itself if it ends with /healthz) until it answers
    200. Raises TimeoutError after `timeout` seconds, PlatformError at once if
    `process` is given and exits meanwhile."""
    target = url if url.rstrip("/").endswith("/healthz") else f"{url.rstrip('/')}/healthz"
    until_ok(target, timeout, process=process, what="healthy", exited=lambda code: PlatformError(
        f"{name or target} exited with code {code} before being healthy"))


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


def run_coroutine(coro: Coroutine[Any, Any, T]) -> T:
    """asyncio.run, also from a thread whose event loop is already running."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    result: list[T] = []
    errors: list[BaseException] = []

    def target() -> None:
        try:
            result.append(asyncio.run(coro))
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target, name="platform-async")
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return result[0]


def _forget_dead_handles(pgdata: Path) -> None:
    """pgserver stops its server when the last process holding it lets go, counting
    them by pid in `.handle_pids.json`; a holder killed with SIGKILL stays listed and
    the server would then never be stopped again. Forget the pids that are gone."""
    path = pgdata / ".handle_pids.json"
    try:
        pids = json.loads(path.read_text())
    except (OSError, ValueError):
        return
    alive = [pid for pid in pids if isinstance(pid, int) and _alive(pid)]
    if alive != pids:
        path.write_text(json.dumps(alive))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class LocalPlatform:
    """Start with `start()` (or `with`), stop with `stop()` (idempotent). Children are
    in `processes` (name -> Popen): `broker` (when embedded), `referral`, `sites`,
    `notifications`, `simulator` (unless `simulated_operators == ""`)."""

    def __init__(
        self,
        data_dir: Path,
        *,
        bootstrap: str | None = None,
        database_url: str | None = None,
        ports: Literal["default", "free"] = "default",
        simulated_operators: str | None = None,
        demo_data: bool = True,
        simulator_args: list[str] | None = None,
        desk_operator: str | None = None,
        log_dir: Path | None = None,
        extra_env: dict[str, str] | None = None,
        health_timeout: float = 60.0,
        replication_factor: int | None = None,
        kafka_auth: bool | None = None,
        instances: int = 1,
        bind_host: str = "127.0.0.1",
        prometheus: bool = False,
        kannel: bool | None = None,
    ) -> None:
        if ports not in ("default", "free"):
            raise ValueError(f"ports must be 'default' or 'free', not {ports!r}")
        self.data_dir = Path(data_dir).resolve()
        self.ports = ports
        self.simulated_operators = simulated_operators
        self.demo_data = demo_data
        self.simulator_args = list(simulator_args or [])
        self.desk_operator = desk_operator
        self.services = {name: spec for name, spec in SERVICES.items() if name != "desk" or desk_operator}
        if instances < 1:
            raise ValueError(f"instances must be at least 1, not {instances}")
        self.instances = instances  # processes per service: `referral`, `referral-2`, ...
        # The address the broker (or its front), the mailbox and the embedded PostgreSQL
        # (beside its socket) listen on: another one than 127.0.0.1 for children run in
        # a network namespace (tests/faults/test_scale_out.py).
        self.bind_host = bind_host
        # A Prometheus (child `prometheus`) scraping every service child, when asked and
        # installed (deploy/local/prometheus.py); its address once started.
        self.prometheus = prometheus
        self.prometheus_port: int | None = None
        self.prometheus_url: str | None = None
        # By child name: the address it listens on (default 127.0.0.1) and a prefix of
        # its command (`ip netns exec <ns>`); filled before start().
        self.child_hosts: dict[str, str] = {}
        self.child_prefix: dict[str, list[str]] = {}
        self.database_tcp_port: int | None = None  # embedded PostgreSQL on bind_host, when asked
        self.log_dir = Path(log_dir).resolve() if log_dir else self.data_dir / "logs"
        self.extra_env = dict(extra_env or {})
        self.health_timeout = health_timeout
        self.replication_factor = replication_factor
        self.embedded_broker = bootstrap is None
        # The embedded broker is reached through the authenticating front (TLS + SCRAM,
        # one principal per child) unless RELAIS_KAFKA_AUTH=0; a given broker is reached
        # with the KAFKA_* variables of the environment.
        if kafka_auth is None:
            kafka_auth = (self.extra_env.get("RELAIS_KAFKA_AUTH") or os.environ.get("RELAIS_KAFKA_AUTH", "1")) != "0"
        self.kafka_auth = kafka_auth and self.embedded_broker
        hosts = ("127.0.0.1", "localhost", *([bind_host] if bind_host != "127.0.0.1" else []))
        self.kafka_credentials = LocalKafkaAuth(self.data_dir / "kafka", hosts=hosts)
        self.broker_upstream_port: int | None = None  # tansu's own port, behind the front
        self.embedded_postgres = database_url is None
        self.bootstrap: str = bootstrap or ""
        self.database_url: str = database_url or ""
        self.broker_port: int | None = None
        self.smtp_port: int = 0
        self.service_ports: dict[str, int] = {}
        self.mailbox: Mailbox = Mailbox(self.data_dir / "mail")
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self._postgres: Any = None
        self._logs: dict[str, IO[bytes]] = {}
        self._started = False
        self._lock = threading.RLock()
        self.stop_timings: dict[str, float] = {}  # seconds each part took to stop, last stop()
        # What one child gets beyond env(), by child name (its own Kafka user, its own
        # database role...): filled while starting, read by _spawn.
        self.child_env: dict[str, dict[str, str]] = {}
        self.service_database_urls: dict[str, str] = {}  # service -> its own role's URL
        # SMS through a real Kannel (children `bearerbox`, `smsbox`, `fakesmsc`: the
        # operator's stand-in, whose log shows each SMS) when installed and not turned off
        # (RELAIS_KANNEL=0); else the spool file. Filled at start.
        if kannel is None:
            kannel = (self.extra_env.get("RELAIS_KANNEL") or os.environ.get("RELAIS_KANNEL", "1")) != "0"
        self.kannel_wanted = kannel
        self.kannel: kannel_config.Kannel | None = None

    # ------------------------------------------------------------------ addresses

    def instance_names(self, service: str) -> list[str]:
        """The children running `service`: `referral`, `referral-2`, ..."""
        return [service if k == 1 else f"{service}-{k}" for k in range(1, self.instances + 1)]

    @property
    def children(self) -> list[str]:
        """Every service child, instance by instance."""
        return [name for service in self.services for name in self.instance_names(service)]

    def url(self, service: str) -> str:
        """`service` may name one instance (`referral-2`); a service's name is its first."""
        return f"http://{self.child_hosts.get(service, '127.0.0.1')}:{self.service_ports[service]}"

    def urls(self, service: str) -> list[str]:
        """Every instance of `service`: any of them answers the API and the pages."""
        return [self.url(name) for name in self.instance_names(service)]

    @property
    def referral_url(self) -> str:
        return self.url("referral")

    @property
    def sites_url(self) -> str:
        return self.url("sites")

    @property
    def notifications_url(self) -> str:
        return self.url("notifications")

    @property
    def mail_dir(self) -> Path:
        return self.mailbox.directory

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> LocalPlatform:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def start(self) -> LocalPlatform:
        with self._lock:
            if self._started:
                return self
            self._started = True
            atexit.register(self.stop)
            try:
                self._start()
            except BaseException:
                self.stop()
                raise
            return self

    def _start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for leftover in self.reap_leftovers():
            print(f"relais: stopped {leftover}, left running by an earlier start in {self.data_dir}",
                  file=sys.stderr, flush=True)
        self._assign_ports()
        if self.embedded_broker:
            self._start_broker()
        if self.embedded_postgres:
            self._start_postgres()
        self._set_up_database_roles()
        if self.embedded_postgres and self.bind_host != "127.0.0.1":
            self._postgres_on_bind_host()
        self._create_topics()
        # Its own process, as a real mail server would be: a thread here would compete
        # with whoever drives the platform (the benchmark, a test) for the GIL.
        self.mailbox = Mailbox(self.data_dir / "mail", self.bind_host, self.smtp_port)
        self._spawn("mailbox", fresh_log=True)
        wait_for_port(self.smtp_port, self.bind_host)
        self._start_kannel()
        for name in self.children:  # all at once, then wait for each
            self._spawn(name, fresh_log=True)
        for name in self.children:
            self._wait_service(name)
        if self.simulated_operators != "":
            self._spawn("simulator", fresh_log=True)
            self._wait_simulator()
        if self.prometheus:
            self._start_prometheus()

    def _assign_ports(self) -> None:
        for name, port in self._instance_ports().items():
            self.service_ports[name] = port
        self.smtp_port = self._port("RELAIS_SMTP_PORT", DEFAULT_SMTP_PORT)
        if self.prometheus:
            self.prometheus_port = self._port(local_prometheus.PORT_VARIABLE, local_prometheus.DEFAULT_PORT)
        if self.embedded_broker:
            self.broker_port = self._port("RELAIS_BROKER_PORT", DEFAULT_BROKER_PORT)
            self.bootstrap = f"{self.bind_host}:{self.broker_port}"
            if self.kafka_auth:
                self.broker_upstream_port = free_port()

    def _port(self, variable: str, default: int) -> int:
        """A free port, or (ports="default") the one in `extra_env` / the environment,
        else the usual one."""
        if self.ports == "free":
            return free_port()
        return int(self.extra_env.get(variable) or os.environ.get(variable) or default)

    def _instance_ports(self) -> dict[str, int]:
        """A port per child; with ports="default", instance k of a service listens on
        the service's port + 10 (k - 1): referral on 8000, 8010, 8020..."""
        found: dict[str, int] = {}
        for service, (_, variable, default) in self.services.items():
            base = self._port(variable, default)
            for k, name in enumerate(self.instance_names(service)):
                found[name] = base if k == 0 else free_port() if self.ports == "free" else base + 10 * k
                while self.ports == "free" and found[name] in list(found.values())[:-1]:
                    found[name] = free_port()  # two asks may get the same free port
        return found

    def planned_ports(self) -> dict[str, int]:
        """Before `start()` with ports="default": what each part will listen on (to
        check they are free)."""
        found = self._instance_ports()
        found["smtp"] = self._port("RELAIS_SMTP_PORT", DEFAULT_SMTP_PORT)
        if self.embedded_broker:
            found["broker"] = self._port("RELAIS_BROKER_PORT", DEFAULT_BROKER_PORT)
        if self.prometheus and local_prometheus.binary():
            found["prometheus"] = self._port(local_prometheus.PORT_VARIABLE, local_prometheus.DEFAULT_PORT)
        return found

    def _start_broker(self) -> None:
        assert self.broker_port is not None
        if self.kafka_auth:
            self.kafka_credentials.ensure(self.kafka_principals())
            self.kafka_credentials.write_env_files(self.bootstrap)
            for name in [*self.services, "simulator"]:
                self.child_env.setdefault(name, {}).update(
                    self.kafka_credentials.client_env(self.kafka_principal(name)))
        log = self._open_log("broker", fresh=True)
        try:
            self.processes["broker"] = self._tansu(log)
            self._remember_children()
        except TimeoutError as exc:
            raise PlatformError(f"the embedded broker did not listen on {self.bootstrap}:\n"
                                f"{log_tail(self.log_path('broker'))}") from exc
        if self.kafka_auth:
            self._spawn("kafka-gateway", fresh_log=True)
            try:
                wait_for_port(self.broker_port, self.bind_host)
            except TimeoutError as exc:
                raise PlatformError(f"the authenticating front did not listen on {self.bootstrap}:\n"
                                    f"{log_tail(self.log_path('kafka-gateway'))}") from exc

    def _tansu(self, log: IO[bytes]) -> subprocess.Popen[bytes]:
        assert self.broker_port is not None
        if self.broker_upstream_port is None:
            return start_broker(self.broker_port, log, host=self.bind_host)
        return start_broker(self.broker_upstream_port, log, advertised=self.bootstrap)

    # ------------------------------------------------------------------ Kafka principals

    def kafka_principal(self, name: str) -> str:
        """The Kafka user a child connects as: its service's own (every instance of a
        service is the same principal, as on a cluster)."""
        service = service_of(name) or name
        if service == "desk":
            return f"relais-desk-{self.desk_operator}"
        return f"relais-{service}"

    def kafka_principals(self) -> list[str]:
        """Every principal of this platform: the services, the desk, the simulator (a
        development stand-in for the operators), the ops tools (and this launcher, which
        creates the topics), and one per operator for its own consumer (the examples,
        the conformance kit)."""
        services = [self.kafka_principal(name) for name in self.services]
        operators = [f"operator-{code}" for code in load_topics(TOPICS_FILE).operators]
        return list(dict.fromkeys([*services, "relais-simulator", "relais-ops", *operators]))

    @property
    def kafka_security(self) -> KafkaSecurity:
        """How this launcher (and a test driving the platform) connects: as relais-ops."""
        if self.kafka_auth:
            return self.kafka_credentials.security("relais-ops")
        return KafkaSecurity.from_env({**os.environ, **self.extra_env})

    def kafka_env(self, principal: str = "relais-ops") -> dict[str, str]:
        """The KAFKA_* variables to connect as `principal` (empty without the front)."""
        return self.kafka_credentials.client_env(principal) if self.kafka_auth else {}

    def _start_postgres(self) -> None:
        _forget_dead_handles(self.data_dir / "postgres")
        server, url = start_postgres(self.data_dir / "postgres")
        self._postgres = server
        # pgserver puts the socket elsewhere when the data folder's path is too long.
        try:
            self.database_url = server.get_uri("postgres")
        except Exception:
            self.database_url = url

    def _set_up_database_roles(self) -> None:
        """One PostgreSQL role per service, owner of its schema and of nothing else, and
        each service's child its own DATABASE_URL (deploy/local/pgroles.py); the
        embedded server asks every role for its password from now on."""
        secrets = pgroles.Secrets(self.data_dir)
        try:
            if self.embedded_postgres:
                self.database_url = run_coroutine(pgroles.require_passwords(self.database_url, secrets))
            env = self.env()
            children = [n for n in self.children if service_of(n) and service_of(n) not in WITHOUT_DATABASE]
            schemas = {service_of(n) or n: pgroles.schema_of(service_of(n) or n, env, self.desk_operator)
                       for n in children}
            instances = {s: sum(1 for n in children if service_of(n) == s) for s in schemas}
            self.service_database_urls = run_coroutine(
                pgroles.service_urls(self.database_url, schemas, instances, secrets))
        except pgroles.RoleSetupError as exc:
            raise PlatformError(f"could not set up the services' database roles: {exc}") from exc
        for name in children:
            self.child_env.setdefault(name, {})["DATABASE_URL"] = self.service_database_urls[service_of(name) or name]

    def _postgres_on_bind_host(self) -> None:
        """The embedded PostgreSQL also over TCP on bind_host, for the children in a
        network namespace (the Unix socket would reach them around the network being
        cut), to the directly connected subnets (`samenet`) with the same
        authentication as 127.0.0.1; restarted with that (`pg_ctl restart` keeps it)."""
        from pgserver import _commands
        from pgserver.utils import PostmasterInfo

        server = self._postgres
        hba = Path(server.pgdata) / "pg_hba.conf"
        method = next((line.split()[-1] for line in hba.read_text().splitlines()
                       if line.startswith("host") and "127.0.0.1/32" in line), "scram-sha-256")
        hba.write_text(hba.read_text() + f"host    all   all   samenet        {method}\n")
        info = PostmasterInfo.read_from_pgdata(server.pgdata)
        assert info is not None and info.socket_dir is not None
        pg_ctl = getattr(_commands, "pg_ctl")  # noqa: B009  # made at import time
        pg_ctl(["-w", "-m", "fast", "-o", f'-h "{self.bind_host}"', "-o", f"-k {info.socket_dir}",
                "-l", str(server.log), "restart"], pgdata=server.pgdata, user=server.system_user, timeout=60)
        server._postmaster_info = PostmasterInfo.read_from_pgdata(server.pgdata)
        self.database_tcp_port = int(getattr(server._postmaster_info, "port", None) or 5432)

    def _create_topics(self) -> None:
        topics = load_topics(TOPICS_FILE)
        factor = self.replication_factor
        if factor is None and self.embedded_broker:
            factor = 1
        deadline = time.monotonic() + 30.0
        while True:
            try:
                if factor is None:
                    factor = run_coroutine(self._fitting_replication_factor(max(t.replication_factor
                                                                                for t in topics.topics)))
                run_coroutine(create_topics(self.bootstrap, topics, replication_factor=factor,
                                            security=self.kafka_security))
                return
            except Exception as exc:  # a broker just started may not answer metadata yet
                if time.monotonic() > deadline:
                    raise PlatformError(f"could not create the topics on {self.bootstrap}: {exc!r}") from exc
                time.sleep(0.5)

    async def _fitting_replication_factor(self, wanted: int) -> int | None:
        """The file's factor, or the number of brokers if the cluster has fewer (a
        single-broker development Kafka)."""
        from relais_kit import kafka

        admin = kafka.admin(self.bootstrap, self.kafka_security)
        await admin.start()
        try:
            brokers = len((await admin.describe_cluster())["brokers"])
        finally:
            await admin.close()
        return brokers if 0 < brokers < wanted else None

    # ------------------------------------------------------------------ children

    def env(self) -> dict[str, str]:
        """The environment every child gets."""
        env = dict(os.environ)
        pythonpath = [str(p) for p in PYTHONPATH]
        if env.get("PYTHONPATH"):
            pythonpath.append(env["PYTHONPATH"])
        env.update({
            "PYTHONPATH": os.pathsep.join(pythonpath),
            "PYTHONUNBUFFERED": "1",
            "DATABASE_URL": self.database_url,
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "RELAIS_HOST": "127.0.0.1",
            "RELAIS_SMTP_HOST": self.bind_host,
            "RELAIS_SMTP_PORT": str(self.smtp_port),
            "RELAIS_DEMO_DATA": "1" if self.demo_data else "0",
            "RELAIS_SMS_SPOOL": str(self.data_dir / "sms"),
            # Where sites and notifications fetch the public keys of the referral
            # service's tokens (relais_kit.jwks).
            "RELAIS_TOKEN_JWKS_URL": f"{self.url('referral')}/.well-known/jwks.json",
        })
        env.setdefault("RELAIS_ENV", "dev")
        # The demo and the tests run at any hour: no quiet hours for SMS unless asked for
        # (the service's own default, for production, holds them at night and on Sundays).
        env.setdefault("RELAIS_SMS_QUIET_HOURS", "")
        for name, (_, variable, _) in self.services.items():
            env[variable] = str(self.service_ports[name])
        if self.desk_operator:
            env["RELAIS_DESK_OPERATOR"] = self.desk_operator
        if self.simulated_operators is None:
            env.pop("RELAIS_SIMULATED_OPERATORS", None)
        else:
            env["RELAIS_SIMULATED_OPERATORS"] = self.simulated_operators
        # The ops console: where it signs people in and calls the services' ops APIs, and
        # the Prometheus it asks.
        for service, variable in (("referral", "RELAIS_REFERRAL_URL"), ("sites", "RELAIS_SITES_URL"),
                                  ("notifications", "RELAIS_NOTIFICATIONS_URL")):
            if service in self.service_ports:
                env[variable] = self.url(service)
        if self.prometheus_port is not None:
            env["RELAIS_PROMETHEUS_URL"] = f"http://{self.bind_host}:{self.prometheus_port}"
        env.update(self.extra_env)
        return env

    def env_for(self, name: str) -> dict[str, str]:
        """The environment of one child: env() and what is that child's own (an
        instance `referral-2` also gets what `child_env["referral"]` holds)."""
        env = self.env()
        own = {**self.child_env.get(service_of(name) or name, {}), **self.child_env.get(name, {})}
        env.update(own)
        env.update(self.extra_env)
        if (service := service_of(name)) is not None:  # this instance's own address
            env[SERVICES[service][1]] = str(self.service_ports[name])
            env["RELAIS_INSTANCE"] = name
            env["RELAIS_HOST"] = self.child_hosts.get(name, "127.0.0.1")
            if name in self.child_hosts and self.database_tcp_port and own.get("DATABASE_URL"):
                own["DATABASE_URL"] = env["DATABASE_URL"] = over_tcp(own["DATABASE_URL"], self.bind_host,
                                                                     self.database_tcp_port)
        if "DATABASE_URL" not in own:
            env.pop("DATABASE_URL", None)  # the administrator's: no child's business
        return env

    def _command(self, name: str) -> list[str]:
        if name == "prometheus":
            assert self.prometheus_port is not None
            return local_prometheus.command(local_prometheus.binary() or "prometheus", self.prometheus_config_file,
                                            self.data_dir / "prometheus" / "data",
                                            f"{self.bind_host}:{self.prometheus_port}")
        if name == "mailbox":
            return [sys.executable, "-m", "deploy.local.mailbox", "--dir", str(self.mailbox.directory),
                    "--host", self.bind_host, "--port", str(self.smtp_port)]
        if name == "simulator":
            return [sys.executable, str(SIMULATOR), *self.simulator_args]
        if name in KANNEL_CHILDREN:
            assert self.kannel is not None
            return self.kannel.commands()[name]
        if name == "kafka-gateway":
            auth = self.kafka_credentials
            return [sys.executable, "-m", "deploy.local.sasl_gateway", "--listen", self.bootstrap,
                    "--upstream", f"127.0.0.1:{self.broker_upstream_port}",
                    "--credentials", str(auth.credentials_file), "--cert", str(auth.cert_file),
                    "--key", str(auth.key_file)]
        return [sys.executable, "-m", SERVICES[service_of(name) or name][0]]

    def _open_log(self, name: str, *, fresh: bool) -> IO[bytes]:
        old = self._logs.pop(name, None)
        if old is not None:
            old.close()
        log = self.log_path(name).open("wb" if fresh else "ab")
        self._logs[name] = log
        return log

    def _spawn(self, name: str, *, fresh_log: bool) -> subprocess.Popen[bytes]:
        log = self._open_log(name, fresh=fresh_log)
        command = [*self.child_prefix.get(name, []), *self._command(name)]
        proc = subprocess.Popen(command, cwd=ROOT, env=self.env_for(name), stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.processes[name] = proc
        self._remember_children()
        return proc

    # A parent killed with SIGKILL leaves its children running (they are in sessions
    # of their own); the next start in the same data folder stops them.

    @property
    def _children_file(self) -> Path:
        return self.data_dir / "children.json"

    def _remember_children(self) -> None:
        alive = {name: {"pid": p.pid, "cmdline": [str(a) for a in p.args]}  # type: ignore[union-attr]
                 for name, p in self.processes.items() if p.poll() is None}
        self._children_file.write_text(json.dumps(alive))

    def reap_leftovers(self) -> list[str]:
        """Stops the children of an earlier platform in this data folder that outlived
        their parent (same pid and same command line); returns what it stopped."""
        try:
            recorded = json.loads(self._children_file.read_text())
        except (OSError, ValueError):
            return []
        import psutil

        found: dict[str, Any] = {}
        for name, child in recorded.items():
            try:
                proc = psutil.Process(child["pid"])
                if proc.cmdline() == child["cmdline"]:
                    found[f"{name} (pid {child['pid']})"] = proc
            except (psutil.Error, KeyError, TypeError):
                continue
        # The broker last, as in stop(): the others shut down faster while it answers.
        for group in ([p for n, p in found.items() if not n.startswith("broker ")],
                      [p for n, p in found.items() if n.startswith("broker ")]):
            for proc in group:
                with contextlib.suppress(psutil.Error):
                    proc.terminate()
            _, alive = psutil.wait_procs(group, timeout=STOP_TIMEOUT_S)
            for proc in alive:
                with contextlib.suppress(psutil.Error):
                    proc.kill()
            psutil.wait_procs(alive, timeout=STOP_TIMEOUT_S)
        stopped = list(found)
        self._children_file.unlink(missing_ok=True)
        return stopped

    def _wait_service(self, name: str) -> None:
        try:
            wait_healthy(self.url(name), self.health_timeout, process=self.processes[name], name=name)
        except (TimeoutError, PlatformError) as exc:
            raise PlatformError(f"service {name} did not become healthy: {exc}\n"
                                f"--- last lines of {self.log_path(name)}:\n{log_tail(self.log_path(name))}") from exc

    # ------------------------------------------------------------------ Kannel

    def _start_kannel(self) -> None:
        """Starts bearerbox, smsbox and fakesmsc and points the notifications service at
        them; says why not when Kannel is off or missing (SMS then go to the spool file)."""
        if not self.kannel_wanted:
            print("relais: Kannel off (RELAIS_KANNEL=0): SMS go to the spool file", file=sys.stderr, flush=True)
            return
        if not kannel_config.installed():
            print("relais: Kannel is not installed (deploy/kannel/install-kannel.sh): SMS go to the spool file",
                  file=sys.stderr, flush=True)
            return
        ports = kannel_config.KannelPorts(admin=free_port(), smsbox=free_port(), smsc=free_port(),
                                          sendsms=free_port())
        self.kannel = kannel_config.Kannel(self.data_dir / "kannel", ports,
                                           mo_url=f"{self.url('notifications')}/kannel/mo")
        self.kannel.write()
        self._spawn("bearerbox", fresh_log=True)
        wait_for_port(ports.smsbox, "127.0.0.1")
        wait_for_port(ports.smsc, "127.0.0.1")
        self._spawn("smsbox", fresh_log=True)
        self._spawn("fakesmsc", fresh_log=True)
        wait_for_port(ports.sendsms, "127.0.0.1")
        own = self.child_env.setdefault("notifications", {})
        own.update(self.kannel.notifications_env(f"{self.url('notifications')}/kannel/dlr"))

    # ------------------------------------------------------------------ Prometheus

    @property
    def prometheus_config_file(self) -> Path:
        return self.data_dir / "prometheus" / "prometheus.yml"

    def prometheus_targets(self) -> list[local_prometheus.ScrapeTarget]:
        """Every service child (each instance, the desk, whatever SERVICES holds), where
        it serves /metrics; before start(), at the ports it will take."""
        ports = self.service_ports or self._instance_ports()
        return [local_prometheus.ScrapeTarget(service_of(name) or name, name,
                                              f"{self.child_hosts.get(name, '127.0.0.1')}:{ports[name]}")
                for name in self.children]

    def _start_prometheus(self) -> None:
        """The child `prometheus`, with a configuration written from the children; left
        out, saying so, when the binary is not installed."""
        if local_prometheus.binary() is None:
            print("relais: no `prometheus` binary on PATH: starting without Prometheus "
                  "(`make prometheus` installs Debian's)", file=sys.stderr, flush=True)
            return
        assert self.prometheus_port is not None
        local_prometheus.write_configuration(self.prometheus_config_file, self.prometheus_targets())
        self._spawn("prometheus", fresh_log=True)
        self._wait_prometheus()

    def _wait_prometheus(self) -> None:
        url = f"http://{self.bind_host}:{self.prometheus_port}"
        try:
            local_prometheus.wait_ready(url, self.health_timeout, self.processes["prometheus"])
        except (TimeoutError, RuntimeError) as exc:
            raise PlatformError(f"Prometheus did not become ready: {exc}\n--- last lines of "
                                f"{self.log_path('prometheus')}:\n{log_tail(self.log_path('prometheus'))}") from exc
        self.prometheus_url = url

    def _wait_simulator(self) -> None:
        """Until the simulator says it is ready (or idle); its consumers read from the
        earliest offset, so nothing sent meanwhile is missed anyway."""
        proc = self.processes["simulator"]
        path = self.log_path("simulator")
        offset = path.stat().st_size if path.exists() else 0
        deadline = time.monotonic() + self.health_timeout
        while True:
            with path.open("rb") as f:
                f.seek(offset)
                text = f.read().decode("utf-8", errors="replace")
            if "simulator_ready" in text or "simulator_idle" in text:
                return
            if proc.poll() is not None:
                raise PlatformError(f"the operator simulator exited with code {proc.returncode}:\n"
                                    f"{log_tail(path)}")
            if time.monotonic() > deadline:
                raise PlatformError(f"the operator simulator not ready after {self.health_timeout:.0f}s:\n"
                                    f"{log_tail(path)}")
            time.sleep(0.1)

    @staticmethod
    def _terminate(procs: list[subprocess.Popen[bytes]], timeout: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM to all, then waits up to `timeout` for each, then SIGKILL."""
        for proc in procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGCONT)  # a paused child cannot act on SIGTERM
                    proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                proc.wait()

    def kill(self, name: str) -> None:
        """SIGKILL a child (for fault tests); `restart(name)` brings it back."""
        proc = self.processes[name]
        if proc.poll() is None:
            proc.kill()
        proc.wait()

    def pause(self, name: str) -> None:
        """SIGSTOP a child (e.g. the broker); `resume(name)` continues it."""
        self.processes[name].send_signal(signal.SIGSTOP)

    def resume(self, name: str) -> None:
        self.processes[name].send_signal(signal.SIGCONT)

    def restart(self, name: str) -> None:
        """Stops the child if it still runs (SIGTERM), starts it again on the same port
        with the same environment and waits until it is ready. `broker` comes back
        empty (memory storage): its topics are created again. `postgres` restarts the
        embedded server (`pg_ctl restart`)."""
        with self._lock:
            if name == "postgres":
                self._restart_postgres()
                return
            if name not in self.processes:
                raise KeyError(f"no child named {name!r}; children: {sorted(self.processes)}")
            self._terminate([self.processes[name]])
            if name == "broker":
                self._start_broker_again()
            elif name == "kafka-gateway":
                self._spawn(name, fresh_log=False)
                assert self.broker_port is not None
                wait_for_port(self.broker_port, self.bind_host)
            elif name == "simulator":
                self._spawn(name, fresh_log=False)
                self._wait_simulator()
            elif name == "prometheus":
                self._spawn(name, fresh_log=False)
                self._wait_prometheus()
            elif name in KANNEL_CHILDREN:
                self._spawn(name, fresh_log=False)
            else:
                self._spawn(name, fresh_log=False)
                self._wait_service(name)

    def _start_broker_again(self) -> None:
        assert self.broker_port is not None
        log = self._open_log("broker", fresh=False)
        self.processes["broker"] = self._tansu(log)
        self._remember_children()
        self._create_topics()

    def _restart_postgres(self) -> None:
        if self._postgres is None:
            raise RuntimeError("PostgreSQL is not embedded here: restart it where it runs")
        from pgserver import _commands
        from pgserver.utils import PostmasterInfo

        server = self._postgres
        pg_ctl = getattr(_commands, "pg_ctl")  # noqa: B009  # made at import time
        pg_ctl(["-w", "-m", "fast", "restart"], pgdata=server.pgdata, user=server.system_user, timeout=60)
        # pgserver stops the postmaster it knows by pid at cleanup: tell it the new one.
        server._postmaster_info = PostmasterInfo.read_from_pgdata(server.pgdata)

    def running(self, name: str) -> bool:
        proc = self.processes.get(name)
        return proc is not None and proc.poll() is None

    def _stop_postgres(self) -> None:
        server, self._postgres = self._postgres, None
        if server is not None:
            server.cleanup()

    def stop(self) -> None:
        """Simulator first, then the services, the mailbox, the broker and PostgreSQL.
        Safe to call twice, or after a failed start."""
        with self._lock:
            if not self._started:
                return
            self._started = False
            with contextlib.suppress(Exception):
                atexit.unregister(self.stop)
            self.stop_timings = {}
            steps: list[tuple[str, Callable[[], None]]] = []
            if "prometheus" in self.processes:
                steps.append(("prometheus", lambda: self._terminate([self.processes["prometheus"]])))
            if "simulator" in self.processes:
                steps.append(("simulator", lambda: self._terminate([self.processes["simulator"]])))
            steps.append(("services", lambda: self._terminate([self.processes[n] for n in self.children
                                                               if n in self.processes])))
            if "mailbox" in self.processes:
                steps.append(("mailbox", lambda: self._terminate([self.processes["mailbox"]])))
            if kannel := [self.processes[n] for n in KANNEL_CHILDREN if n in self.processes]:
                steps.append(("kannel", lambda: self._terminate(kannel)))
            if "kafka-gateway" in self.processes:
                steps.append(("kafka-gateway", lambda: self._terminate([self.processes["kafka-gateway"]])))
            if "broker" in self.processes:
                steps.append(("broker", lambda: self._terminate([self.processes["broker"]])))
            steps.append(("postgres", self._stop_postgres))
            for what, step in steps:
                began = time.monotonic()
                try:
                    step()
                except Exception as exc:  # stop the rest anyway
                    print(f"relais: stopping {what} failed: {exc!r}", file=sys.stderr)
                self.stop_timings[what] = round(time.monotonic() - began, 2)
            for log in self._logs.values():
                log.close()
            self._logs.clear()
            if not any(p.poll() is None for p in self.processes.values()):
                self._children_file.unlink(missing_ok=True)
