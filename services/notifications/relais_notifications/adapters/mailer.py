"""The citizen's e-mail, through a real SMTP server (aiosmtplib). Plain text, UTF-8,
with a Message-ID derived from the delivery id: every attempt of one delivery
carries the same one."""

from __future__ import annotations

import uuid
from email.message import EmailMessage
from email.utils import format_datetime

import aiosmtplib

from relais_kit.envelope import now
from relais_notifications.adapters.ports import DeliveryError
from relais_notifications.domain.model import message_id


def build_message(*, notification_id: uuid.UUID, mail_from: str, domain: str, to: str,
                  subject: str, body: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = mail_from
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = format_datetime(now())
    message["Message-ID"] = message_id(notification_id, domain)
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies, please
    message["Content-Language"] = "fr"
    message.set_content(body, charset="utf-8", cte="quoted-printable")
    return message


class SmtpMailer:
    def __init__(self, *, host: str, port: int, mail_from: str, domain: str, timeout_s: float) -> None:
        self._host = host
        self._port = port
        self._from = mail_from
        self._domain = domain
        self._timeout = timeout_s

    async def send(self, *, notification_id: uuid.UUID, to: str, subject: str, body: str) -> None:
        message = build_message(notification_id=notification_id, mail_from=self._from,
                                domain=self._domain, to=to, subject=subject, body=body)
        # Reasons name the failure, never the server's words: they may quote the address.
        try:
            await aiosmtplib.send(message, hostname=self._host, port=self._port, timeout=self._timeout)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            raise DeliveryError(f"adresse e-mail refusée par le serveur de messagerie (code {codes[0]})",
                                permanent=all(500 <= c < 600 for c in codes)) from exc
        except aiosmtplib.SMTPResponseException as exc:
            raise DeliveryError(f"refus du serveur de messagerie (code {exc.code})",
                                permanent=500 <= exc.code < 600) from exc
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise DeliveryError(f"serveur de messagerie injoignable ({type(exc).__name__})") from exc
