"""Figures in French: numbers with their narrow spaces and decimal commas, durations."""

from __future__ import annotations

NBSP = "\u202f"  # the narrow no-break space of French thousands


def fr_number(value: float | None, digits: int = 0) -> str:
    """`1 234`, `12,5`; an em dash when unknown."""
    if value is None:
        return "—"
    text = f"{value:,.{digits}f}".replace(",", NBSP).replace(".", ",")
    return "0" if text in ("-0", "-0,0") else text


def fr_duration(seconds: float | None) -> str:
    """`0 s`, `42 s`, `3 min 05 s`, `2 h 07 min`, `3 j 4 h`; an em dash when unknown."""
    if seconds is None:
        return "—"
    total = max(0, round(seconds))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} j {hours} h" if hours else f"{days} j"
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{secs} s"
