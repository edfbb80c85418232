"""PostgreSQL reads and writes of the agents' accounts (table `accounts`); callers own
the transaction."""

from __future__ import annotations

from datetime import datetime

import asyncpg
from asyncpg import Connection as Conn

COLUMNS = ("user_id, password_hash, role, site_id, department, display_name, email, oidc_issuer, oidc_subject,"
           " disabled_at")


async def get(conn: Conn, user_id: str, *, for_update: bool = False) -> asyncpg.Record | None:
    lock = " FOR UPDATE" if for_update else ""
    return await conn.fetchrow(f"SELECT {COLUMNS} FROM accounts WHERE user_id = $1{lock}", user_id)


async def by_subject(conn: Conn, issuer: str, subject: str) -> asyncpg.Record | None:
    """The account bound to the identity provider's agent (accounts_by_oidc_subject)."""
    return await conn.fetchrow(f"SELECT {COLUMNS} FROM accounts WHERE oidc_issuer = $1 AND oidc_subject = $2",
                               issuer, subject)


async def by_email(conn: Conn, email: str) -> asyncpg.Record | None:
    """The account whose e-mail is `email`, without case (accounts_by_email)."""
    return await conn.fetchrow(f"SELECT {COLUMNS} FROM accounts WHERE lower(email) = lower($1) FOR UPDATE",
                               email.strip())


async def everyone(conn: Conn) -> list[asyncpg.Record]:
    return list(await conn.fetch(f"SELECT {COLUMNS} FROM accounts ORDER BY user_id"))


async def put(conn: Conn, user_id: str, password_hash: str | None, role: str, site_id: str | None,
              department: str | None, display_name: str, email: str | None, oidc_issuer: str | None,
              oidc_subject: str | None, *, keep_password: bool) -> None:
    """Creates or replaces the account; `keep_password`: an existing account keeps its hash."""
    await conn.execute(
        "INSERT INTO accounts (user_id, password_hash, role, site_id, department, display_name, email,"
        " oidc_issuer, oidc_subject) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        " ON CONFLICT (user_id) DO UPDATE SET"
        " password_hash = CASE WHEN $10 THEN accounts.password_hash ELSE $2 END,"
        " role = $3, site_id = $4, department = $5, display_name = $6, email = $7,"
        " oidc_issuer = $8, oidc_subject = $9",
        user_id, password_hash, role, site_id, department, display_name, email, oidc_issuer, oidc_subject,
        keep_password)


async def bind(conn: Conn, user_id: str, issuer: str, subject: str) -> bool:
    """Binds a not yet bound account to the provider's agent; False if it was bound."""
    done = await conn.execute("UPDATE accounts SET oidc_issuer = $2, oidc_subject = $3"
                              " WHERE user_id = $1 AND oidc_subject IS NULL", user_id, issuer, subject)
    return str(done).endswith(" 1")


async def set_disabled(conn: Conn, user_id: str, at: datetime | None) -> bool:
    """Closes (`at`) or reopens (None) the account; False when there is no such account."""
    done = await conn.execute("UPDATE accounts SET disabled_at = CASE WHEN $2::timestamptz IS NULL THEN NULL"
                              " ELSE coalesce(disabled_at, $2) END WHERE user_id = $1", user_id, at)
    return str(done).endswith(" 1")
