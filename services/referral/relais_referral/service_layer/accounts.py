"""The agents' accounts: who may sign in, as what — a role, and an adviser's site or a
supervisor's department — and how: a password (argon2, checked off the event loop and
only after the sign-in throttle let the attempt through) or ProConnect
(service_layer.proconnect). Closing an account, or changing its role, site or
department, ends all of its sessions at once (pages and API tokens alike). The demo
accounts are made outside production only, and refused in production."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from relais_kit import passwords, sessions
from relais_kit.auth import ROLES, User
from relais_kit.envelope import now
from relais_kit.throttle import SignInThrottle
from relais_referral.adapters import accounts as store

DEPARTMENT = re.compile(r"^(\d{2,3}|2[AB])$")
DEMO_ACCOUNTS = (
    # user_id, password, role, site_id, department, display name
    ("demo-adviser", "demo", "adviser", "agen-leon-blum-poste", None, "Sophie Conseillère"),
    ("demo-adviser-martignas", "demo", "adviser", "martignas-sur-jalle-poste", None, "Pierre Conseiller"),
    ("demo-supervisor", "demo", "supervisor", None, "47", "Claire Superviseure"),
    ("demo-ops", "demo", "ops", None, None, "Équipe d'exploitation"),
)


def is_demo(user_id: str) -> bool:
    return any(user_id == account[0] for account in DEMO_ACCOUNTS)


@dataclass(frozen=True)
class Account:
    user_id: str
    role: str
    display_name: str
    site_id: str | None = None  # an adviser's home site
    department: str | None = None  # a supervisor's
    email: str | None = None
    oidc_issuer: str | None = None
    oidc_subject: str | None = None
    disabled_at: datetime | None = None

    @property
    def disabled(self) -> bool:
        return self.disabled_at is not None

    def problems(self) -> dict[str, str]:
        """What keeps it from being saved, by field (empty when nothing does)."""
        found: dict[str, str] = {}
        if not self.user_id.strip() or len(self.user_id) > 100 or any(ord(c) < 0x21 for c in self.user_id):
            found["user_id"] = "1 to 100 characters, no space nor control character"
        if self.role not in ROLES:
            found["role"] = f"one of {', '.join(ROLES)}"
        if (self.role == "adviser") != bool(self.site_id):
            found["site_id"] = "an adviser needs their home site; other roles have none"
        if (self.role == "supervisor") != bool(self.department):
            found["department"] = "a supervisor needs their department; other roles have none"
        elif self.department and not DEPARTMENT.match(self.department):
            found["department"] = "a department code: 47, 974, 2A…"
        if not self.display_name.strip():
            found["display_name"] = "a name to show"
        if self.email is not None and (self.email != self.email.strip() or "@" not in self.email[1:-1]):
            found["email"] = "an e-mail address"
        if (self.oidc_issuer is None) != (self.oidc_subject is None):
            found["oidc_subject"] = "the identity provider's issuer and subject go together"
        return found

    def user(self, session_id: str | None = None) -> User:
        """Who the account signs in as (what a token and a page session carry)."""
        return User(self.user_id, self.role, self.site_id if self.role == "adviser" else None, self.display_name,
                    self.department if self.role == "supervisor" else None, session_id)


class InvalidAccount(ValueError):
    def __init__(self, problems: dict[str, str]) -> None:
        super().__init__("; ".join(f"{field}: {message}" for field, message in problems.items()))
        self.problems = problems


def account_of(row: asyncpg.Record | dict[str, Any]) -> Account:
    return Account(row["user_id"], row["role"], row["display_name"], row["site_id"], row["department"],
                   row["email"], row["oidc_issuer"], row["oidc_subject"], row["disabled_at"])


async def get(conn: asyncpg.Connection, user_id: str) -> Account | None:
    row = await store.get(conn, user_id)
    return account_of(row) if row else None


async def everyone(conn: asyncpg.Connection) -> list[Account]:
    return [account_of(row) for row in await store.everyone(conn)]


async def save(conn: asyncpg.Connection, account: Account, password_hash: str | None = None, *,
               keep_password: bool = False) -> int:
    """Creates or updates the account; when its role, site or department changed, ends
    its sessions (they carry the old ones). Returns how many were ended."""
    if problems := account.problems():
        raise InvalidAccount(problems)
    before = await store.get(conn, account.user_id, for_update=True)
    await store.put(conn, account.user_id, password_hash, account.role, account.site_id, account.department,
                    account.display_name, account.email, account.oidc_issuer, account.oidc_subject,
                    keep_password=keep_password and before is not None)
    if before is None or _powers(account_of(before)) == _powers(account):
        return 0
    return await sessions.end_sessions_of(conn, account.user_id)


def _powers(account: Account) -> tuple[str, str | None, str | None]:
    return account.role, account.site_id, account.department


async def add_account(conn: asyncpg.Connection, user_id: str, password: str, role: str, site_id: str | None,
                      display_name: str, department: str | None = None, email: str | None = None) -> int:
    return await save(conn, Account(user_id, role, display_name, site_id, department, email),
                      await passwords.hash_password(password))


async def seed_demo_accounts(conn: asyncpg.Connection) -> None:
    async with conn.transaction():  # one instance at a time: several may start together
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext(current_schema() || '.demo_accounts'))")
        for user_id, password, role, site_id, department, name in DEMO_ACCOUNTS:
            if await store.get(conn, user_id) is None:
                await add_account(conn, user_id, password, role, site_id, name, department)


async def disable(conn: asyncpg.Connection, user_id: str) -> int | None:
    """Closes the account and ends all of its sessions; None when there is no such account."""
    if not await store.set_disabled(conn, user_id, now()):
        return None
    return await sessions.end_sessions_of(conn, user_id)


async def enable(conn: asyncpg.Connection, user_id: str) -> bool:
    return await store.set_disabled(conn, user_id, None)


async def authenticate(pool: asyncpg.Pool, user_id: str, password: str, *, production: bool) -> User | None:
    """The account's user if the password is its own. A connection is held for the read
    only, not while the hash is checked; an unknown, closed or (in production) demo
    account costs the same check and fails it."""
    row = None
    if user_id and "\x00" not in user_id and not (production and is_demo(user_id)):
        async with pool.acquire() as conn:
            row = await store.get(conn, user_id)
    account = account_of(row) if row is not None else None
    password_hash = row["password_hash"] if row is not None and account and not account.disabled else None
    if not await passwords.verify(password_hash, password) or account is None:
        return None
    return account.user()


async def sign_in(pool: asyncpg.Pool, throttle: SignInThrottle, user_id: str, password: str, address: str,
                  *, production: bool) -> User | None:
    """`authenticate`, once the throttle let the attempt through (it raises
    relais_kit.throttle.TooManyAttempts before any hashing otherwise)."""
    await throttle.attempt(user_id, address)
    user = await authenticate(pool, user_id, password, production=production)
    if user is not None:
        await throttle.succeeded(user_id)
    return user


async def token_alive(pool: asyncpg.Pool, user: User) -> bool:
    """For the API's bearer tokens (app.state.token_check): the token's session is still
    open for its account — not signed out, the account not closed nor changed. A token
    naming no session, or an account that never signed in, is refused."""
    if not user.session_id:
        return False
    async with pool.acquire() as conn:
        return await sessions.is_alive(conn, user.session_id, user.user_id)
