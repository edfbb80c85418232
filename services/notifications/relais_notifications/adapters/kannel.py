"""SMS through Kannel (the open-source SMS gateway: bearerbox + smsbox), with delivery
reports. `send` asks smsbox's `/cgi-bin/sendsms` to send the text with the platform's
sender name and a `dlr-url`: Kannel calls it back (entrypoints/kannel.py) with the
report's type in place of `%d`. The callback URL carries the delivery id and a secret
derived from it (HMAC of the id): only Kannel, which got it from us, can report on a
delivery. Errors become DeliveryError, permanent when smsbox refuses the request (4xx).

Never logs the number nor the text."""

from __future__ import annotations

import hashlib
import hmac
import uuid
from dataclasses import dataclass
from urllib.parse import urlencode

import httpx

from relais_notifications.adapters.ports import DeliveryError
from relais_notifications.domain.sms import GSM7_BASIC, GSM7_EXTENDED

# Kannel's DLR types (dlr-mask bits): 1 delivered to the phone, 2 not delivered to the
# phone, 4 buffered (queued) by the operator, 8 accepted by the operator's SMSC, 16
# rejected by the operator's SMSC. 31 asks for all of them.
DLR_MASK = 31
GSM7 = 0  # Kannel's `coding`: 7-bit GSM alphabet (160 characters per SMS)
UCS2 = 2  # 16-bit: 70 characters per SMS; only when a character is not in GSM-7


def dlr_secret(secret: str, delivery_id: uuid.UUID) -> str:
    """The secret of one delivery's callback URL (compared with hmac.compare_digest)."""
    return hmac.new(secret.encode(), str(delivery_id).encode(), hashlib.sha256).hexdigest()[:32]


def coding(text: str) -> int:
    return GSM7 if all(c in GSM7_BASIC or c in GSM7_EXTENDED for c in text) else UCS2


@dataclass(frozen=True)
class KannelSettings:
    sendsms_url: str  # e.g. http://127.0.0.1:13013/cgi-bin/sendsms
    user: str
    password: str
    sender: str  # alphanumeric sender name, 11 characters at most
    dlr_url: str  # the notifications service's callback, e.g. http://127.0.0.1:8002/kannel/dlr
    dlr_secret: str
    timeout_s: float = 10.0


def sendsms_params(settings: KannelSettings, *, notification_id: uuid.UUID, to: str, text: str) -> dict[str, str]:
    """The query of one sendsms request (unit-tested: no network)."""
    callback = settings.dlr_url + "?" + urlencode({"id": str(notification_id),
                                                   "secret": dlr_secret(settings.dlr_secret, notification_id)})
    return {"username": settings.user, "password": settings.password, "from": settings.sender,
            "to": to, "text": text, "charset": "UTF-8", "coding": str(coding(text)),
            "dlr-mask": str(DLR_MASK), "dlr-url": callback + "&type=%d"}


class KannelSmsGateway:
    def __init__(self, settings: KannelSettings, client: httpx.AsyncClient | None = None) -> None:
        if not settings.sender or len(settings.sender) > 11 or not settings.sender.isalnum():
            raise ValueError("the SMS sender name must be 1 to 11 letters or digits")
        self._settings = settings
        self._client = client

    async def send(self, *, notification_id: uuid.UUID, to: str, text: str) -> None:
        params = sendsms_params(self._settings, notification_id=notification_id, to=to, text=text)
        try:
            if self._client is not None:
                response = await self._client.get(self._settings.sendsms_url, params=params,
                                                  timeout=self._settings.timeout_s)
            else:
                async with httpx.AsyncClient() as client:
                    response = await client.get(self._settings.sendsms_url, params=params,
                                                timeout=self._settings.timeout_s)
        except httpx.HTTPError as exc:
            raise DeliveryError(f"passerelle SMS injoignable ({type(exc).__name__})") from exc
        if response.is_success:
            return
        # smsbox answers a line such as "Authorization failed for sendsms" (no personal data).
        said = " ".join(response.text.split())[:200]
        if 400 <= response.status_code < 500:
            raise DeliveryError(f"passerelle SMS : envoi refusé ({response.status_code} {said})", permanent=True)
        raise DeliveryError(f"passerelle SMS indisponible ({response.status_code} {said})")
