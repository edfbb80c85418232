"""Password hashes (argon2id), computed on worker threads: an argon2 check costs tens
of milliseconds of CPU, and on the event loop it would stall every request, consumer
and relay of the process while a crowd of sign-ins is being checked. At most two
checks run at once; the others wait their turn (sign-in is throttled before that)."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()
_workers = ThreadPoolExecutor(max_workers=2, thread_name_prefix="argon2")


@cache
def _unknown_account_hash() -> str:
    """Checked against when the account does not exist: the answer takes as long
    either way, so timing does not tell which accounts exist."""
    return _hasher.hash("relais: no such account")


def _verify(password_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(password_hash or _unknown_account_hash(), password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


async def verify(password_hash: str | None, password: str) -> bool:
    """Whether `password` matches `password_hash` (None: an unknown account, always False)."""
    return await asyncio.get_running_loop().run_in_executor(_workers, _verify, password_hash, password)


async def hash_password(password: str) -> str:
    return await asyncio.get_running_loop().run_in_executor(_workers, _hasher.hash, password)


def hash_now(password: str) -> str:
    """For command-line tools and seeding, outside any event loop's hot path."""
    return _hasher.hash(password)
