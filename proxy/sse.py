"""Server-sent events: the encoder for our clients and an incremental decoder for upstreams.

The decoder follows the WHATWG event-stream rules that matter for LLM upstreams: ``\\n``, ``\\r\\n``
and ``\\r`` line ends (Gemini uses CRLF), comment lines (DeepSeek's ``: keep-alive``), blank-line
padding, multi-line ``data``, and a cap on line length so an endless line cannot eat memory.
"""

from __future__ import annotations

import dataclasses

DONE = b"data: [DONE]\n\n"


def encode_event(data: bytes) -> bytes:
    """One ``data:`` event carrying a JSON payload (which never contains a raw newline)."""
    return b"data: " + data + b"\n\n"


@dataclasses.dataclass(frozen=True, slots=True)
class Event:
    """One dispatched event: its ``event`` field (usually empty) and its joined data lines."""

    data: str
    event: str = ""


class SSEError(ValueError):
    """The byte stream is not a usable event stream (a line over the cap, or bad UTF-8)."""


class SSEDecoder:
    """Feed bytes as they arrive; get back the complete events they finish."""

    def __init__(self, *, max_line_bytes: int = 4 * 1024 * 1024) -> None:
        self._max_line = max_line_bytes
        self._buffer = b""
        self._data: list[str] = []
        self._data_size = 0
        self._event = ""
        # A CR at the end of one read may be the first half of a CRLF split across reads.
        self._pending_cr = False
        #: A bad line met after the events last returned, raised by the next :meth:`feed`.
        self.failure: SSEError | None = None

    def feed(self, chunk: bytes) -> list[Event]:
        """Consume ``chunk``; return the events completed by it.

        A bad line (over the cap, not UTF-8) after complete events of the same read is held in
        :attr:`failure` and those events returned first, so content that came before it is not
        lost; the next call raises it. A bad line with nothing before it raises at once.
        """
        if self.failure is not None:
            raise self.failure
        events: list[Event] = []
        try:
            self._feed(chunk, events)
        except SSEError as exc:
            if not events:
                raise
            self.failure = exc
        return events

    def _feed(self, chunk: bytes, events: list[Event]) -> None:
        if self._pending_cr and chunk.startswith(b"\n"):
            chunk = chunk[1:]
        self._pending_cr = False
        buffer = self._buffer + chunk if self._buffer else chunk
        start = 0
        size = len(buffer)
        while start < size:
            lf = buffer.find(b"\n", start)
            cr = buffer.find(b"\r", start, lf if lf >= 0 else size)
            if cr >= 0:
                end, next_start = cr, cr + 1
                if next_start < size and buffer[next_start] == 0x0A:
                    next_start += 1
                elif next_start == size:
                    self._pending_cr = True
            elif lf >= 0:
                end, next_start = lf, lf + 1
            else:
                break
            self._line(buffer[start:end], events)
            start = next_start
        self._buffer = buffer[start:]
        if len(self._buffer) > self._max_line:
            raise SSEError(f"an event-stream line is longer than {self._max_line} bytes")

    def single_data_event(self, chunk: bytes) -> bytes | None:
        """The data of ``chunk`` when it is exactly one event of one ``data:`` line and nothing is
        pending (how LLM upstreams send nearly every read); else None, and ``chunk`` is for
        :meth:`feed`. Checked as :meth:`feed` would check it (UTF-8), the data left as bytes."""
        if (
            self._buffer
            or self._data
            or self._pending_cr
            or self.failure is not None
            or not chunk.startswith(b"data:")
            or chunk.find(b"\n") != len(chunk) - 2
            or not chunk.endswith(b"\n\n")
            or b"\r" in chunk
            or len(chunk) > self._max_line
        ):
            return None
        data = chunk[6:-2] if chunk[5] == 0x20 else chunk[5:-2]
        try:
            data.decode()
        except UnicodeDecodeError:
            return None  # feed() says what is wrong with it
        return data

    def close(self) -> bool:
        """End of input; True when nothing was left half-received (a clean end)."""
        clean = not self._buffer and not self._data
        self._buffer = b""
        self._data = []
        return clean

    def _line(self, raw: bytes, events: list[Event]) -> None:
        if not raw:
            if self._data:
                events.append(Event("\n".join(self._data), self._event))
            self._data = []
            self._data_size = 0
            self._event = ""
            return
        if raw[0] == 0x3A:  # ":" starts a comment, e.g. a keep-alive
            return
        try:
            line = raw.decode()
        except UnicodeDecodeError as exc:
            raise SSEError(f"an event-stream line is not UTF-8: {exc}") from None
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
            self._data_size += len(value)
            if self._data_size > self._max_line:
                # Data lines without the blank line that ends an event would pile up forever.
                raise SSEError(f"an event is larger than {self._max_line} bytes")
        elif name == "event":
            self._event = value
        # "id" and "retry" do not matter for one-shot LLM streams; unknown fields are ignored.
