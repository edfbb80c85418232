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

import httpx

from deploy.local.mailbox import Mailbox
from relais_kit.embedded import free_port, start_broker, start_postgres, wait_for_port
from relais_kit.topics import create_topics, load_topics

ROOT = Path(__file__).resolve().parents[2]
TOPICS_FILE = ROOT / "deploy" / "topics.yaml"
SIMULATOR = ROOT / "simulator" / "operator_simulator.py"
PYTHONPATH = [ROOT / "libs" / "relais_kit", ROOT / "services" / "referral", ROOT / "services" / "sites",
              ROOT / "services" / "notifications", ROOT / "services" / "desk", ROOT]

# name -> (python module, port variable, default port)
SERVICES: dict[str, tuple[str, str, int]] = {
    "referral": ("relais_referral", "RELAIS_REFERRAL_PORT", 8000),
    "sites": ("relais_sites", "RELAIS_SITES_PORT", 8001),
    "notifications": ("relais_notifications", "RELAIS_NOTIFICATIONS_PORT", 8002),
    # Only with `desk_operator`: the operator desk, playing that operator.
    "desk": ("relais_desk", "RELAIS_DESK_PORT", 8003),
}
DEFAULT_BROKER_PORT = 9092
DEFAULT_SMTP_PORT = 8025
STOP_TIMEOUT_S = 10.0
LOG_TAIL_LINES = 40

T = TypeVar("T")


class PlatformError(RuntimeError):
    """A part of the platform did not start (the message carries its log's tail)."""


