"""The launcher's side of "one PostgreSQL role per service": each service's schema,
its role set up with `relais_kit.dbroles`, its own DATABASE_URL; and, for the embedded
PostgreSQL, passwords required on every connection (pgserver initialises it with
`trust`: anyone reaching the socket could be anyone, the superuser included).

The passwords live in `<data dir>/postgres-roles.json` (mode 0600), with the URL of
each service (handy for the ops commands: `python -m relais_referral.accounts`...);
they are never printed nor logged."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Mapping
from pathlib import Path

import asyncpg

from relais_kit import dbroles
from relais_kit.dbroles import RoleSetupError

ADMIN = "postgres"  # pgserver's superuser
SECRETS_FILE = "postgres-roles.json"
__all__ = ["RoleSetupError", "Secrets", "connection_limit", "require_passwords", "schema_of", "service_urls"]
# pgserver listens on a Unix socket only; the TCP lines are for a server set up alike.
HBA = """\
# Written by deploy/local/pgroles.py: every connection gives its role's password.
local   all   all                  scram-sha-256
host    all   all   127.0.0.1/32   scram-sha-256
host    all   all   ::1/128        scram-sha-256
"""


def schema_of(service: str, env: Mapping[str, str], desk_operator: str | None = None) -> str:
    """The schema a service uses, as its settings compute it."""
    if service == "referral":
        return env.get("RELAIS_REFERRAL_DB_SCHEMA") or "referral"
    if service == "desk":
        operator = env.get("RELAIS_DESK_OPERATOR") or desk_operator or ""
        return env.get("RELAIS_DESK_DB_SCHEMA") or f"desk_{operator.replace('-', '_')}"
    return service


def connection_limit(instances: int) -> int:
    """A pool of 10 and a start-up connection per instance, and room for ops commands."""
    return max(dbroles.DEFAULT_CONNECTION_LIMIT, 12 * instances + 8)


class Secrets:
    """`postgres-roles.json`: role -> password, service -> URL; always mode 0600."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / SECRETS_FILE
        try:
            loaded = json.loads(self.path.read_text())
        except FileNotFoundError:
            loaded = {}
        except ValueError as exc:
            raise RoleSetupError(f"{self.path} is not valid JSON: fix or delete it") from exc
        self.passwords: dict[str, str] = dict(loaded.get("passwords", {}))
        self.urls: dict[str, str] = dict(loaded.get("urls", {}))

    def password(self, role: str) -> str:
        if role not in self.passwords:
            self.passwords[role] = dbroles.generate_password()
            self.save()
        return self.passwords[role]

    def save(self) -> None:
        temporary = self.path.with_suffix(".tmp")
        temporary.unlink(missing_ok=True)
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"passwords": self.passwords, "urls": self.urls}, f, indent=2)
        os.replace(temporary, self.path)


async def require_passwords(url: str, secrets: Secrets) -> str:
    """The embedded server asks every role for its password from now on (SCRAM-SHA-256
    in pg_hba.conf, reloaded); its superuser gets one, kept in `secrets`. Returns the
    administrator's URL, with that password."""
    admin = dbroles.with_credentials(url, ADMIN, secrets.password(ADMIN))
    try:
        conn = await asyncpg.connect(admin)
    except asyncpg.InvalidPasswordError as exc:
        raise RoleSetupError(
            f"the embedded PostgreSQL refuses the password of {ADMIN} kept in {secrets.path}: restore that "
            f"file, or delete the data folder of the embedded PostgreSQL (its data is lost)") from exc
    try:
        await conn.execute(f"ALTER ROLE {ADMIN} PASSWORD '{dbroles.scram_verifier(secrets.password(ADMIN))}'")
        hba = Path(await conn.fetchval("SHOW hba_file"))
        if hba.read_text() != HBA:
            hba.write_text(HBA)  # in place: keeps the owner (pgserver's user when run as root)
            await conn.execute("SELECT pg_reload_conf()")
            await _until_refused(dbroles.with_credentials(url, ADMIN, None))
    finally:
        await conn.close()
    return admin


async def _until_refused(url: str, attempts: int = 100) -> None:
    """The reload is a signal: wait until the server asks for passwords indeed."""
    for _ in range(attempts):
        try:
            conn = await asyncpg.connect(url)
        except (asyncpg.InvalidPasswordError, asyncpg.InvalidAuthorizationSpecificationError):
            return
        await conn.close()
        await asyncio.sleep(0.05)
    raise RoleSetupError("the embedded PostgreSQL still lets in a connection without password after "
                         "pg_hba.conf was rewritten and reloaded")


async def service_urls(admin_url: str, schemas: Mapping[str, str], instances: Mapping[str, int],
                       secrets: Secrets) -> dict[str, str]:
    """service -> its own DATABASE_URL, its role set up (or repaired) on the way."""
    urls: dict[str, str] = {}
    for service, schema in schemas.items():
        role = dbroles.role_name(schema)
        try:
            made = await dbroles.ensure_service_role(
                admin_url, schema, password=secrets.password(role),
                connection_limit=connection_limit(instances.get(service, 1)))
        except asyncpg.InsufficientPrivilegeError as exc:
            raise RoleSetupError(
                f"DATABASE_URL's role may not set up the role of {service} ({exc}): give the URL of an "
                f"administrator (a superuser, or a role with CREATEROLE that owns the database)") from exc
        urls[service] = made.dsn
    secrets.urls = {**secrets.urls, **urls}
    secrets.save()
    return urls
