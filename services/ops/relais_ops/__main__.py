"""`python -m relais_ops`: serves the ops service (lag monitor, /metrics) with uvicorn."""

from __future__ import annotations

import uvicorn

from relais_ops.app import create_app
from relais_ops.settings import load_settings


def main() -> None:
    settings = load_settings()
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_config=None)


if __name__ == "__main__":
    main()
