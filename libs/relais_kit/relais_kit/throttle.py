"""Sign-in throttling, per account and per client address, with the `limits` library's
moving windows: past the limit a sign-in is refused at once (429 with Retry-After),
before any password is checked. A successful sign-in clears its account's count (not
its address's: one valid account must not reset a guesser's address).

The counts live in the process's memory: with N instances of a service, an attacker
spreading attempts over them gets up to N times the limit."""

from __future__ import annotations

import math
import time

from fastapi import Request
from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter

DEFAULT_PER_ACCOUNT = "10 per 5 minutes"
DEFAULT_PER_ADDRESS = "30 per minute"


def client_address(request: Request) -> str:
    """Where a sign-in comes from, for its throttle (behind a proxy: run uvicorn with
    --proxy-headers and --forwarded-allow-ips so that this is the client's)."""
    return request.client.host if request.client else "unknown"


class TooManyAttempts(Exception):
    def __init__(self, retry_after_s: int, what: str) -> None:
        super().__init__(f"too many sign-in attempts for this {what}; retry in {retry_after_s} s")
        self.retry_after_s = retry_after_s
        self.what = what


class SignInThrottle:
    def __init__(self, per_account: str = DEFAULT_PER_ACCOUNT, per_address: str = DEFAULT_PER_ADDRESS) -> None:
        self._per_account: RateLimitItem = parse(per_account)
        self._per_address: RateLimitItem = parse(per_address)
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    async def attempt(self, account: str, address: str) -> None:
        """Counts one attempt; raises TooManyAttempts when the account or the address
        is over its limit (the attempt is then not counted)."""
        checks = ((self._per_account, "account", _account_key(account)),
                  (self._per_address, "address", f"address:{address}"))
        for item, what, key in checks:
            if not await self._limiter.test(item, key):
                stats = await self._limiter.get_window_stats(item, key)
                raise TooManyAttempts(max(1, math.ceil(stats.reset_time - time.time())), what)
        for item, _, key in checks:
            await self._limiter.hit(item, key)

    async def succeeded(self, account: str) -> None:
        await self._limiter.clear(self._per_account, _account_key(account))


def _account_key(account: str) -> str:
    return f"account:{account.strip().lower()[:200]}"
