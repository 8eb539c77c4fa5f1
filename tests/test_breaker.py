"""The circuit breaker as a pure state machine, with explicit times."""

from __future__ import annotations

import pytest

from proxy.breaker import BreakerState, BreakerStatistics, CircuitBreaker

CLOSED, OPEN, HALF_OPEN = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN


def tripped(*, failures: int = 3, cooldown_s: float = 10.0, at: float = 100.0) -> CircuitBreaker:
    """A breaker that opened at time ``at``."""
    breaker = CircuitBreaker(failures=failures, cooldown_s=cooldown_s)
    for _ in range(failures):
        assert breaker.allow(at)
        breaker.record_failure(at)
    assert breaker.state is OPEN
    return breaker


def test_opens_after_n_consecutive_failures() -> None:
    breaker = CircuitBreaker(failures=3, cooldown_s=10)
    for now in (1.0, 2.0):
        assert breaker.allow(now)
        breaker.record_failure(now)
        assert breaker.state is CLOSED
    assert breaker.allow(3.0)
    breaker.record_failure(3.0)
    assert breaker.state is OPEN


def test_a_success_in_between_resets_the_count() -> None:
    breaker = CircuitBreaker(failures=3, cooldown_s=10)
    for outcome in ("fail", "fail", "ok", "fail", "fail", "ok", "fail", "fail"):
        assert breaker.allow(0)
        if outcome == "ok":
            breaker.record_success(0)
        else:
            breaker.record_failure(0)
    assert breaker.state is CLOSED
    assert breaker.statistics().consecutive_failures == 2


def test_neutral_outcomes_do_not_reset_or_count() -> None:
    breaker = CircuitBreaker(failures=2, cooldown_s=10)
    breaker.record_failure(0)
    breaker.record_neutral()
    assert breaker.statistics().consecutive_failures == 1
    breaker.record_failure(0)
    assert breaker.state is OPEN


def test_refuses_while_open() -> None:
    breaker = tripped(cooldown_s=10, at=100)
    assert not breaker.allow(100)
    assert not breaker.allow(105)
    assert not breaker.allow(109.999)
    assert breaker.state is OPEN


def test_exactly_one_probe_after_the_cooldown() -> None:
    breaker = tripped(cooldown_s=10, at=100)
    assert breaker.allow(110)
    assert breaker.state is HALF_OPEN
    # Concurrent callers while the probe runs are refused, however late.
    assert not breaker.allow(110)
    assert not breaker.allow(200)


def test_probe_success_closes() -> None:
    breaker = tripped(cooldown_s=10, at=100)
    assert breaker.allow(110)
    breaker.record_success(111)
    assert breaker.state is CLOSED
    assert breaker.statistics().consecutive_failures == 0
    assert breaker.allow(111)
    assert breaker.allow(111)


def test_probe_failure_reopens_with_a_fresh_cooldown() -> None:
    breaker = tripped(cooldown_s=10, at=100)
    assert breaker.allow(110)
    breaker.record_failure(115)
    assert breaker.state is OPEN
    assert breaker.statistics().opened_at == 115
    assert not breaker.allow(120)  # the old cool-down would have passed at 110
    assert breaker.retry_after_s(120) == pytest.approx(5)
    assert breaker.allow(125)
    assert breaker.state is HALF_OPEN


def test_neutral_releases_the_probe_without_closing_or_reopening() -> None:
    breaker = tripped(cooldown_s=10, at=100)
    assert breaker.allow(110)
    breaker.record_neutral()
    assert breaker.state is HALF_OPEN
    assert breaker.allow(111)  # the next caller probes
    assert not breaker.allow(111)


def test_late_outcomes_while_open_change_nothing() -> None:
    breaker = tripped(cooldown_s=10, at=100)
    breaker.record_success(101)
    breaker.record_failure(102)
    assert breaker.state is OPEN
    assert breaker.statistics().opened_at == 100
    assert breaker.allow(110)


def test_retry_after() -> None:
    breaker = CircuitBreaker(failures=1, cooldown_s=30)
    assert breaker.retry_after_s(0) == 0
    breaker.record_failure(50)
    assert breaker.retry_after_s(50) == pytest.approx(30)
    assert breaker.retry_after_s(70) == pytest.approx(10)
    assert breaker.retry_after_s(90) == 0
    assert breaker.allow(90)
    assert breaker.retry_after_s(90) == 0  # half-open: the probe is running


def test_zero_cooldown_probes_at_once() -> None:
    breaker = tripped(cooldown_s=0, at=5)
    assert breaker.allow(5)
    assert breaker.state is HALF_OPEN


def test_on_change_sees_every_transition() -> None:
    changes: list[tuple[BreakerState, BreakerState]] = []
    breaker = CircuitBreaker(
        failures=2, cooldown_s=10, on_change=lambda old, new: changes.append((old, new))
    )
    breaker.record_failure(0)
    assert changes == []
    breaker.record_failure(0)
    assert breaker.allow(10)
    breaker.record_failure(10)
    assert breaker.allow(20)
    breaker.record_success(20)
    breaker.record_success(21)  # already closed: no change
    assert changes == [
        (CLOSED, OPEN),
        (OPEN, HALF_OPEN),
        (HALF_OPEN, OPEN),
        (OPEN, HALF_OPEN),
        (HALF_OPEN, CLOSED),
    ]


def test_statistics() -> None:
    breaker = CircuitBreaker(failures=2, cooldown_s=10)
    assert breaker.statistics() == BreakerStatistics("closed", 0, None, 0)
    breaker.record_failure(1)
    assert breaker.statistics() == BreakerStatistics("closed", 1, None, 0)
    breaker.record_failure(2)
    assert breaker.statistics() == BreakerStatistics("open", 2, 2, 1)
    assert breaker.allow(12)
    assert breaker.statistics().state == "half_open"
    breaker.record_failure(13)
    assert breaker.statistics() == BreakerStatistics("open", 3, 13, 2)
    assert breaker.allow(23)
    breaker.record_success(24)
    assert breaker.statistics() == BreakerStatistics("closed", 0, None, 2)


@pytest.mark.parametrize(("failures", "cooldown_s"), [(0, 1.0), (1, -1.0)])
def test_rejects_nonsense_settings(failures: int, cooldown_s: float) -> None:
    with pytest.raises(ValueError, match="must"):
        CircuitBreaker(failures=failures, cooldown_s=cooldown_s)
