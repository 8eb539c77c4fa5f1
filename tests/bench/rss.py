"""Resident memory of a process tree, sampled while some work runs."""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")
SAMPLE_EVERY = 0.1


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants."""
    pids, todo = [], [pid]
    while todo:
        current = todo.pop()
        pids.append(current)
        for task in Path(f"/proc/{current}/task").glob("*/children"):
            with suppress(OSError):
                todo.extend(int(child) for child in task.read_text().split())
    return pids


def rss_mb(pid: int) -> float:
    """VmRSS of ``pid`` and its descendants, in MB."""
    total_kb = 0
    for current in _tree(pid):
        try:
            text = Path(f"/proc/{current}/status").read_text()
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith("VmRSS:"):
                total_kb += int(line.split()[1])
    return total_kb / 1024


def peak_rss_during(pid: int, work: Callable[[], T]) -> tuple[float, T]:
    """Run ``work`` while sampling RSS every 100 ms; return the peak and the work's result."""
    peak = [rss_mb(pid)]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(SAMPLE_EVERY):
            peak[0] = max(peak[0], rss_mb(pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        result = work()
    finally:
        stop.set()
        sampler.join()
    return max(peak[0], rss_mb(pid)), result
