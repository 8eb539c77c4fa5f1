"""The last log lines, kept in memory for the dashboard's System page.

A logging handler on the root logger, beside the one writing to stderr (journald gets those),
so the dashboard shows the same stream: the same records, with the request id of the call each
was logged under (``request_id``, null outside a call). Bounded: the oldest lines go first.
"""

from __future__ import annotations

import collections
import logging
import threading
from typing import Final

from proxy.log_format import RequestIdFilter, request_id_of

CAPACITY: Final = 1000


class LogBuffer(logging.Handler):
    """The newest ``capacity`` formatted log records."""

    def __init__(self, capacity: int = CAPACITY) -> None:
        super().__init__(level=logging.INFO)
        self.addFilter(RequestIdFilter())
        self._lines: collections.deque[dict[str, object]] = collections.deque(maxlen=capacity)
        self._lock = threading.Lock()  # records also come from worker threads

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = {
                "ts_ms": int(record.created * 1000),
                "level": record.levelname,
                "logger": record.name,
                "message": record.getMessage(),
                "request_id": request_id_of(record),
            }
        except Exception:
            self.handleError(record)
            return
        with self._lock:
            self._lines.append(line)

    def recent(self, limit: int) -> list[dict[str, object]]:
        """Up to ``limit`` newest lines, oldest first."""
        with self._lock:
            lines = list(self._lines)
        return lines[-limit:] if limit > 0 else []