def wait_healthy(url: str, timeout: float = 60.0, *, process: subprocess.Popen[bytes] | None = None,
                 name: str | None = None) -> None:
    """Polls `<url>/healthz` (or `url` itself if it ends with /healthz) until it answers
    200. Raises TimeoutError after `timeout` seconds, PlatformError at once if
    `process` is given and exits meanwhile."""
    target = url if url.rstrip("/").endswith("/healthz") else f"{url.rstrip('/')}/healthz"
    deadline = time.monotonic() + timeout
    last = "no answer"
    with httpx.Client(timeout=2.0) as client:
        while True:
            if process is not None and process.poll() is not None:
                raise PlatformError(f"{name or target} exited with code {process.returncode} before being healthy")
            try:
                response = client.get(target)
                if response.status_code == 200:
                    return
                last = f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                last = type(exc).__name__
            if time.monotonic() > deadline:
                raise TimeoutError(f"{target} not healthy after {timeout:.0f}s (last: {last})")
            time.sleep(0.1)


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
        self.log_dir = Path(log_dir).resolve() if log_dir else self.data_dir / "logs"
        self.extra_env = dict(extra_env or {})
        self.health_timeout = health_timeout
        self.replication_factor = replication_factor
        self.embedded_broker = bootstrap is None
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

    # ------------------------------------------------------------------ addresses

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.service_ports[service]}"

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
        self._create_topics()
        # Its own process, as a real mail server would be: a thread here would compete
        # with whoever drives the platform (the benchmark, a test) for the GIL.
        self.mailbox = Mailbox(self.data_dir / "mail", "127.0.0.1", self.smtp_port)
        self._spawn("mailbox", fresh_log=True)
        wait_for_port(self.smtp_port)
        for name in self.services:  # all at once, then wait for each
            self._spawn(name, fresh_log=True)
        for name in self.services:
            self._wait_service(name)
        if self.simulated_operators != "":
            self._spawn("simulator", fresh_log=True)
            self._wait_simulator()

    def _assign_ports(self) -> None:
        for name, (_, variable, default) in self.services.items():
            self.service_ports[name] = self._port(variable, default)
        self.smtp_port = self._port("RELAIS_SMTP_PORT", DEFAULT_SMTP_PORT)
        if self.embedded_broker:
            self.broker_port = self._port("RELAIS_BROKER_PORT", DEFAULT_BROKER_PORT)
            self.bootstrap = f"127.0.0.1:{self.broker_port}"

    def _port(self, variable: str, default: int) -> int:
        """A free port, or (ports="default") the one in `extra_env` / the environment,
        else the usual one."""
        if self.ports == "free":
            return free_port()
        return int(self.extra_env.get(variable) or os.environ.get(variable) or default)

    def planned_ports(self) -> dict[str, int]:
        """Before `start()` with ports="default": what each part will listen on (to
        check they are free)."""
        found = {name: self._port(variable, default) for name, (_, variable, default) in self.services.items()}
        found["smtp"] = self._port("RELAIS_SMTP_PORT", DEFAULT_SMTP_PORT)
        if self.embedded_broker:
            found["broker"] = self._port("RELAIS_BROKER_PORT", DEFAULT_BROKER_PORT)
        return found

    def _start_broker(self) -> None:
        assert self.broker_port is not None
        log = self._open_log("broker", fresh=True)
        try:
            self.processes["broker"] = start_broker(self.broker_port, log)
            self._remember_children()
        except TimeoutError as exc:
            raise PlatformError(f"the embedded broker did not listen on {self.bootstrap}:\n"
                                f"{log_tail(self.log_path('broker'))}") from exc

    def _start_postgres(self) -> None:
        _forget_dead_handles(self.data_dir / "postgres")
        server, url = start_postgres(self.data_dir / "postgres")
        self._postgres = server
        # pgserver puts the socket elsewhere when the data folder's path is too long.
        try:
            self.database_url = server.get_uri("postgres")
        except Exception:
            self.database_url = url

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
                run_coroutine(create_topics(self.bootstrap, topics, replication_factor=factor))
                return
            except Exception as exc:  # a broker just started may not answer metadata yet
                if time.monotonic() > deadline:
                    raise PlatformError(f"could not create the topics on {self.bootstrap}: {exc!r}") from exc
                time.sleep(0.5)

    async def _fitting_replication_factor(self, wanted: int) -> int | None:
        """The file's factor, or the number of brokers if the cluster has fewer (a
        single-broker development Kafka)."""
        from aiokafka.admin import AIOKafkaAdminClient

        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
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
            "RELAIS_SMTP_HOST": "127.0.0.1",
            "RELAIS_SMTP_PORT": str(self.smtp_port),
            "RELAIS_DEMO_DATA": "1" if self.demo_data else "0",
            "RELAIS_SMS_SPOOL": str(self.data_dir / "sms"),
        })
        env.setdefault("RELAIS_ENV", "dev")
        for name, (_, variable, _) in self.services.items():
            env[variable] = str(self.service_ports[name])
        if self.desk_operator:
            env["RELAIS_DESK_OPERATOR"] = self.desk_operator
        if self.simulated_operators is None:
            env.pop("RELAIS_SIMULATED_OPERATORS", None)
        else:
            env["RELAIS_SIMULATED_OPERATORS"] = self.simulated_operators
        env.update(self.extra_env)
        return env

    def env_for(self, name: str) -> dict[str, str]:
        """The environment of one child: env() and what is that child's own."""
        env = self.env()
        env.update(self.child_env.get(name, {}))
        env.update(self.extra_env)
        return env

    def _command(self, name: str) -> list[str]:
        if name == "mailbox":
            return [sys.executable, "-m", "deploy.local.mailbox", "--dir", str(self.mailbox.directory),
                    "--host", "127.0.0.1", "--port", str(self.smtp_port)]
        if name == "simulator":
            return [sys.executable, str(SIMULATOR), *self.simulator_args]
        return [sys.executable, "-m", SERVICES[name][0]]

    def _open_log(self, name: str, *, fresh: bool) -> IO[bytes]:
        old = self._logs.pop(name, None)
        if old is not None:
            old.close()
        log = self.log_path(name).open("wb" if fresh else "ab")
        self._logs[name] = log
        return log

    def _spawn(self, name: str, *, fresh_log: bool) -> subprocess.Popen[bytes]:
        log = self._open_log(name, fresh=fresh_log)
        proc = subprocess.Popen(self._command(name), cwd=ROOT, env=self.env_for(name), stdin=subprocess.DEVNULL,
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
            elif name == "simulator":
                self._spawn(name, fresh_log=False)
                self._wait_simulator()
            else:
                self._spawn(name, fresh_log=False)
                self._wait_service(name)

    def _start_broker_again(self) -> None:
        assert self.broker_port is not None
        log = self._open_log("broker", fresh=False)
        self.processes["broker"] = start_broker(self.broker_port, log)
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
            if "simulator" in self.processes:
                steps.append(("simulator", lambda: self._terminate([self.processes["simulator"]])))
            steps.append(("services", lambda: self._terminate([self.processes[n] for n in self.services
                                                               if n in self.processes])))
            if "mailbox" in self.processes:
                steps.append(("mailbox", lambda: self._terminate([self.processes["mailbox"]])))
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
