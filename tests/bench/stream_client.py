"""A cheap load client for streaming ``POST /v1/chat/completions`` or ``POST /v1/responses``: raw
asyncio protocols, stdlib only, one HTTP/1.1 connection and one streamed request per stream, all
opened at once.

Per stream it records the time to the first content event (from the request's write), the
arrival time of every content event (``perf_counter()`` taken once per read: events arriving in
one read share it), whether the stream's end came, how many events it carried, the HTTP status,
and the first error. Inter-event gaps are measured between consecutive content events of a stream
only, so the figures mean the same for both APIs:

- chat: content events are the ``data:`` events other than the usage chunk (``"choices":[]``),
  ``[DONE]`` (the end) and in-stream errors;
- Responses: content events are ``response.output_text.delta``; the end is
  ``response.completed``; ``response.failed``, ``response.incomplete`` and ``error`` are errors,
  and a stream without ``response.completed`` is one too.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import gc
import itertools
import resource
import time
from urllib.parse import urlsplit

CHAT_PATH = "/v1/chat/completions"
RESPONSES_PATH = "/v1/responses"
_DONE = b"data: [DONE]"
_DATA = b"data: "
_ERROR = b'data: {"error"'
_USAGE = b'"choices":[]'
_EVENT = b"event: "
_DELTA = b"event: response.output_text.delta\n"
_COMPLETED = b"event: response.completed\n"
_FAILURES = (b"event: response.failed\n", b"event: response.incomplete\n", b"event: error\n")


def raise_nofile_limit() -> int:
    """Raise this process's open-files soft limit to its hard limit (children inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


@dataclasses.dataclass(slots=True)
class StreamResult:
    """One run of ``streams`` concurrent streams."""

    streams: int
    completed: int  # ended with its end event, all expected events, HTTP 200, no error
    ttfts_ms: list[float]  # request written -> first content event, one per stream that had one
    gaps_ms: list[float]  # between consecutive content events of a stream
    errors: int  # streams that did not complete
    error_kinds: dict[str, int]  # first error of each failed stream -> count
    elapsed_s: float  # first connect to the last stream's end
    cpu_s: float  # this process's CPU time during the run
    events: int  # SSE events received on all streams ([DONE] and usage chunks included)

    @property
    def error_summary(self) -> str:
        """The most frequent error kinds, ``"3x HTTP 502: ...; 1x timeout"``."""
        common = sorted(self.error_kinds.items(), key=lambda item: -item[1])[:4]
        return "; ".join(f"{count}x {kind}" for kind, count in common)


class _Run:
    """What the streams of one run share: how many are still going, and the end signal."""

    def __init__(self, pending: int, done: asyncio.Future[None]) -> None:
        self.pending = pending
        self.done = done

    def finished(self) -> None:
        self.pending -= 1
        if self.pending == 0 and not self.done.done():
            self.done.set_result(None)


_READ_BUFFER = bytearray(1 << 16)  # every connection reads into it: one read at a time
_READ_VIEW = memoryview(_READ_BUFFER)


