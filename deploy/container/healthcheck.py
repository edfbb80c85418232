"""The image's HEALTHCHECK: GET /healthz of the service this container runs, exit 0
when it answers 200. Which service is read from PID 1's command line
(`python -m relais_sites`), its port from the same variable the service reads. A
container running an ops tool (no HTTP server) is healthy while it runs.
Standard library only: it runs in the image, outside the services' code."""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

PORTS = {  # module: (variable, default) as in each service's settings
    "relais_referral": ("RELAIS_REFERRAL_PORT", 8000),
    "relais_sites": ("RELAIS_SITES_PORT", 8001),
    "relais_notifications": ("RELAIS_NOTIFICATIONS_PORT", 8002),
    "relais_desk": ("RELAIS_DESK_PORT", 8003),
    "relais_ops": ("RELAIS_OPS_PORT", 8004),
}


def served_module(cmdline: list[str]) -> str | None:
    """The service module of `python -m <module>` with no sub-command, else None."""
    if "-m" not in cmdline:
        return None
    rest = cmdline[cmdline.index("-m") + 1:]
    if len(rest) != 1 or rest[0] not in PORTS:
        return None   # an ops tool, or a sub-command such as `relais_desk add-expert`
    return rest[0]


def health_url(module: str, environ: dict[str, str]) -> str:
    variable, default = PORTS[module]
    return f"http://127.0.0.1:{int(environ.get(variable, default))}/healthz"


def main() -> int:
    raw = Path("/proc/1/cmdline").read_bytes().split(b"\0")
    module = served_module([part.decode() for part in raw if part])
    if module is None:
        return 0
    try:
        with urllib.request.urlopen(health_url(module, dict(os.environ)), timeout=4) as answer:  # noqa: S310
            return 0 if answer.status == 200 else 1
    except (urllib.error.URLError, OSError) as exc:
        print(f"{module}: /healthz not healthy: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
