"""Kannel as the compose site and Kubernetes run it: each box started the container's
way (`python -m deploy.kannel.container bearerbox|smsbox`, which writes its file and
becomes the box), on the configuration of deploy/kannel/container.py, with the try-out's
SMSC (deploy/kannel/smsc-fake.conf and fakesmsc). An SMS sent through sendsms reaches
fakesmsc and its delivery reports reach the callback; a reply reaches the replies'
callback with its secret; a wrong password is refused; the SMPP example the deployer
starts from is a configuration bearerbox accepts. A plain HTTP server stands in for the
notifications service (its callbacks are tested in test_notifications_kannel*.py).

The container's ports are fixed (13000, 13001, 13013, 10000): skipped when one is taken."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from deploy.kannel import container
from deploy.kannel.config import FAKESMSC, installed, program
from relais_kit.embedded import free_port, wait_for_port

ROOT = Path(__file__).resolve().parents[2]
PORTS = (container.ADMIN_PORT, container.BOX_PORT, container.SENDSMS_PORT, container.FAKE_SMSC_PORT)
SECRET = "replies-secret-0123456789"
PASSWORD = "sendsms-password-0123456789"


def _taken(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


pytestmark = [
    pytest.mark.skipif(not installed(), reason="Kannel not installed (deploy/kannel/install-kannel.sh)"),
    pytest.mark.skipif(any(_taken(p) for p in PORTS), reason=f"one of Kannel's container ports {PORTS} is taken"),
]


class Callbacks:
    """The notifications service's stand-in: every path it is called on."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        calls = self.paths

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                calls.append(self.path)
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, prefix: str, count: int = 1, timeout: float = 20.0) -> list[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [p for p in self.paths if p.startswith(prefix)]
            if len(found) >= count:
                return found
            time.sleep(0.2)
        raise AssertionError(f"no {count} call(s) to {prefix} in {timeout}s: {self.paths}")


class Boxes:
    def __init__(self, directory: Path, smsc: Path, callbacks: Callbacks) -> None:
        self.directory = directory
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.env = {**os.environ, "PYTHONPATH": str(ROOT),
                    "RELAIS_KANNEL_ADMIN_PASSWORD": "admin-password-0123456789",
                    "RELAIS_KANNEL_SMSC_FILE": str(smsc),
                    "RELAIS_KANNEL_STORE_DIR": str(directory / "store"),
                    "RELAIS_KANNEL_CONFIG_DIR": str(directory / "conf"),
                    "RELAIS_KANNEL_PASSWORD": PASSWORD, "RELAIS_KANNEL_MO_SECRET": SECRET,
                    "RELAIS_KANNEL_MO_URL": f"{callbacks.url}/kannel/mo"}
        (directory / "store").mkdir(parents=True, exist_ok=True)

    def start(self, name: str, command: list[str]) -> None:
        with (self.directory / f"{name}.log").open("ab") as out:
            self.processes[name] = subprocess.Popen(command, env=self.env, cwd=ROOT, stdout=out,
                                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                                    start_new_session=True)

    def box(self, name: str) -> None:
        self.start(name, [sys.executable, "-m", "deploy.kannel.container", name])

    def log(self, name: str) -> str:
        return (self.directory / f"{name}.log").read_text(errors="replace")

    def stop(self, *names: str) -> None:
        for name in names or tuple(reversed(self.processes)):
            proc = self.processes.pop(name)
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


@pytest.fixture
def callbacks() -> Iterator[Callbacks]:
    served = Callbacks()
    yield served
    served.server.shutdown()


def boxes_on(tmp_path: Path, smsc_file: str, callbacks: Callbacks) -> Boxes:
    smsc = tmp_path / "smsc.conf"
    smsc.write_text((ROOT / "deploy" / "kannel" / smsc_file).read_text())
    smsc.chmod(0o400)
    return Boxes(tmp_path, smsc, callbacks)


def test_an_sms_goes_out_and_its_reports_and_replies_come_back(tmp_path: Path, callbacks: Callbacks) -> None:
    boxes = boxes_on(tmp_path, "smsc-fake.conf", callbacks)
    try:
        boxes.box("bearerbox")
        wait_for_port(container.BOX_PORT)
        wait_for_port(container.FAKE_SMSC_PORT)
        boxes.box("smsbox")
        wait_for_port(container.SENDSMS_PORT)
        boxes.start("fakesmsc", [sys.executable, "-m", "deploy.kannel.container", "fakesmsc"])
        assert all(container.probe(box) for box in ("bearerbox", "smsbox"))
        for box in ("bearerbox", "smsbox"):
            assert (tmp_path / "conf" / f"{box}.conf").stat().st_mode & 0o777 == 0o600
        sendsms = f"http://127.0.0.1:{container.SENDSMS_PORT}/cgi-bin/sendsms"
        query = {"username": "relais", "to": "0612345678", "text": "Bonjour", "dlr-mask": "31",
                 "dlr-url": f"{callbacks.url}/kannel/dlr?id=one&type=%d"}
        refused = httpx.get(sendsms, params={**query, "password": "not-the-password"}, timeout=10)
        assert refused.status_code == 403
        deadline = time.monotonic() + 20
        while True:   # smsbox answers 503 until bearerbox has its SMSC
            sent = httpx.get(sendsms, params={**query, "password": PASSWORD}, timeout=10)
            if sent.status_code != 503 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert sent.status_code == 202, sent.text
        reports = callbacks.wait_for("/kannel/dlr", count=2)
        assert reports == ["/kannel/dlr?id=one&type=8", "/kannel/dlr?id=one&type=1"]   # accepted, delivered
        assert "FranceSvcs 0612345678 text Bonjour" in boxes.log("fakesmsc")
        assert f"Port {container.FAKE_SMSC_PORT} interval 1.000 max-messages 0" in boxes.log("fakesmsc")
        # A citizen replies STOP: another fakesmsc, which sends one message (the fake SMSC
        # takes one client at a time).
        boxes.stop("fakesmsc")
        boxes.start("telephone", [program(FAKESMSC), "-H", "127.0.0.1", "-r", str(container.FAKE_SMSC_PORT),
                                  "-m", "1", "0611111111 36000 text STOP"])
        (reply,) = callbacks.wait_for("/kannel/mo")
        assert reply == f"/kannel/mo?secret={SECRET}&from=0611111111&text=STOP"
    finally:
        boxes.stop()
    for box in ("bearerbox", "smsbox"):
        assert "PANIC" not in boxes.log(box), boxes.log(box)
        assert "0612345678" not in boxes.log(box)   # -v 2: no line with the number


def test_bearerbox_accepts_the_smpp_example(tmp_path: Path, callbacks: Callbacks) -> None:
    boxes = boxes_on(tmp_path, "smsc.example.conf", callbacks)
    try:
        boxes.box("bearerbox")
        wait_for_port(container.BOX_PORT)   # a configuration error: it would have stopped
        assert boxes.processes["bearerbox"].poll() is None
    finally:
        boxes.stop()
    assert "PANIC" not in boxes.log("bearerbox") and "may not contain field" not in boxes.log("bearerbox")
