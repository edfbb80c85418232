"""`python -m relais_sites`: serves the sites API with uvicorn."""

from __future__ import annotations

import uvicorn

from relais_sites.app import create_app
from relais_sites.settings import load_settings


def main() -> None:
    settings = load_settings()
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_config=None)


if __name__ == "__main__":
    main()
