"""Numbers read from what browsers send (a page number, a period, an event id): ASCII
digits only, within bounds. `str.isdigit()` is not enough — it accepts `²` and other
Unicode digits that `int()` refuses (a 500) or reads (`٣` is 3)."""

from __future__ import annotations


def bounded(raw: str | None, low: int, high: int) -> int | None:
    """`raw` as a number in [low, high] (0 ≤ low), or None when it is anything else."""
    if not raw or not raw.isascii() or not raw.isdigit() or len(raw) > len(str(high)):
        return None
    value = int(raw)
    return value if low <= value <= high else None


def page(raw: str | None, last: int = 99_999) -> int:
    """A page number from a query: 1 unless `raw` is one of 1…`last`."""
    return bounded(raw, 1, last) or 1


def fr_wait(seconds: int) -> str:
    """How long to wait, in French: `42 secondes`, `5 minutes` (rounded up)."""
    if seconds < 60:
        return f"{seconds} seconde{'s' if seconds > 1 else ''}"
    minutes = -(-seconds // 60)
    return f"{minutes} minute{'s' if minutes > 1 else ''}"
