"""Waiting for a child process of the local platform to answer 200 on one address."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable

import httpx


def until_ok(target: str, timeout: float, *, process: subprocess.Popen[bytes] | None,
             exited: Callable[[int], Exception], what: str) -> None:
    """Polls `target` until it answers 200. Raises TimeoutError after `timeout` seconds
    (`<target> not <what> after …`), and `exited(returncode)` at once if `process`
    exits meanwhile."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    with httpx.Client(timeout=2.0) as client:
        while True:
            if process is not None and process.poll() is not None:
                raise exited(process.returncode)
            try:
                response = client.get(target)
                if response.status_code == 200:
                    return
                last = f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                last = type(exc).__name__
            if time.monotonic() > deadline:
                raise TimeoutError(f"{target} not {what} after {timeout:.0f}s (last: {last})")
            time.sleep(0.1)
