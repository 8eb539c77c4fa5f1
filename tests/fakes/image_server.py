"""A fake image host: real HTTP on 127.0.0.1 (optionally TLS), with the paths image tests need.

- ``/cat.png``: a real small PNG (:data:`CAT_PNG`), ``image/png``;
- ``/big.png``: a real PNG of ``big_size`` bytes or more, streamed without a content-length;
- ``/huge-declared``: declares a huge content-length, sends a little, then waits;
- ``/page.html``: ``text/html``;
- ``/redirect?to=URL``: 302 to ``URL`` (absolute or relative);
- ``/slow.png?s=SECONDS``: sleeps (default 5 s), then answers like ``/cat.png``;
- ``/missing`` and anything else: 404.

Every request is recorded (path, query, headers) and counted per path.
"""

from __future__ import annotations

import collections
import struct
import zlib
from dataclasses import dataclass
from functools import partial
from urllib.parse import parse_qs

import trio
from hypercorn.trio import serve

from .asgi_server import Receive, Scope, Send, make_config, serve_asgi

__all__ = ["CAT_PNG", "FakeImageServer", "Seen", "make_png"]


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def make_png(width: int, height: int, *, level: int = 9) -> bytes:
    """A valid RGB PNG of a colour gradient; ``level=0`` makes it about 3 bytes per pixel."""
    rows = b"".join(
        b"\x00" + bytes((x * 7 + y) % 256 for x in range(width) for _ in range(3))
        for y in range(height)
    )
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(rows, level))
        + _chunk(b"IEND", b"")
    )


CAT_PNG = make_png(4, 4)


@dataclass(frozen=True)
class Seen:
    """One request as the server saw it."""

    path: str
    query: str
    headers: dict[str, str]


class FakeImageServer:
    """Serves the image-test paths; see the module docstring."""

    def __init__(self, *, big_size: int = 200_000) -> None:
        side = int((big_size / 3) ** 0.5) + 2
        self.big_png = make_png(side, side, level=0)
        self.base_url = ""  # "http://127.0.0.1:PORT" (or https) once running
        self.port = 0
        self.hits: collections.Counter[str] = collections.Counter()
        self.seen: list[Seen] = []
        self.in_flight = 0  # /slow.png requests being answered
        self.max_in_flight = 0

    async def run(
        self,
        *,
        certfile: str | None = None,
        keyfile: str | None = None,
        task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve until cancelled; started() reports the base URL. TLS with a cert and key."""
        async with trio.open_nursery() as nursery:
            if certfile is None:
                url: str = await nursery.start(serve_asgi, self._app)
            else:
                url = await nursery.start(partial(self._serve_tls, certfile, keyfile))
            self.base_url = url
            self.port = int(url.rsplit(":", 1)[1])
            task_status.started(url)

    async def _serve_tls(
        self,
        certfile: str,
        keyfile: str | None,
        *,
        task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        # serve_asgi has no TLS option: the same hypercorn config, plus a certificate.
        config = make_config()
        config.certfile = certfile
        config.keyfile = keyfile
        async with trio.open_nursery() as nursery:
            # hypercorn types ASGI scopes more narrowly than our plain-mapping app
            run = partial(serve, self._app, config)  # type: ignore[arg-type]
            binds: list[str] = await nursery.start(run)
            task_status.started(binds[0])

    async def _app(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The raw ASGI3 entry point."""
        if scope["type"] == "lifespan":  # only reached when serving TLS (serve_asgi answers it)
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        query: str = scope["query_string"].decode("latin-1")
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        self.hits[path] += 1
        self.seen.append(Seen(path, query, headers))
        params = {k: v[0] for k, v in parse_qs(query).items()}

        if path == "/cat.png":
            await _reply(send, 200, "image/png", CAT_PNG)
        elif path == "/big.png":
            await _start(send, 200, [("content-type", "image/png")])
            await _stream(send, self.big_png)
        elif path == "/huge-declared":
            await _start(send, 200, [("content-type", "image/png"), ("content-length", "9" * 12)])
            await send({"type": "http.response.body", "body": CAT_PNG, "more_body": True})
            while (await receive())["type"] != "http.disconnect":
                pass
        elif path == "/page.html":
            await _reply(send, 200, "text/html; charset=utf-8", b"<html>not an image</html>")
        elif path == "/redirect" and "to" in params:
            await _start(send, 302, [("location", params["to"])])
            await send({"type": "http.response.body", "body": b""})
        elif path == "/slow.png":
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            try:
                await trio.sleep(float(params.get("s", "5")))
            finally:
                self.in_flight -= 1
            await _reply(send, 200, "image/png", CAT_PNG)
        else:
            await _reply(send, 404, "text/plain", b"not found")


async def _lifespan(receive: Receive, send: Send) -> None:
    """Complete hypercorn's startup and shutdown handshakes."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _start(send: Send, status: int, headers: list[tuple[str, str]]) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(k.encode(), v.encode()) for k, v in headers],
        }
    )


async def _reply(send: Send, status: int, content_type: str, body: bytes) -> None:
    headers = [("content-type", content_type), ("content-length", str(len(body)))]
    await _start(send, status, headers)
    await send({"type": "http.response.body", "body": body})


async def _stream(send: Send, body: bytes, size: int = 16_384) -> None:
    """Send ``body`` in pieces (chunked: no content-length); stop quietly if the client left."""
    try:
        for start in range(0, len(body), size):
            piece = body[start : start + size]
            await send({"type": "http.response.body", "body": piece, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    except Exception:  # the client hung up after enough bytes: expected in size-cap tests
        return
