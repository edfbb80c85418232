"""Kannel in a container (the `kannel` target of deploy/container/Dockerfile), for the
compose site and Kubernetes: `python -m deploy.kannel.container bearerbox|smsbox`
writes that box's configuration from the environment, then becomes the box (exec: the
box is the container's main process and gets its signals).

Why each box writes its own file: bearerbox alone holds the SMSC account (the
deployer's `group = smsc`, a mounted secret file) and the admin password; smsbox alone
holds the sendsms password and the secret of the replies' callback. The two run side
by side sharing one network namespace (one Pod; in compose, that of the service
`kannel`, which runs `pause` and only holds it): the box protocol between them has
neither authentication nor encryption, so it stays on the loopback. Only smsbox's
sendsms port listens on the network.

What `make run` uses instead: deploy/kannel/config.py (one file, free ports, fakesmsc).
Stdlib only: the image has no virtualenv."""

from __future__ import annotations

import os
import re
import signal
import socket
import sys
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import quote

from deploy.kannel.config import BEARERBOX, FAKESMSC, SENDER, SMSBOX, USER, program

ADMIN_PORT = 13000  # bearerbox's HTTP administration, loopback only
BOX_PORT = 13001  # bearerbox <- smsbox, loopback only
SENDSMS_PORT = 13013  # smsbox's /cgi-bin/sendsms, the one port on the network
FAKE_SMSC_PORT = 10000  # deploy/kannel/smsc-fake.conf <- fakesmsc (the try-out only)
PROBED = {"bearerbox": BOX_PORT, "smsbox": SENDSMS_PORT}

# Every variable this module reads (the deployment tests check the manifests set no other).
VARIABLES = ("RELAIS_KANNEL_ADMIN_PASSWORD", "RELAIS_KANNEL_SMSC_FILE", "RELAIS_KANNEL_STORE_DIR",
             "RELAIS_KANNEL_PASSWORD", "RELAIS_KANNEL_MO_SECRET", "RELAIS_KANNEL_MO_URL",
             "RELAIS_SMS_SENDER", "RELAIS_KANNEL_CONFIG_DIR")
DEFAULT_SMSC_FILE = "/etc/kannel/smsc/smsc.conf"
DEFAULT_STORE_DIR = "/var/spool/kannel"
DEFAULT_CONFIG_DIR = "/tmp/kannel"  # noqa: S108 (the container's own tmpfs; 0700, files 0600)
# Unquoted in kannel.conf and put in URLs as they are: URL-unreserved characters only,
# so that no value can end a line or a group of the configuration.
SECRET = re.compile(r"[A-Za-z0-9._~-]{16,}")
SENDER_NAME = re.compile(r"[A-Za-z0-9]{1,11}")  # the same rule as RELAIS_SMS_SENDER
URL = re.compile(r"https?://[A-Za-z0-9.-]+(:\d+)?(/[A-Za-z0-9._~/-]*)?")
GROUP = re.compile(r"^\s*group\s*=\s*(\S+)\s*$", re.M)


class ConfigError(ValueError):
    """A missing or malformed setting: the box does not start, and says which."""


def _secret(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "")
    if not SECRET.fullmatch(value):
        raise ConfigError(f"{name}: 16 characters at least, letters, digits and . _ ~ - only")
    return value


def _url(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "")
    if not URL.fullmatch(value):
        raise ConfigError(f"{name}: an http(s) URL without query, e.g. http://notifications:8002/kannel/mo")
    return value


def smsc_groups(text: str) -> str:
    """The deployer's connection(s) to the operator: `group = smsc` only (one or more
    binds), nothing that would override the platform's core or boxes."""
    groups = GROUP.findall(text)
    if not groups or set(groups) != {"smsc"}:
        raise ConfigError(f"the SMSC file must hold `group = smsc` groups only, found {groups or 'none'}")
    return text.strip() + "\n"


def bearerbox_config(env: Mapping[str, str], smsc: str) -> str:
    store = env.get("RELAIS_KANNEL_STORE_DIR", DEFAULT_STORE_DIR)
    return BEARERBOX_CONFIG.format(admin_port=ADMIN_PORT, box_port=BOX_PORT, store=store,
                                   admin_password=_secret(env, "RELAIS_KANNEL_ADMIN_PASSWORD"),
                                   smsc=smsc_groups(smsc))


def smsbox_config(env: Mapping[str, str]) -> str:
    sender = env.get("RELAIS_SMS_SENDER", SENDER)
    if not SENDER_NAME.fullmatch(sender):
        raise ConfigError("RELAIS_SMS_SENDER: 1 to 11 letters or digits")
    mo_url = _url(env, "RELAIS_KANNEL_MO_URL")
    mo_secret = quote(_secret(env, "RELAIS_KANNEL_MO_SECRET"), safe="")
    return SMSBOX_CONFIG.format(admin_port=ADMIN_PORT, box_port=BOX_PORT, sendsms_port=SENDSMS_PORT,
                                sender=sender, user=USER, password=_secret(env, "RELAIS_KANNEL_PASSWORD"),
                                mo_get_url=f"{mo_url}?secret={mo_secret}&from=%p&text=%a")


