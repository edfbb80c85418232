"""`python -m relais_notifications`: the service on RELAIS_HOST:RELAIS_NOTIFICATIONS_PORT."""

from __future__ import annotations

import os

import uvicorn

from relais_notifications.app import create_app
from relais_notifications.settings import NotificationsSettings


def main() -> None:
    settings = NotificationsSettings()
    uvicorn.run(create_app(settings), host=os.environ.get("RELAIS_HOST", "127.0.0.1"),
                port=settings.port, log_config=None)


if __name__ == "__main__":
    main()
