"""The benchmark's servers, each run in its own process: ``python -m tests.bench.servers KIND``.

- ``upstream``: a fake OpenAI-compatible upstream on raw ``asyncio`` protocols (stdlib, HTTP/1.1
  keep-alive, pipelining tolerated), fast enough to be no bottleneck for the gateway.
- ``bare``: a minimal raw ASGI app served by hypercorn's trio worker: the ceiling of our stack.

Both listen on 127.0.0.1 port 0 and print ``PORT <n>`` on stdout once listening; both answer
``POST /v1/chat/completions`` with the same fixed ``chat.completion`` body.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

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


_COMPLETION_RESPONSE = _response(b"200 OK", COMPLETION)
_MODELS_RESPONSE = _response(b"200 OK", MODELS)
_NOT_FOUND = _response(b"404 Not Found", b'{"error":{"message":"not found"}}')


class _UpstreamProtocol(asyncio.Protocol):
    """One keep-alive connection: parse each request (Content-Length or chunked), answer."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while self._answer_one():
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
        del buffer[:rest]
        method, _, target = lines[0].partition(b" ")
        path = target.partition(b" ")[0].partition(b"?")[0]
        if method == b"post" and path == b"/v1/chat/completions":
            response = _COMPLETION_RESPONSE
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
    while more:
        message = await receive()
        more = message.get("more_body", False)
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
