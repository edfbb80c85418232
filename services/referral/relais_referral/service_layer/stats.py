"""The figures of the statistics page, over a period (7, 30 or 90 days) and the
user's scope: first-visit resolution rate, referrals by operator and status, median
answer time per operator (routed → answered), overdue referrals. Counted by
PostgreSQL; shaped for the page by the pure functions below."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from relais_kit import numbers
from relais_referral.domain.lifecycle import Status
from relais_referral.service_layer.scope import Scope

PERIODS = (7, 30, 90)
DEFAULT_PERIOD = 30
# How a visit closed without a referral is marked ("Résolu sur place").
RESOLVED_ON_THE_SPOT = "solved_on_the_spot"
AWAITING = ("routed", "acknowledged", "info_requested")


def parse_period(raw: str | None) -> int:
    days = numbers.bounded(raw, 1, max(PERIODS))
    return days if days in PERIODS else DEFAULT_PERIOD


def rate(part: int, whole: int) -> float | None:
    """A share in percent, one decimal; None when there is nothing to divide."""
    return None if whole == 0 else round(100.0 * part / whole, 1)


def duration_fr(seconds: float | None) -> str:
    """`3 j 4 h`, `5 h 12 min`, `8 min`: how long, for a person to read."""
    if seconds is None:
        return "—"
    minutes = round(seconds / 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    if days:
        return f"{days} j {hours} h" if hours else f"{days} j"
    if hours:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{minutes} min"


@dataclass(frozen=True)
class Table:
    """Referrals by operator (rows) and status (columns), with totals."""

    operators: list[str]
    statuses: list[str]
    cells: dict[tuple[str, str], int]
    row_totals: dict[str, int]
    column_totals: dict[str, int]
    total: int


def pivot(rows: list[tuple[str, str, int]]) -> Table:
    """(operator, status, count) rows → a table; statuses in lifecycle order, only those seen."""
    cells: dict[tuple[str, str], int] = {}
    for operator, status, count in rows:
        cells[(operator, status)] = cells.get((operator, status), 0) + count
    operators = sorted({o for o, _ in cells})
    statuses = [s.value for s in Status if any(st == s.value for _, st in cells)]
    statuses += sorted({st for _, st in cells} - set(statuses))
    row_totals = {o: sum(c for (oo, _), c in cells.items() if oo == o) for o in operators}
    column_totals = {s: sum(c for (_, ss), c in cells.items() if ss == s) for s in statuses}
    return Table(operators, statuses, cells, row_totals, column_totals, sum(cells.values()))


@dataclass(frozen=True)
class Figures:
    days: int
    visits: int
    resolved_on_the_spot: int
    by_operator: Table
    answer_times: list[dict[str, Any]] = field(default_factory=list)  # operator, answered, median_s
    overdue_now: int = 0
    overdue_in_period: int = 0

    @property
    def first_visit_rate(self) -> float | None:
        return rate(self.resolved_on_the_spot, self.visits)


async def figures(conn: asyncpg.Connection, scope: Scope, days: int, at: datetime) -> Figures:
    since = at - timedelta(days=days)
    where, args = scope.where("v.site_id", "s.parent_site_id", "s.department", [since, RESOLVED_ON_THE_SPOT])
    visits = await conn.fetchrow(
        "SELECT count(*) AS visits, count(*) FILTER (WHERE v.resolution = $2) AS resolved"
        " FROM visits v LEFT JOIN known_sites s ON s.site_id = v.site_id"
        f" WHERE {' AND '.join(['v.opened_at >= $1', *where])}", *args)
    where, args = scope.where("r.site_id", "s.parent_site_id", "s.department", [since])
    referrals = " AND ".join(["r.requested_at >= $1", *where])
    rows = await conn.fetch(
        "SELECT r.operator, r.status, count(*) AS n FROM referrals r"
        f" LEFT JOIN known_sites s ON s.site_id = r.site_id WHERE {referrals} GROUP BY 1, 2", *args)
    times = await conn.fetch(
        "SELECT r.operator, count(*) AS answered,"
        " percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM t.answered_at - t.routed_at)) AS median_s"
        " FROM referrals r LEFT JOIN known_sites s ON s.site_id = r.site_id"
        " CROSS JOIN LATERAL (SELECT min(at) FILTER (WHERE event = 'routed') AS routed_at,"
        "   min(at) FILTER (WHERE event = 'answered') AS answered_at"
        "   FROM referral_timeline WHERE referral_id = r.referral_id) t"
        f" WHERE {referrals} AND t.routed_at IS NOT NULL AND t.answered_at IS NOT NULL"
        " GROUP BY r.operator ORDER BY r.operator", *args)
    overdue_in_period = await conn.fetchval(
        f"SELECT count(*) FROM referrals r LEFT JOIN known_sites s ON s.site_id = r.site_id"
        f" WHERE {referrals} AND r.overdue_at IS NOT NULL", *args)
    where, args = scope.where("r.site_id", "s.parent_site_id", "s.department", [list(AWAITING)])
    overdue_now = await conn.fetchval(
        "SELECT count(*) FROM referrals r LEFT JOIN known_sites s ON s.site_id = r.site_id"
        f" WHERE {' AND '.join(['r.overdue_at IS NOT NULL', 'r.status = ANY($1::text[])', *where])}", *args)
    return Figures(days, visits["visits"], visits["resolved"],
                   pivot([(r["operator"], r["status"], r["n"]) for r in rows]),
                   [dict(r) for r in times], overdue_now, overdue_in_period)