def write(box: str, env: Mapping[str, str]) -> Path:
    """The box's file, readable by its owner only (it holds passwords)."""
    if box == "bearerbox":
        smsc_file = Path(env.get("RELAIS_KANNEL_SMSC_FILE", DEFAULT_SMSC_FILE))
        try:
            smsc = smsc_file.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"RELAIS_KANNEL_SMSC_FILE {smsc_file}: {exc.strerror}") from None
        text = bearerbox_config(env, smsc)
    else:
        text = smsbox_config(env)
    directory = Path(env.get("RELAIS_KANNEL_CONFIG_DIR", DEFAULT_CONFIG_DIR))
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = directory / f"{box}.conf"
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    return path


def probe(box: str) -> bool:
    """The box listens (its port on the loopback): the container's health check."""
    try:
        with socket.create_connection(("127.0.0.1", PROBED[box]), timeout=3):
            return True
    except OSError:
        return False


def started_boxes(env: Mapping[str, str]) -> list[str]:
    """The boxes this container wrote a configuration for (the image's HEALTHCHECK does
    not know which box the command chose)."""
    directory = Path(env.get("RELAIS_KANNEL_CONFIG_DIR", DEFAULT_CONFIG_DIR))
    return [box for box in PROBED if (directory / f"{box}.conf").is_file()]


def main(argv: list[str]) -> int:
    match argv:
        case ["bearerbox" | "smsbox" as box]:
            try:
                path = write(box, os.environ)
            except ConfigError as exc:
                print(f"kannel {box}: {exc}", file=sys.stderr)
                return 2
            binary = program(BEARERBOX if box == "bearerbox" else SMSBOX)
            # -v 2: warnings and errors only (info lines carry the number and the text).
            os.execv(binary, [binary, "-v", "2", str(path)])  # noqa: S606 (a fixed program, no shell)
        case ["probe", "bearerbox" | "smsbox" as box]:
            return 0 if probe(box) else 1
        case ["probe"]:
            return 0 if all(probe(box) for box in started_boxes(os.environ)) else 1
        case ["pause"]:
            # compose's holder of the boxes' network namespace (Kubernetes' pause
            # container): it never crashes, so the boxes never lose their network.
            signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
            while True:
                signal.pause()
        case ["fakesmsc"]:
            # The try-out's stand-in for the operator: prints every SMS, sends none (-m 0).
            binary = program(FAKESMSC)
            args = [binary, "-H", "127.0.0.1", "-r", str(FAKE_SMSC_PORT), "-m", "0", "0600000000 36000 text STOP"]
            os.execv(binary, args)  # noqa: S606 (a fixed program, no shell)
    print("usage: python -m deploy.kannel.container bearerbox|smsbox|pause|fakesmsc|probe [box]", file=sys.stderr)
    return 2


BEARERBOX_CONFIG = """\
# Written by deploy/kannel/container.py at start: do not edit.
group = core
admin-port = {admin_port}
admin-interface = 127.0.0.1
admin-password = {admin_password}
admin-allow-ip = 127.0.0.1
smsbox-port = {box_port}
smsbox-interface = 127.0.0.1
box-allow-ip = 127.0.0.1
# Delivery reports are matched in memory: a restart forgets the SMS awaiting theirs.
dlr-storage = internal
# SMS accepted but not yet handed to the SMSC survive a restart of the container.
store-type = file
store-location = {store}/kannel.store

# Required by bearerbox with smsbox-port; smsbox's own settings are in smsbox's file.
group = smsbox
bearerbox-host = 127.0.0.1
bearerbox-port = {box_port}

# The operator's SMSC: the deployer's file (RELAIS_KANNEL_SMSC_FILE).
{smsc}"""

SMSBOX_CONFIG = """\
# Written by deploy/kannel/container.py at start: do not edit.
group = core
admin-port = {admin_port}
smsbox-port = {box_port}

group = smsbox
bearerbox-host = 127.0.0.1
bearerbox-port = {box_port}
sendsms-port = {sendsms_port}
global-sender = {sender}
# A delivery report the notifications service cannot take yet (503) is tried again.
http-request-retry = 5
http-queue-delay = 2

# The notifications service's account; the network policy (Kubernetes) or the internal
# network (compose) keeps every other client away.
group = sendsms-user
username = {user}
password = {password}
default-sender = {sender}
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

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
