"""The writer's view of a database outage: when it began, what is buffered, what was dropped.

While the database cannot be written, the writer keeps taking records into memory up to a bound
(so the request path never waits on the database), drops and counts what is past it, and fails
dashboard jobs at once. This records the outage and says so in the log, once at each edge.
"""

from __future__ import annotations

import logging
import time
from typing import final

import apsw

from storage.sql import DatabaseUnavailable

__all__ = ["Outage", "is_unavailable"]

logger = logging.getLogger("llm_proxy.storage")

# SQLite's errors that mean "the file cannot be written now", not "this statement is wrong".
_SQLITE_UNAVAILABLE = (
    apsw.IOError,
    apsw.FullError,
    apsw.BusyError,
    apsw.ReadOnlyError,
    apsw.CantOpenError,
    apsw.LockedError,
)


def is_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` says the database cannot be reached or written right now (a 503, not a
    500, when a dashboard request meets it)."""
    return isinstance(exc, (DatabaseUnavailable, *_SQLITE_UNAVAILABLE))


@final
class Outage:
    """Whether the database is down, since when, and the records buffered or dropped meanwhile."""

    def __init__(self, bound: int, where: str) -> None:
        if bound < 1:
            raise ValueError("the outage buffer must hold at least 1 record")
        self.bound = bound
        self._where = where
        self.down_since: float | None = None
        """Wall-clock time (``time.time()``) the current outage began; None while up."""
        self._down_monotonic = 0.0
        self.dropped_total = 0
        """Records dropped past the bound, since start."""
        self._dropped_now = 0
        self._warned = False

    @property
    def down(self) -> bool:
        """Whether the last attempt to write failed on the database."""
        return self.down_since is not None

    def begin(self, error: BaseException) -> None:
        """The database failed a write: start an outage (logged once) if none is under way."""
        if self.down_since is not None:
            logger.debug("database still unavailable: %r", error)
            return
        self.down_since = time.time()
        self._down_monotonic = time.monotonic()
        self._dropped_now = 0
        self._warned = False
        logger.error(
            "database unavailable: %s (%r); buffering up to %d records",
            self._where,
            error,
            self.bound,
        )

    def error(self) -> DatabaseUnavailable:
        """What a job met during the outage is told."""
        return DatabaseUnavailable(
            f"database unavailable ({self._where}): request records are buffered until it is "
            "back; retry this later"
        )

    def room(self, buffered: int) -> int:
        """How many more records fit beside the ``buffered`` ones."""
        return max(self.bound - buffered, 0)

    def drop(self, count: int) -> None:
        """Count ``count`` records dropped past the bound (a warning when dropping starts)."""
        if count <= 0:
            return
        if not self._warned:
            self._warned = True
            logger.warning(
                "outage buffer full (%d records): dropping new request records until the "
                "database is back",
                self.bound,
            )
        self._dropped_now += count
        self.dropped_total += count

    def end(self, stored: int) -> None:
        """The database took a write again after ``stored`` buffered records were written."""
        if self.down_since is None:
            return
        lasted = time.monotonic() - self._down_monotonic
        self.down_since = None
        logger.warning(
            "database back after %.1f s: stored %d buffered records, dropped %d",
            lasted,
            stored,
            self._dropped_now,
        )
