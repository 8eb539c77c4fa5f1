"""Log lines for journald: one line per event, ``key=value`` text or one JSON object.

The request being answered is named on every line logged while it runs: :data:`REQUEST_ID` is
set by the chat call for its duration (trio tasks and worker threads started meanwhile inherit
it), :class:`RequestIdFilter` copies it onto each record, and both formatters render it.

Text lines escape line breaks and every other control character, so a message carrying client or
upstream text (a URL path with ``%00``, an escape sequence, a bidi override) can neither forge a
second line nor reach journald or a terminal raw, and a traceback stays on its event's line
(``exc="Traceback…\\n…"``): journald stores one entry per line, and ``journalctl | grep req_…``
then finds the whole event.
"""

from __future__ import annotations

import json
import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Final, Literal, TextIO

REQUEST_ID: ContextVar[str | None] = ContextVar("llm_proxy_request_id", default=None)
"""The id of the ``/v1`` call the current task works for (None outside a call)."""

LogFormat = Literal["text", "json"]

TEXT_FORMAT: Final = "%(asctime)s level=%(levelname)s logger=%(name)s %(message)s"
"""The text layout (``request_id=…`` goes before the message when there is one)."""

_NAMED_ESCAPES: Final = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(code: int) -> str:
    char = chr(code)
    if char in _NAMED_ESCAPES:
        return _NAMED_ESCAPES[char]
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


# Control characters (C0, DEL, C1), the Unicode line and paragraph separators, and the bidi
# embeddings, overrides and isolates: none may reach a log line as is.
_UNPRINTABLE: Final = str.maketrans(
    {
        code: _escape(code)
        for code in (
            *range(0x20),
            *range(0x7F, 0xA0),
            0x2028,
            0x2029,
            *range(0x202A, 0x202F),
            *range(0x2066, 0x206A),
        )
    }
)


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` (the current call's, or None) to every record it sees; drops none.

    Install it on handlers, not loggers: a logger's filters skip records from its children.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = REQUEST_ID.get()
        return True


class SqlitePlanNoticeFilter(logging.Filter):
    """Drops SQLite's automatic-index notices unless the log level is DEBUG.

    APSW forwards SQLite's log as warnings, and SQLite remarks on every query it gives a
    temporary index (migration 8's rebuild joins the log's aggregate so, on every first start):
    a query-plan detail for developers, not an event an operator can act on.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "sqlite_code_name", None) != "SQLITE_WARNING_AUTOINDEX":
            return True
        return logging.getLogger().isEnabledFor(logging.DEBUG)


def request_id_of(record: logging.LogRecord) -> str | None:
    """The request id a record was logged under (set by :class:`RequestIdFilter`)."""
    value = getattr(record, "request_id", None)
    if value is None:
        value = REQUEST_ID.get()  # a handler without the filter, called in the logging task
    return value if isinstance(value, str) else None


def one_line(text: str) -> str:
    """``text`` with line breaks and every other control character escaped (``\\n``,
    ``\\x00``, ``\\u202e``), so it can neither start a new log line nor reach journald or a
    terminal raw."""
    return text.translate(_UNPRINTABLE)


class TextFormatter(logging.Formatter):
    """``2025-… level=INFO logger=llm_proxy.v1 request_id=req_… message``, always one line.

    A worker of several (``[server] workers``) writes ``worker=2`` after the logger: the workers
    share the supervisor's stderr, so journald would otherwise not tell their lines apart.
    """

    def __init__(self, worker: str | None = None) -> None:
        super().__init__(TEXT_FORMAT)
        self._worker = "" if worker is None else f" worker={worker}"

    def format(self, record: logging.LogRecord) -> str:
        record.message = record.getMessage()
        record.asctime = self.formatTime(record, self.datefmt)
        request_id = request_id_of(record)
        message = (
            record.message if request_id is None else f"request_id={request_id} {record.message}"
        )
        line = (
            f"{record.asctime} level={record.levelname} logger={record.name}{self._worker} "
            f"{one_line(message)}"
        )
        trace = _exception_text(self, record)
        if trace:
            line += " exc=" + json.dumps(trace)
        return line


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "worker"?, "message", "request_id"?, "exc"?}``, one object per
    line."""

    def __init__(self, worker: str | None = None) -> None:
        super().__init__()
        self._worker = worker

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if self._worker is not None:
            line["worker"] = self._worker
        request_id = request_id_of(record)
        if request_id is not None:
            line["request_id"] = request_id
        trace = _exception_text(self, record)
        if trace:
            line["exc"] = trace
        # ASCII only: an escaped line break or control character can never split the line.
        return json.dumps(line, ensure_ascii=True, default=str)


def _exception_text(formatter: logging.Formatter, record: logging.LogRecord) -> str:
    """The record's traceback and stack, as one string (empty when there is none)."""
    parts: list[str] = []
    if record.exc_info and not record.exc_text:
        record.exc_text = formatter.formatException(record.exc_info)
    if record.exc_text:
        parts.append(record.exc_text)
    if record.stack_info:
        parts.append(formatter.formatStack(record.stack_info))
    return "\n".join(parts)


def formatter_for(fmt: LogFormat, *, worker: str | None = None) -> logging.Formatter:
    """The formatter of ``[logging] format``; ``worker`` labels a worker process's lines."""
    return JsonFormatter(worker) if fmt == "json" else TextFormatter(worker)


def stderr_handler(
    fmt: LogFormat, stream: TextIO | None = None, *, worker: str | None = None
) -> logging.Handler:
    """A handler writing one line per event to ``stream`` (stderr), request ids included."""
    handler = logging.StreamHandler(sys.stderr if stream is None else stream)
    handler.setFormatter(formatter_for(fmt, worker=worker))
    handler.addFilter(RequestIdFilter())
    handler.addFilter(SqlitePlanNoticeFilter())
    return handler