class _StreamProtocol(asyncio.BufferedProtocol):
    """One connection, one streamed request; minimal incremental parsing of the answer.

    A buffered protocol: asyncio ``recv_into`` a shared buffer instead of allocating a 256 KiB
    ``bytes`` per read.
    """

    def __init__(self, request: bytes, expected: int, run: _Run, *, responses: bool) -> None:
        self.request = request
        self.expected = expected
        self.run = run
        self.responses = responses
        # Chosen once: chat's reading stays as it was, the Responses one is beside it.
        self._events = self._responses_events if responses else self._chat_events
        self.transport: asyncio.Transport | None = None
        self.sent = 0.0
        self.times: list[float] = []  # arrival of each content event
        self.status = 0
        self.head = True  # still reading the status line and headers
        self.raw = b""  # received bytes not yet de-chunked
        self.sse = bytearray()  # de-chunked body bytes not yet split into events
        self.done_seen = False
        self.others = 0  # events other than content events and chat's [DONE]
        self.error: str | None = None
        self.ended = False

    # -- asyncio callbacks ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.sent = time.perf_counter()
        transport.write(self.request)

    def get_buffer(self, sizehint: int) -> memoryview:
        return _READ_VIEW

    def buffer_updated(self, nbytes: int) -> None:
        now = time.perf_counter()
        if not self.ended:
            self._received(_READ_VIEW[:nbytes].tobytes(), now)

    def _received(self, data: bytes, now: float) -> None:
        if self.raw:
            data = self.raw + data
            self.raw = b""
        pos = 0
        if self.head:
            end = data.find(b"\r\n\r\n")
            if end < 0:
                self.raw = data
                return
            head = data[:end].lower()
            pos = end + 4
            self.head = False
            try:
                self.status = int(head[9:12])
            except ValueError:
                self.end(f"bad status line {head[:40]!r}")
                return
            if self.status != 200:
                body = data[pos : pos + 120].decode(errors="replace")
                self.end(f"HTTP {self.status}: {body}")
                return
            if b"transfer-encoding: chunked" not in head:
                self.end("200 answer not chunked")
                return
        self._dechunk(data, pos, now)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ended:
            reason = type(exc).__name__ if exc is not None else "closed by peer"
            self.end(f"connection lost ({reason}) after {len(self.times)} events")

    # -- parsing: indices into the received bytes, no copies in the usual case ---------------

    def _dechunk(self, data: bytes, pos: int, now: float) -> None:
        """Feed the complete HTTP chunks of ``data[pos:]`` to the SSE splitter; keep the rest."""
        size_of = int
        length = len(data)
        while pos < length:
            eol = data.find(b"\r\n", pos)
            if eol < 0:
                break
            try:
                size = size_of(data[pos:eol], 16)
            except ValueError:  # a chunk extension, or garbage
                try:
                    size = size_of(data[pos:eol].split(b";", 1)[0], 16)
                except ValueError:
                    self.end(f"bad chunk size line {data[pos : pos + 20]!r}")
                    return
            if size == 0:  # the last chunk; no trailers expected
                self.end(None)
                return
            start = eol + 2
            stop = start + size
            if stop + 2 > length:
                break
            if self.sse:  # an event split across chunks: the slow path
                self.sse += data[start:stop]
                self._events(bytes(self.sse), 0, len(self.sse), now)
            else:
                self._events(data, start, stop, now)
            pos = stop + 2
        if pos < length:
            self.raw = data[pos:]

    def _chat_events(self, data: bytes, pos: int, stop: int, now: float) -> None:
        """Judge the complete chat SSE events of ``data[pos:stop]``; keep an incomplete one."""
        times = self.times
        while True:
            end = data.find(b"\n\n", pos, stop)
            if end < 0:
                break
            if data.startswith(_DATA, pos):
                if data.startswith(_DONE, pos):
                    self.done_seen = True
                elif data.startswith(_ERROR, pos):
                    self.others += 1
                    text = data[pos + 6 : min(end, pos + 126)].decode(errors="replace")
                    self.error = self.error or f"in-stream error: {text}"
                elif data.find(_USAGE, pos, end) < 0:
                    times.append(now)
                else:
                    self.others += 1
            pos = end + 2
        self._keep_rest(data, pos, stop)

    def _responses_events(self, data: bytes, pos: int, stop: int, now: float) -> None:
        """Judge the complete Responses SSE events of ``data[pos:stop]`` by their ``event:``
        line; keep an incomplete one."""
        times = self.times
        while True:
            end = data.find(b"\n\n", pos, stop)
            if end < 0:
                break
            if data.startswith(_DELTA, pos):
                times.append(now)
            elif data.startswith(_EVENT, pos):
                self.others += 1
                if data.startswith(_COMPLETED, pos):
                    self.done_seen = True
                elif data.startswith(_FAILURES, pos):
                    text = data[pos : min(end, pos + 160)].decode(errors="replace")
                    self.error = self.error or "in-stream " + text.replace("\n", " ")
            pos = end + 2
        self._keep_rest(data, pos, stop)

    def _keep_rest(self, data: bytes, pos: int, stop: int) -> None:
        """Keep the incomplete event at the end of ``data[pos:stop]`` for the next chunk."""
        if pos < stop:
            self.sse = bytearray(data[pos:stop])
        elif self.sse:
            self.sse = bytearray()

    def end(self, error: str | None) -> None:
        """The answer is over (``error`` None: its last chunk came); judge it once."""
        if self.ended:
            return
        self.ended = True
        if error is None:
            error = self.error
        if error is None and not self.done_seen:
            error = "no response.completed" if self.responses else "no [DONE]"
        if error is None and len(self.times) < self.expected:
            error = f"{len(self.times)} of {self.expected} events"
        self.error = error
        self.run.finished()

    def close(self) -> None:
        if not self.ended:
            self.end(f"timeout after {len(self.times)} events")
        if self.transport is not None:
            self.transport.close()


