"""A fake image host: real HTTP on 127.0.0.1 (optionally TLS), with the paths image tests need.

- ``/cat.png``: a real small PNG (:data:`CAT_PNG`), ``image/png``;
- ``/big.png``: a real PNG of ``big_size`` bytes or more, streamed without a content-length;
- ``/huge-declared``: declares a huge content-length, sends a little, then waits;
- ``/page.html``: ``text/html``;
- ``/redirect?to=URL``: 302 to ``URL`` (absolute or relative);
- ``/slow.png?s=SECONDS``: sleeps (default 5 s), then answers like ``/cat.png``;
- ``/large.png?bytes=N&chunk=C&pause=S&declare=0``: ``N`` bytes (a PNG signature, then zeros) in
  pieces of ``C`` bytes (default 256 KiB) sent ``S`` seconds apart (default 0), with a
  content-length unless ``declare=0``; ``large_sent`` counts the body bytes sent;
- ``/held.png``: answers like ``/cat.png`` once :attr:`FakeImageServer.release` is set;
  ``held`` counts the requests waiting, ``held_queries`` lists their queries in arrival order;
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

from .asgi_server import Receive, ResponseWriter, Scope, Send, make_config, serve_asgi

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
        self.large_sent = 0
        self.release = trio.Event()  # lets /held.png requests answer
        self.held = 0
        self.held_queries: list[str] = []

    async def run(
        self,
        *,
        certfile: str | None = None,
        keyfile: str | None = None,
        task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve until cancelled; started() reports the base URL. TLS with a cert and key."""
        config = make_config()
        if certfile is not None:
            config.certfile = certfile
            config.keyfile = keyfile
        async with trio.open_nursery() as nursery:
            url: str = await nursery.start(partial(serve_asgi, self._app, config=config))
            self.base_url = url
            self.port = int(url.rsplit(":", 1)[1])
            task_status.started(url)

    async def _app(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The raw ASGI3 entry point."""
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        query: str = scope["query_string"].decode("latin-1")
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        self.hits[path] += 1
        self.seen.append(Seen(path, query, headers))
        params = {k: v[0] for k, v in parse_qs(query).items()}
        reply = ResponseWriter(send)

        if path == "/cat.png":
            await reply.full(200, _PNG, CAT_PNG)
        elif path == "/big.png":
            await reply.start(200, _PNG)
            await _stream(reply, self.big_png)
        elif path == "/huge-declared":
            await reply.start(200, {**_PNG, "content-length": "9" * 12})
            await reply.write(CAT_PNG)
            while (await receive())["type"] != "http.disconnect":
                pass
        elif path == "/page.html":
            page = b"<html>not an image</html>"
            await reply.full(200, {"content-type": "text/html; charset=utf-8"}, page)
        elif path == "/redirect" and "to" in params:
            # A non-ASCII target goes out as its UTF-8 bytes (ResponseWriter encodes latin-1).
            location = params["to"].encode().decode("latin-1")
            await reply.start(302, {"location": location})
            await reply.end()
        elif path == "/slow.png":
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            try:
                await trio.sleep(float(params.get("s", "5")))
            finally:
                self.in_flight -= 1
            await reply.full(200, _PNG, CAT_PNG)
        elif path == "/large.png":
            await self._large(reply, params)
        elif path == "/held.png":
            self.held += 1
            self.held_queries.append(query)
            try:
                await self.release.wait()
            finally:
                self.held -= 1
            await reply.full(200, _PNG, CAT_PNG)
        else:
            await reply.full(404, {"content-type": "text/plain"}, b"not found")

    async def _large(self, reply: ResponseWriter, params: dict[str, str]) -> None:
        """``/large.png``: a big body, declared or not, sent piece by piece."""
        size = int(params.get("bytes", "1000000"))
        piece = int(params.get("chunk", str(256 * 1024)))
        pause = float(params.get("pause", "0"))
        headers = dict(_PNG)
        if params.get("declare", "1") != "0":
            headers["content-length"] = str(size)
        await reply.start(200, headers)
        zeros = bytes(piece)
        sent = 0
        try:
            while sent < size:
                await trio.sleep(pause)
                data = _PNG_SIGNATURE if sent == 0 else b""
                data += zeros[: min(piece, size - sent) - len(data)]
                await reply.write(data)
                sent += len(data)
                self.large_sent += len(data)
            await reply.end()
        except Exception:  # the client hung up (a refused or capped fetch): expected
            return


_PNG = {"content-type": "image/png"}
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


async def _stream(reply: ResponseWriter, body: bytes, size: int = 16_384) -> None:
    """Send ``body`` in pieces (chunked: no content-length); stop quietly if the client left."""
    try:
        for start in range(0, len(body), size):
            await reply.write(body[start : start + size])
        await reply.end()
    except Exception:  # the client hung up after enough bytes: expected in size-cap tests
        return
