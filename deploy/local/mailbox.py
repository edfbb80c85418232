"""A local SMTP server for `make run` and the tests: accepts every message and keeps
it, untouched, as one `.eml` file per message (named by arrival time and a uuid) in
a folder. No relaying, no authentication: for a developer's machine only.

    python deploy/local/mailbox.py --dir .data/mail --port 8025
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import threading
import time
import uuid
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller


class _Keeper:
    """aiosmtpd handler: writes each accepted message to `directory` atomically (a
    hidden temporary file renamed into place), so readers never see half a mail."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        content = envelope.original_content or envelope.content
        if isinstance(content, str):
            content = content.encode("utf-8")
        await asyncio.to_thread(self._keep, content)
        return "250 Message accepted for delivery"

    def _keep(self, content: bytes) -> Path:
        name = f"{time.time_ns()}-{uuid.uuid4().hex}.eml"
        temporary = self.directory / f".{name}.tmp"
        temporary.write_bytes(content)
        return temporary.rename(self.directory / name)


class Mailbox:
    """`start()` listens on host:port (in a thread of its own), `stop()` stops;
    `messages()` reads back every message kept so far, oldest first."""

    def __init__(self, directory: Path, host: str = "127.0.0.1", port: int = 8025) -> None:
        self.directory = Path(directory)
        self.host = host
        self.port = port
        self._controller: Controller | None = None

    def start(self) -> Mailbox:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._controller = Controller(_Keeper(self.directory), hostname=self.host, port=self.port,
                                      enable_SMTPUTF8=True)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> Mailbox:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def files(self) -> list[Path]:
        return sorted(self.directory.glob("*.eml"))

    def messages(self) -> list[EmailMessage]:
        parser = BytesParser(policy=policy.default)
        found = []
        for path in self.files():
            message = parser.parsebytes(path.read_bytes())
            assert isinstance(message, EmailMessage)
            found.append(message)
        return found


def main() -> None:
    parser = argparse.ArgumentParser(description="Local SMTP server keeping every message as a .eml file.")
    parser.add_argument("--dir", type=Path, default=Path(".data/mail"), help="where to keep the messages")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8025)
    args = parser.parse_args()
    stopping = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.set())
    with Mailbox(args.dir, args.host, args.port):
        print(f"mailbox: smtp://{args.host}:{args.port} -> {args.dir.resolve()}", flush=True)
        stopping.wait()


if __name__ == "__main__":
    main()