def _request(url: str, path: str, body: bytes, key: str) -> tuple[str, int, bytes]:
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    port = parts.port or 80
    path = (parts.path.rstrip("/") or "") + path
    request = (
        f"POST {path} HTTP/1.1\r\n"
        f"host: {host}:{port}\r\n"
        "content-type: application/json\r\n"
        "accept: text/event-stream\r\n"
        f"authorization: Bearer {key}\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    ).encode() + body
    return host, port, request


async def _run(
    url: str, path: str, streams: int, body: bytes, key: str, expected: int, timeout_s: float
) -> StreamResult:
    loop = asyncio.get_running_loop()
    host, port, request = _request(url, path, body, key)
    run = _Run(streams, loop.create_future())
    responses = path == RESPONSES_PATH
    protocols = [
        _StreamProtocol(request, expected, run, responses=responses) for _ in range(streams)
    ]

    async def connect(protocol: _StreamProtocol) -> None:
        try:
            await loop.create_connection(lambda: protocol, host, port)
        except OSError as exc:
            protocol.end(f"connect failed ({type(exc).__name__}: {exc.strerror})")

    cpu = time.process_time()
    started = time.perf_counter()
    connects = [asyncio.ensure_future(connect(protocol)) for protocol in protocols]
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.shield(run.done), timeout_s)
    elapsed = time.perf_counter() - started
    for protocol in protocols:
        protocol.close()
    for task in connects:
        task.cancel()
    await asyncio.gather(*connects, return_exceptions=True)
    cpu = time.process_time() - cpu

    ttfts: list[float] = []
    gaps: list[float] = []
    kinds: collections.Counter[str] = collections.Counter()
    events = 0
    for protocol in protocols:
        times = protocol.times
        events += len(times) + protocol.others + protocol.done_seen * (not responses)
        if times:
            ttfts.append((times[0] - protocol.sent) * 1000)
            gaps.extend((b - a) * 1000 for a, b in itertools.pairwise(times))
        if protocol.error is not None:
            kinds[protocol.error] += 1
    errors = sum(kinds.values())
    return StreamResult(
        streams=streams,
        completed=streams - errors,
        ttfts_ms=ttfts,
        gaps_ms=gaps,
        errors=errors,
        error_kinds=dict(kinds),
        elapsed_s=elapsed,
        cpu_s=cpu,
        events=events,
    )


def run_streams(
    url: str,
    streams: int,
    body: bytes,
    key: str,
    *,
    expected: int,
    timeout_s: float = 20.0,
    path: str = CHAT_PATH,
) -> StreamResult:
    """Open ``streams`` connections to ``url`` at once, stream one answer on each from ``path``
    (:data:`CHAT_PATH` or :data:`RESPONSES_PATH`, which says how the stream is read), wait for
    all (at most ``timeout_s``); ``expected`` is the number of content events a stream must
    carry. The garbage collector is off meanwhile, so its pauses do not show up as gaps."""
    if path not in (CHAT_PATH, RESPONSES_PATH):
        raise ValueError(f"no stream reader for {path!r}")
    raise_nofile_limit()
    enabled = gc.isenabled()
    gc.disable()
    try:
        return asyncio.run(_run(url, path, streams, body, key, expected, timeout_s))
    finally:
        if enabled:
            gc.enable()
