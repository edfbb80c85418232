"""Whether a background loop moves forward: what `/healthz` and `relais_loop_healthy`
report instead of "the task exists". A loop calls `moved()` each time it finishes a
step (a batch published, a record handled, nothing to do) and `stuck(reason)` each time
a step fails and will be tried again; it is stalled once it has been stuck, without a
step finished, for longer than the platform's `stall_after_s`."""

from __future__ import annotations

import time
from collections.abc import Callable


class Progress:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._stuck_since: float | None = None
        self.reason = ""

    def moved(self) -> None:
        self._stuck_since = None
        self.reason = ""

    def stuck(self, reason: str) -> None:
        if self._stuck_since is None:
            self._stuck_since = self._clock()
        self.reason = reason

    def stalled(self, after_s: float) -> str | None:
        """Why the loop is stalled, or None when it is not (stuck for less than `after_s`)."""
        if self._stuck_since is None:
            return None
        stuck_for = self._clock() - self._stuck_since
        return f"no progress for {stuck_for:.0f} s: {self.reason}" if stuck_for >= after_s else None


class Attempts:
    """A supervised loop's runs (runtime._forever): a loop that fails at once each time
    it is started again is failing, not running; one that has run for `after_s` since its
    last start has recovered."""

    FAILING_AFTER = 3  # failures in a row

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.started = clock()
        self.failures_in_a_row = 0
        self.restarts = 0
        self.last_error = ""

    def failed(self, error: str, after_s: float) -> None:
        if self._clock() - self.started >= after_s:
            self.failures_in_a_row = 0  # it had recovered: a new episode
        self.failures_in_a_row += 1
        self.last_error = error

    def restarted(self) -> None:
        self.restarts += 1
        self.started = self._clock()

    def failing(self, after_s: float) -> str | None:
        """Why the loop is failing, or None."""
        if self.failures_in_a_row < self.FAILING_AFTER or self._clock() - self.started >= after_s:
            return None
        return f"failed {self.failures_in_a_row} times in a row, last: {self.last_error}"
