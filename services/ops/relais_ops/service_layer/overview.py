"""The overview's figures: the lag monitor's groups (always: the ops service measures
them itself) and what Prometheus knows of the platform, asked all at once. When
Prometheus does not answer, the overview has the groups and says why the rest is
missing."""

from __future__ import annotations

import asyncio
import time

from relais_ops.adapters.prometheus import Prometheus, PrometheusUnavailable
from relais_ops.domain import overview as o
from relais_ops.service_layer.lag_monitor import LagMonitor


async def platform_figures(prometheus: Prometheus, *, at: float) -> o.PlatformFigures:
    """Every query of the overview, concurrently; PrometheusUnavailable when one fails."""
    start = at - o.HISTORY_S
    (now, by_topic, unacknowledged, oldest, overdue, dead, pending, pending_age, parked, up, loops) = \
        await asyncio.gather(*(prometheus.query(expr) for expr in (
            o.THROUGHPUT_NOW, o.THROUGHPUT_BY_TOPIC, o.INBOX_UNACKNOWLEDGED, o.INBOX_OLDEST, o.OVERDUE,
            o.DEAD_LETTERS, o.OUTBOX_PENDING, o.OUTBOX_OLDEST, o.OUTBOX_PARKED, o.UP, o.LOOPS)))
    history, lags = await asyncio.gather(prometheus.query_range(o.THROUGHPUT_HISTORY, start, at, o.STEP_S),
                                         prometheus.query_range(o.GROUP_LAG_HISTORY, start, at, o.STEP_S))
    return o.PlatformFigures(
        throughput=o.throughput(now, by_topic, history, start=start, end=at),
        inboxes=o.inbox_rows(unacknowledged, oldest, overdue),
        dead_letters=o.dead_letter_rows(dead),
        outboxes=o.outbox_rows(pending, pending_age, parked),
        processes=o.process_rows(up, loops),
        group_history=o.group_history(lags, start=start, end=at))


async def overview(monitor: LagMonitor | None, prometheus: Prometheus, *, at: float | None = None) -> o.Overview:
    at = time.time() if at is None else at
    try:
        figures, problem = await platform_figures(prometheus, at=at), None
    except PrometheusUnavailable as exc:
        figures, problem = None, str(exc) or "no answer"
    if monitor is None:
        return o.Overview((), None, "le moniteur de retard démarre", figures, problem)
    lag_problem = monitor.health.problem(monitor.healthy_within_s)
    history = figures.group_history if figures is not None else None
    return o.Overview(o.group_rows(monitor.groups, history), monitor.sampled_at, lag_problem, figures, problem)
