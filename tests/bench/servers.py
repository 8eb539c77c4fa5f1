"""The benchmark's servers, each run in its own process: ``python -m tests.bench.servers KIND``.

- ``upstream``: a fake OpenAI-compatible upstream on raw ``asyncio`` protocols (stdlib, HTTP/1.1
  keep-alive, pipelining tolerated), fast enough to be no bottleneck for the gateway.
- ``bare``: a minimal raw ASGI app served by hypercorn's trio worker: the ceiling of our stack.

Both listen on 127.0.0.1 port 0 and print ``PORT <n>`` on stdout once listening; both answer
``POST /v1/chat/completions`` with the same fixed ``chat.completion`` body.

The fake upstream also streams: a request body carrying ``"stream":true`` gets ``200``
``text/event-stream`` (chunked) with :data:`STREAM_CHUNKS` ``chat.completion.chunk`` events
:data:`STREAM_GAP_S` apart (the first at once), then a usage chunk (``choices: []``) and
``data: [DONE]`` right after the last one, all precomputed and paced by loop timers.

It serves the Responses API too (``POST /v1/responses``, its bytes in
:mod:`tests.bench.responses_wire`): a completed response object, or its event sequence with
:data:`STREAM_CHUNKS` ``response.output_text.delta`` events paced exactly as chat's chunks (the
opening events go out with the first delta, the closing ones right after the last).

And embeddings (``POST /v1/embeddings``): :data:`EMBEDDING_DIMENSIONS` floats per input, one
vector for a string input and :data:`EMBEDDING_BATCH` for a list (the bench sends no other).
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from tests.bench import responses_wire

STREAM_CHUNKS = 64  # chat.completion.chunk events per streamed answer, usage chunk not counted
STREAM_GAP_S = 0.020  # seconds between two of them; the first goes out with the headers

COMPLETION: bytes = json.dumps(
    {
        "id": "chatcmpl-bench0000000000000000000000",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "gpt-4o-2024-08-06",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello! How can I help you today?"},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 9, "completion_tokens": 9, "total_tokens": 18},
        "system_fingerprint": "fp_bench",
    },
    separators=(",", ":"),
).encode()

MODELS: bytes = json.dumps(
    {
        "object": "list",
        "data": [
            {"id": "gpt-4o", "object": "model", "created": 1_700_000_000, "owned_by": "openai"},
            {
                "id": "gpt-4o-mini",
                "object": "model",
                "created": 1_700_000_000,
                "owned_by": "openai",
            },
        ],
    },
    separators=(",", ":"),
).encode()


def _response(status: bytes, body: bytes) -> bytes:
    head = (
        b"HTTP/1.1 " + status + b"\r\n"
        b"content-type: application/json\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\n\r\n"
    )
    return head + body


def _stream_chunk(delta: dict[str, Any], finish_reason: str | None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-bench0000000000000000000000",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": "gpt-4o-2024-08-06",
        "system_fingerprint": "fp_bench",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
        "usage": None,
    }


def _http_chunk(payload: dict[str, Any] | str) -> bytes:
    """One SSE ``data:`` event framed as one HTTP/1.1 chunk."""
    data = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    return _frame(b"data: " + data.encode() + b"\n\n")


def _frame(event: bytes) -> bytes:
    """One SSE event framed as one HTTP/1.1 chunk."""
    return b"%x\r\n" % len(event) + event + b"\r\n"


def _stream_events() -> tuple[bytes, ...]:
    """The ``STREAM_CHUNKS`` framed events: role, content pieces, then ``finish_reason``."""
    events = [_stream_chunk({"role": "assistant", "content": "", "refusal": None}, None)]
    events += [_stream_chunk({"content": f" tok{i}"}, None) for i in range(1, STREAM_CHUNKS - 1)]
    events.append(_stream_chunk({}, "stop"))
    return tuple(_http_chunk(event) for event in events)


_STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\n"
    b"content-type: text/event-stream; charset=utf-8\r\n"
    b"cache-control: no-cache\r\n"
    b"transfer-encoding: chunked\r\n\r\n"
)
_STREAM_EVENTS = _stream_events()
_STREAM_TAIL = (
    _http_chunk(
        {
            "id": "chatcmpl-bench0000000000000000000000",
            "object": "chat.completion.chunk",
            "created": 1_700_000_000,
            "model": "gpt-4o-2024-08-06",
            "system_fingerprint": "fp_bench",
            "choices": [],
            "usage": {
                "prompt_tokens": 9,
                "completion_tokens": STREAM_CHUNKS - 2,
                "total_tokens": 9 + STREAM_CHUNKS - 2,
            },
        }
    )
    + _http_chunk("[DONE]")
    + b"0\r\n\r\n"
)
_RESPONSES_OPENING, _RESPONSES_DELTAS, _RESPONSES_CLOSING = (
    tuple(_frame(event) for event in events)
    for events in responses_wire.stream_events(STREAM_CHUNKS)
)
# Sent with the head: the opening events and the first delta, as chat's first chunk is.
_RESPONSES_FIRST = b"".join(_RESPONSES_OPENING) + _RESPONSES_DELTAS[0]
_RESPONSES_TAIL = b"".join(_RESPONSES_CLOSING) + b"0\r\n\r\n"
_RESPONSE_ANSWER = _response(b"200 OK", responses_wire.RESPONSE)
_COMPLETION_RESPONSE = _response(b"200 OK", COMPLETION)
_MODELS_RESPONSE = _response(b"200 OK", MODELS)
EMBEDDING_DIMENSIONS = 1536  # text-embedding-3-small's
EMBEDDING_BATCH = 16


def _embeddings(count: int) -> bytes:
    vector = [round(((i * 7919) % 1000) / 1000 - 0.5, 6) for i in range(EMBEDDING_DIMENSIONS)]
    data = [{"object": "embedding", "index": i, "embedding": vector} for i in range(count)]
    answer = {
        "object": "list",
        "data": data,
        "model": "text-embedding-3-small",
        "usage": {"prompt_tokens": 4 * count, "total_tokens": 4 * count},
    }
    return json.dumps(answer, separators=(",", ":")).encode()


_EMBEDDING_ONE = _response(b"200 OK", _embeddings(1))
_EMBEDDING_BATCH = _response(b"200 OK", _embeddings(EMBEDDING_BATCH))
_NOT_FOUND = _response(b"404 Not Found", b'{"error":{"message":"not found"}}')


class _UpstreamProtocol(asyncio.Protocol):
    """One keep-alive connection: parse each request (Content-Length or chunked), answer.

    A streamed answer is sent by a chain of ``call_at`` timers on an absolute schedule (start +
    i * ``STREAM_GAP_S``, so lateness does not add up); requests pipelined behind it wait.
    """

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.loop = asyncio.get_running_loop()
        self.timer: asyncio.TimerHandle | None = None  # set while a stream is being sent
        self.stream_start = 0.0
        self.stream_events = _STREAM_EVENTS  # the paced events of the stream being sent
        self.stream_tail = _STREAM_TAIL  # sent right after its last paced event
        self.stream_next = 0  # index of the next event in stream_events
        self.close_after_stream = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while self.timer is None and self._answer_one():
            pass

    def _start_stream(
        self, close: bool, first: bytes, events: tuple[bytes, ...], tail: bytes
    ) -> None:
        """Send the head and ``first`` now, ``events[1:]`` on the schedule, then ``tail``."""
        assert self.transport is not None
        self.transport.write(_STREAM_HEAD + first)
        self.stream_events = events
        self.stream_tail = tail
        self.close_after_stream = close
        self.stream_start = self.loop.time()
        self.stream_next = 1
        self.timer = self.loop.call_at(self.stream_start + STREAM_GAP_S, self._send_next)

    def _send_next(self) -> None:
        transport = self.transport
        assert transport is not None
        if transport.is_closing():
            self.timer = None
            return
        index = self.stream_next
        events = self.stream_events
        if index < len(events) - 1:
            transport.write(events[index])
            self.stream_next = index + 1
            self.timer = self.loop.call_at(
                self.stream_start + (index + 1) * STREAM_GAP_S, self._send_next
            )
            return
        transport.write(events[index])
        transport.write(self.stream_tail)
        self.timer = None
        if self.close_after_stream:
            transport.close()
            return
        while self.timer is None and self._answer_one():  # requests pipelined meanwhile
            pass

    def _answer_one(self) -> bool:
        """Answer the first complete request in the buffer; False when it is still incomplete."""
        buffer = self.buffer
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            return False
        head = bytes(buffer[:end]).lower()
        lines = head.split(b"\r\n")
        length = 0
        chunked = close = False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value
            elif name == b"connection":
                close = b"close" in value
        start = end + 4
        if chunked:
            consumed = self._chunked_length(start)
            if consumed < 0:
                return False
            rest = start + consumed
        else:
            rest = start + length
            if len(buffer) < rest:
                return False
        stream = (
            buffer.find(b'"stream":true', start, rest) >= 0
            or buffer.find(b'"stream": true', start, rest) >= 0
        )
        batch = buffer.find(b'"input":[', start, rest) >= 0
        del buffer[:rest]
        method, _, target = lines[0].partition(b" ")
        path = target.partition(b" ")[0].partition(b"?")[0]
        if method == b"post" and path == b"/v1/chat/completions":
            if stream:
                self._start_stream(close, _STREAM_EVENTS[0], _STREAM_EVENTS, _STREAM_TAIL)
                return False
            response = _COMPLETION_RESPONSE
        elif method == b"post" and path == b"/v1/responses":
            response_id = responses_wire.next_id()  # each answer its own, as OpenAI's
            if stream:
                placeholder = responses_wire.PLACEHOLDER
                self._start_stream(
                    close,
                    _RESPONSES_FIRST.replace(placeholder, response_id),
                    _RESPONSES_DELTAS,
                    _RESPONSES_TAIL.replace(placeholder, response_id),
                )
                return False
            response = _RESPONSE_ANSWER.replace(responses_wire.PLACEHOLDER, response_id)
        elif method == b"post" and path == b"/v1/embeddings":
            response = _EMBEDDING_BATCH if batch else _EMBEDDING_ONE
        elif method == b"get" and path == b"/v1/models":
            response = _MODELS_RESPONSE
        else:
            response = _NOT_FOUND
        assert self.transport is not None
        self.transport.write(response)
        if close:
            self.transport.close()
            return False
        return True

    def _chunked_length(self, start: int) -> int:
        """Bytes of a complete chunked body from ``start`` (trailers included), or -1."""
        buffer = self.buffer
        pos = start
        while True:
            eol = buffer.find(b"\r\n", pos)
            if eol < 0:
                return -1
            size = int(bytes(buffer[pos:eol]).split(b";")[0], 16)
            pos = eol + 2
            if size == 0:
                trailer_end = buffer.find(b"\r\n\r\n", pos - 2)
                return -1 if trailer_end < 0 else trailer_end + 4 - start
            pos += size + 2
            if len(buffer) < pos:
                return -1


async def serve_upstream() -> None:
    """Serve the fake upstream until killed."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_UpstreamProtocol, "127.0.0.1", 0, backlog=1024)
    port = server.sockets[0].getsockname()[1]
    print(f"PORT {port}", flush=True)
    async with server:
        await server.serve_forever()


