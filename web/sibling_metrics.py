"""``GET /metrics`` of a worker of ``[server] workers = N``: every worker's metrics in one
scrape, each sample labelled ``worker="<n>"``.

Prometheus cannot scrape each worker of one port (the kernel picks one per connection), so the
worker that gets the scrape asks every sibling's metrics socket (:mod:`web.metrics_socket`)
at once, each within :data:`SIBLING_DEADLINE_S`, and merges their expositions with its own
(:func:`web.prometheus_text.merge_workers`). A sibling that is restarting, hung or too slow is
left out of that scrape and counted. ``worker`` is the stable number 1 … N, so a restarted
worker continues its series (its counters restart from zero: a counter reset, which
Prometheus' ``rate()`` handles).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping
from typing import Final, final

import trio

from proxy.worker_place import WorkerPlace
from web.prometheus_text import Exposition, merge_workers

log = logging.getLogger("llm_proxy.metrics")

SIBLING_DEADLINE_S: Final = 1.0
MAX_ANSWER_BYTES: Final = 64 * 1024 * 1024
"""Far above any real exposition (a few hundred kB at the model-label cap): a bound, not a
limit anyone meets."""
_READ_CHUNK: Final = 256 * 1024


@dataclasses.dataclass(frozen=True, slots=True)
class SiblingMetricsStatistics:
    """Scrapes answered for the fleet of workers, and siblings missing from them, by number."""

    scrapes: int
    missing: Mapping[int, int]


async def read_answer(path: str) -> bytes:
    """One sibling's encoded exposition from its socket (``OSError``, ``ValueError`` or a trio
    resource error when it is not there, not answering properly, or too big)."""
    stream = await trio.open_unix_socket(path)
    async with stream:
        data = bytearray()
        while chunk := await stream.receive_some(_READ_CHUNK):
            data += chunk
            if len(data) > MAX_ANSWER_BYTES:
                raise ValueError(f"answer over {MAX_ANSWER_BYTES} bytes")
    return bytes(data)


def decode_answers(answers: Mapping[int, bytes]) -> dict[int, Exposition]:
    """The siblings' answers decoded; one that does not decode is left out (and logged)."""
    found: dict[int, Exposition] = {}
    for number, data in answers.items():
        try:
            found[number] = Exposition.decode(data)
        except ValueError as exc:
            log.error("metrics: worker %d sent a bad answer: %s", number, exc)
    return found


def merged_text(by_worker: Mapping[int, Exposition], count: int) -> str:
    """Every worker's families as one page, with how many workers there are and reported."""
    merged = merge_workers(by_worker)
    merged.gauge(
        "llm_proxy_workers",
        "Worker processes configured ([server] workers) on this host's port.",
        [((), count)],
    )
    merged.gauge(
        "llm_proxy_workers_reporting",
        "Workers whose metrics this scrape includes (the one answering included).",
        [((), len(by_worker))],
    )
    return merged.text()


@final
class SiblingMetrics:
    """The scrape of every worker: the siblings' expositions gathered and merged with ours."""

    def __init__(self, place: WorkerPlace, *, deadline_s: float = SIBLING_DEADLINE_S) -> None:
        self._place = place
        self._deadline_s = deadline_s
        self._scrapes = 0
        self._missing = dict.fromkeys(place.siblings, 0)
        self._absent: set[int] = set()  # missing at the last scrape (to log changes only)
        # Decoding and merging N pages costs milliseconds per worker: in a thread, one at a time.
        self._thread = trio.CapacityLimiter(1)

    def statistics(self) -> SiblingMetricsStatistics:
        """Scrapes answered and siblings missing from them."""
        return SiblingMetricsStatistics(self._scrapes, dict(self._missing))

    async def page(self, render_own: Callable[[], Exposition]) -> str:
        """The whole fleet's ``/metrics`` text: the siblings asked concurrently (each within the
        deadline), then our own exposition rendered and everything merged."""
        found = await self.gather()
        own = render_own()  # on the trio thread: it reads the actors' statistics
        self._write_missing(own)
        by_worker = {**found, self._place.number: own}
        return await trio.to_thread.run_sync(
            merged_text, by_worker, self._place.count, limiter=self._thread
        )

    async def gather(self) -> dict[int, Exposition]:
        """Each sibling's exposition, asked at once; those that did not answer in time (or
        answered garbage) are left out and counted."""
        self._scrapes += 1
        answers: dict[int, bytes] = {}
        async with trio.open_nursery() as nursery:
            for number in self._place.siblings:
                nursery.start_soon(self._ask, number, answers)
        found = await trio.to_thread.run_sync(decode_answers, answers, limiter=self._thread)
        absent = set(self._place.siblings) - set(found)
        for number in absent:
            self._missing[number] += 1
        for number in sorted(absent - self._absent):
            log.warning(
                "metrics: worker %d left out of the scrape (no answer within %.1f s: "
                "restarting or hung)",
                number,
                self._deadline_s,
            )
        for number in sorted(self._absent - absent):
            log.info("metrics: worker %d answers again", number)
        self._absent = absent
        return found

    async def _ask(self, number: int, answers: dict[int, bytes]) -> None:
        with trio.move_on_after(self._deadline_s):
            try:
                answers[number] = await read_answer(self._place.socket_path(number))
            except (OSError, ValueError, trio.BrokenResourceError) as exc:
                # Restarting (no socket, or nobody listening on it yet) or a bad answer.
                log.debug("metrics: worker %d: %s", number, exc)

    def _write_missing(self, own: Exposition) -> None:
        own.counter(
            "llm_proxy_worker_scrapes_missed_total",
            "Scrapes this worker answered without a sibling's metrics (restarting, hung, or "
            f"slower than {self._deadline_s:g} s), by the sibling's number.",
            [
                ((("sibling", str(number)),), count)
                for number, count in sorted(self._missing.items())
            ],
        )
