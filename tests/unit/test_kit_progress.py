"""Whether a background loop moves forward (relais_kit.progress), on a clock of our own."""

from relais_kit.progress import Attempts, Progress


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_loop_stuck_longer_than_the_limit_is_stalled_with_its_reason_until_it_moves():
    clock = Clock()
    progress = Progress(clock)
    assert progress.stalled(60) is None
    progress.stuck("publishing fails: KafkaTimeoutError")
    clock.now += 59
    progress.stuck("publishing fails: KafkaConnectionError")  # still the same episode
    assert progress.stalled(60) is None
    clock.now += 1
    assert progress.stalled(60) == "no progress for 60 s: publishing fails: KafkaConnectionError"
    progress.moved()
    assert progress.stalled(60) is None
    progress.stuck("again")
    clock.now += 30
    assert progress.stalled(60) is None, "a new episode starts its own clock"


def test_a_loop_failing_at_each_restart_is_failing_and_one_that_ran_long_enough_recovered():
    clock = Clock()
    attempts = Attempts(clock)
    for _ in range(2):
        clock.now += 0.1
        attempts.failed("KafkaConnectionError", 60)
        attempts.restarted()
    assert attempts.failing(60) is None, "two failures are not yet a pattern"
    clock.now += 0.1
    attempts.failed("KafkaConnectionError", 60)
    attempts.restarted()
    assert attempts.failing(60) == "failed 3 times in a row, last: KafkaConnectionError"
    assert attempts.restarts == 3
    clock.now += 60
    assert attempts.failing(60) is None, "running for the whole limit since its last start"
    attempts.failed("OSError", 60)
    assert attempts.failures_in_a_row == 1, "a failure after recovering starts a new count"