async def bare_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A raw ASGI app: read the request body, answer the fixed completion."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    more = True
    body = b""
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    if b'"stream":true' in body or b'"stream": true' in body:
        await _bare_stream(send)
        return
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(COMPLETION)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": COMPLETION})


def _unframe(chunked: bytes) -> bytes:
    """The payload of HTTP/1.1 chunks: hypercorn frames what the bare app sends itself."""
    payload, rest = b"", chunked
    while rest:
        size, _, rest = rest.partition(b"\r\n")
        length = int(size, 16)
        payload, rest = payload + rest[:length], rest[length + 2 :]
    return payload


_BARE_EVENTS = tuple(_unframe(event) for event in _STREAM_EVENTS)
_BARE_TAIL = _unframe(_STREAM_TAIL)


async def _bare_stream(send: Any) -> None:
    """The streamed answer of the fake upstream, paced the same way, sent through hypercorn."""
    import trio

    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/event-stream; charset=utf-8")],
        }
    )
    start = trio.current_time()
    for index, event in enumerate(_BARE_EVENTS):
        if index:
            await trio.sleep_until(start + index * STREAM_GAP_S)
        await send({"type": "http.response.body", "body": event, "more_body": True})
    await send({"type": "http.response.body", "body": _BARE_TAIL, "more_body": False})


def serve_bare() -> None:
    """Serve the bare ASGI app with hypercorn's trio worker until killed."""
    import hypercorn.config
    import hypercorn.trio
    import trio

    config = hypercorn.config.Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    config.errorlog = None  # not even the "Running on" line: the bench prints one table
    config.keep_alive_timeout = 75
    config.include_server_header = False
    config.backlog = 2048  # as the gateway's: a burst of 1,000 clients must not wait on SYN retries

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            binds: list[str] = await nursery.start(hypercorn.trio.serve, bare_app, config)
            print(f"PORT {binds[0].rsplit(':', 1)[1]}", flush=True)

    trio.run(main)


if __name__ == "__main__":
    kind = sys.argv[1] if len(sys.argv) > 1 else ""
    if kind == "upstream":
        asyncio.run(serve_upstream())
    elif kind == "bare":
        serve_bare()
    else:
        sys.exit("usage: python -m tests.bench.servers upstream|bare")
