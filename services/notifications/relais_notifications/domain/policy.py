"""When to try a delivery again, and when to give up."""

from __future__ import annotations

from datetime import timedelta


def gives_up(attempts: int, max_attempts: int, *, permanent: bool = False) -> bool:
    """After `attempts` failed attempts: stop for good?"""
    return permanent or attempts >= max_attempts


def backoff(attempts: int, base_s: float, max_s: float) -> timedelta:
    """Wait before attempt `attempts + 1`: base, 2×base, 4×base…, capped."""
    return timedelta(seconds=min(base_s * 2 ** max(attempts - 1, 0), max_s))
