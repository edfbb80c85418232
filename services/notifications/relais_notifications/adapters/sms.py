"""SMS. No real gateway here: the dev adapter appends each SMS, as one JSON line, to
`sms.jsonl` under the spool folder (`RELAIS_SMS_SPOOL`). A real gateway is another
class with the same `send`."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

from relais_kit.envelope import now
from relais_notifications.adapters.ports import DeliveryError
from relais_notifications.domain.sms import gsm7_length

SPOOL_FILE = "sms.jsonl"


class SpoolSmsGateway:
    def __init__(self, directory: Path) -> None:
        self.path = directory / SPOOL_FILE

    async def send(self, *, notification_id: uuid.UUID, to: str, text: str) -> None:
        line = json.dumps({"id": str(notification_id), "to": to, "text": text,
                           "septets": gsm7_length(text), "at": now().isoformat()},
                          ensure_ascii=False) + "\n"
        try:
            await asyncio.to_thread(self._append, line)
        except OSError as exc:
            raise DeliveryError(f"passerelle SMS indisponible ({type(exc).__name__})") from exc

    def _append(self, line: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as spool:
            spool.write(line)

    def read(self) -> list[dict[str, str]]:
        """Every SMS in the spool (for tests and the curious)."""
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text(encoding="utf-8").splitlines() if line]
