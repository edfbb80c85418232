"""The platform's Kannel (Debian's `kannel` package, installed by install-kannel.sh):
one bearerbox with an `smsc = fake` connection that fakesmsc (kannel-extras: the
stand-in for a mobile operator's SMSC) connects to, and one smsbox answering
`/cgi-bin/sendsms` for one user. Delivery reports: `dlr-storage = internal`; the fake
SMSC reports every SMS it hands to fakesmsc as accepted (8) and delivered (1).
deploy/local/launcher.py writes the configuration on free ports and starts the three."""

from __future__ import annotations

import secrets
import shutil
from dataclasses import dataclass, field
from pathlib import Path

BEARERBOX = Path("/usr/sbin/bearerbox")
SMSBOX = Path("/usr/sbin/smsbox")
FAKESMSC = Path("/usr/lib/kannel/test/fakesmsc")
SENDER = "FranceSvcs"  # alphanumeric sender name: 11 characters at most
USER = "relais"


def installed() -> bool:
    """Whether the three programs are here (Debian's kannel and kannel-extras)."""
    return all(p.is_file() for p in (BEARERBOX, SMSBOX, FAKESMSC)) or bool(
        shutil.which("bearerbox") and shutil.which("smsbox") and shutil.which("fakesmsc"))


def program(path: Path) -> str:
    return str(path) if path.is_file() else (shutil.which(path.name) or str(path))


@dataclass(frozen=True)
class KannelPorts:
    admin: int  # bearerbox's HTTP administration
    smsbox: int  # bearerbox <- smsbox
    smsc: int  # bearerbox's fake SMSC <- fakesmsc
    sendsms: int  # smsbox's HTTP sendsms


@dataclass(frozen=True)
class Kannel:
    directory: Path
    ports: KannelPorts
    host: str = "127.0.0.1"
    password: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    admin_password: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    dlr_secret: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    mo_secret: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    sender: str = SENDER
    # The notifications service's callback for the texts telephones send (STOP).
    mo_url: str = "http://127.0.0.1:8002/kannel/mo"

    @property
    def config_file(self) -> Path:
        return self.directory / "kannel.conf"

    @property
    def sendsms_url(self) -> str:
        return f"http://{self.host}:{self.ports.sendsms}/cgi-bin/sendsms"

    def write(self) -> Path:
        """Writes kannel.conf (readable by its owner only: it holds the passwords)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        text = CONFIG.format(host=self.host, ports=self.ports, password=self.password,
                             admin_password=self.admin_password, sender=self.sender, user=USER,
                             mo_get_url=f"{self.mo_url}?secret={self.mo_secret}&from=%p&text=%a")
        self.config_file.touch(mode=0o600)
        self.config_file.write_text(text, encoding="utf-8")
        return self.config_file

    def commands(self) -> dict[str, list[str]]:
        """By child name, in the order to start them."""
        return {
            # -v 2: warnings and errors only on their output (info lines carry the number and text).
            "bearerbox": [program(BEARERBOX), "-v", "2", str(self.config_file)],
            "smsbox": [program(SMSBOX), "-v", "2", str(self.config_file)],
            # Receives (and prints) every SMS sent; sends no message itself (-m 0).
            "fakesmsc": [program(FAKESMSC), "-H", self.host, "-r", str(self.ports.smsc), "-m", "0",
                         "0600000000 36000 text STOP"],
        }

    def notifications_env(self, dlr_url: str) -> dict[str, str]:
        """What the notifications service needs to send through this Kannel."""
        return {"RELAIS_SMS_GATEWAY": "kannel", "RELAIS_KANNEL_SENDSMS_URL": self.sendsms_url,
                "RELAIS_KANNEL_USER": USER, "RELAIS_KANNEL_PASSWORD": self.password,
                "RELAIS_SMS_SENDER": self.sender, "RELAIS_KANNEL_DLR_URL": dlr_url,
                "RELAIS_KANNEL_DLR_SECRET": self.dlr_secret, "RELAIS_KANNEL_MO_SECRET": self.mo_secret}


CONFIG = """\
# Written by deploy/kannel/config.py for one local platform: do not edit.
group = core
admin-port = {ports.admin}
admin-interface = {host}
admin-password = {admin_password}
admin-allow-ip = 127.0.0.1
smsbox-port = {ports.smsbox}
smsbox-interface = {host}
box-allow-ip = 127.0.0.1
dlr-storage = internal
log-level = 1

group = smsc
smsc = fake
smsc-id = fake
port = {ports.smsc}
connect-allow-ip = 127.0.0.1

group = smsbox
bearerbox-host = {host}
bearerbox-port = {ports.smsbox}
sendsms-port = {ports.sendsms}
sendsms-interface = {host}
global-sender = {sender}
# A delivery report the notifications service cannot take yet (503) is tried again.
http-request-retry = 5
http-queue-delay = 2
log-level = 1

group = sendsms-user
username = {user}
password = {password}
default-sender = {sender}
user-allow-ip = 127.0.0.1
concatenation = true
max-messages = 3

# Texts from telephones go to the notifications service (STOP opts the number out);
# no reply SMS is ever sent (max-messages = 0).
group = sms-service
keyword = default
get-url = "{mo_get_url}"
catch-all = true
omit-empty = true
max-messages = 0
"""
