"""``StopSignals``: what the first, second and third SIGINT/SIGTERM do (the process-level test of
the second signal is in ``test_process_lifecycle.py``)."""

from __future__ import annotations

import signal
import threading

from proxy.stop_signals import StopSignals


class Exits:
    """Stands in for ``os._exit``: records the status instead of ending the test run."""

    def __init__(self) -> None:
        self.statuses: list[int] = []
        self.called = threading.Event()

    def __call__(self, status: int) -> None:
        self.statuses.append(status)
        self.called.set()


def test_first_stops_second_hurries_third_leaves() -> None:
    calls: list[str] = []
    exits = Exits()
    signals = StopSignals(
        lambda: calls.append("stop"),
        lambda: calls.append("stop_now"),
        hard_stop_after_s=3600,  # not the deadline's turn here
        exit_process=exits,
    )
    signals.received(signal.SIGTERM)
    assert (calls, signals.exit_status) == (["stop"], 0)
    signals.received(signal.SIGINT)
    assert (calls, signals.exit_status) == (["stop", "stop_now"], 130)
    assert not exits.statuses
    signals.received(signal.SIGINT)
    assert exits.statuses == [130]


def test_after_the_second_signal_a_deadline_ends_the_process() -> None:
    exits = Exits()
    signals = StopSignals(lambda: None, lambda: None, hard_stop_after_s=0.05, exit_process=exits)
    signals.received(signal.SIGTERM)
    signals.received(signal.SIGTERM)
    assert exits.called.wait(10)
    assert exits.statuses == [143]
