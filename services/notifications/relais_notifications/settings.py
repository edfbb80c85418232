"""The notifications service's settings, on top of the platform's."""

from __future__ import annotations

from email.utils import parseaddr
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, model_validator

from relais_kit.settings import PlatformSettings
from relais_notifications.domain import quiet_hours
from relais_notifications.domain.quiet_hours import QuietHours

DEFAULT_FROM = "France Services <ne-pas-repondre@france-services.example>"


class NotificationsSettings(PlatformSettings):
    # Verifies the referral service's bearer tokens with its published keys.
    token_role: ClassVar[str] = "verifier"
    port: int = Field(default=8002, alias="RELAIS_NOTIFICATIONS_PORT")
    smtp_host: str = Field(default="127.0.0.1", alias="RELAIS_SMTP_HOST")
    smtp_port: int = Field(default=8025, alias="RELAIS_SMTP_PORT")
    smtp_timeout_s: float = Field(default=30.0, gt=0, alias="RELAIS_SMTP_TIMEOUT_S")
    mail_from: str = Field(default=DEFAULT_FROM, alias="RELAIS_MAIL_FROM")
    sms_spool: Path = Field(default=Path(".data/sms"), alias="RELAIS_SMS_SPOOL")
    # `spool` (a file, for development) or `kannel` (the SMS gateway, adapters/kannel.py):
    # its smsbox's sendsms URL and user, the sender name the citizen sees, and the base of
    # this service's delivery-report callback that Kannel calls, with a secret per delivery
    # derived from RELAIS_KANNEL_DLR_SECRET.
    sms_gateway: Literal["spool", "kannel"] = Field(default="spool", alias="RELAIS_SMS_GATEWAY")
    kannel_sendsms_url: str = Field(default="http://127.0.0.1:13013/cgi-bin/sendsms",
                                    alias="RELAIS_KANNEL_SENDSMS_URL")
    kannel_user: str = Field(default="relais", alias="RELAIS_KANNEL_USER")
    kannel_password: str = Field(default="", alias="RELAIS_KANNEL_PASSWORD")
    sms_sender: str = Field(default="FranceSvcs", pattern=r"^[A-Za-z0-9]{1,11}$", alias="RELAIS_SMS_SENDER")
    kannel_dlr_url: str = Field(default="http://127.0.0.1:8002/kannel/dlr", alias="RELAIS_KANNEL_DLR_URL")
    kannel_dlr_secret: str = Field(default="", alias="RELAIS_KANNEL_DLR_SECRET")
    # The secret in the URL smsbox calls with the texts telephones send (STOP): empty, refused.
    kannel_mo_secret: str = Field(default="", alias="RELAIS_KANNEL_MO_SECRET")
    # Quiet hours of the citizen's SMS, Paris time (domain/quiet_hours.py): an SMS due
    # between these hours ("HH:MM-HH:MM", evening then morning) waits until the morning;
    # with RELAIS_SMS_QUIET_REST_DAYS (default on) Sundays and French public holidays
    # are quiet all day, so it waits until the next working morning. Empty: no quiet
    # hours at all, days included (the local platform's default: tests and the demo run
    # at any hour). E-mails are never held.
    sms_quiet_hours: str = Field(default="20:00-08:00", alias="RELAIS_SMS_QUIET_HOURS")
    sms_quiet_rest_days: bool = Field(default=True, alias="RELAIS_SMS_QUIET_REST_DAYS")
    # A directory of templates replacing the package's, file by file (same names:
    # `sent.txt.j2`, `sms/sent.txt.j2`…): the citizen's texts changed without code.
    templates_dir: Path | None = Field(default=None, alias="RELAIS_NOTIFICATIONS_TEMPLATES")
    # Delivery loop: attempts before a delivery fails for good, exponential backoff
    # between them (base, doubled each time, capped), idle poll between wake-ups.
    max_attempts: int = Field(default=5, ge=1, alias="RELAIS_NOTIFICATIONS_MAX_ATTEMPTS")
    retry_base_s: float = Field(default=30.0, gt=0, alias="RELAIS_NOTIFICATIONS_RETRY_BASE_S")
    retry_max_s: float = Field(default=3600.0, gt=0, alias="RELAIS_NOTIFICATIONS_RETRY_MAX_S")
    poll_s: float = Field(default=2.0, gt=0, alias="RELAIS_NOTIFICATIONS_POLL_S")
    delivery_workers: int = Field(default=4, ge=1, alias="RELAIS_NOTIFICATIONS_WORKERS")
    # Days after which a delivery that is no longer pending loses its content (address,
    # subject, body); the facts of the delivery stay.
    retention_delivery_days: int = Field(default=180, ge=1, alias="RELAIS_RETENTION_DELIVERY_DAYS")

    @model_validator(mode="after")
    def _kannel_complete(self) -> NotificationsSettings:
        if self.sms_gateway == "kannel" and (not self.kannel_password or len(self.kannel_dlr_secret) < 16):
            raise ValueError("RELAIS_SMS_GATEWAY=kannel needs RELAIS_KANNEL_PASSWORD and a"
                             " RELAIS_KANNEL_DLR_SECRET of 16 characters at least")
        return self

    @model_validator(mode="after")
    def _quiet_hours_readable(self) -> NotificationsSettings:
        self.quiet_hours  # noqa: B018 - a typo stops the service at start, not at night
        return self

    @property
    def quiet_hours(self) -> QuietHours | None:
        return quiet_hours.parse(self.sms_quiet_hours, rest_days=self.sms_quiet_rest_days)

    @property
    def mail_domain(self) -> str:
        """The domain of the sender address, used on the right of every Message-ID."""
        _, address = parseaddr(self.mail_from)
        return address.rpartition("@")[2] or "france-services.example"
