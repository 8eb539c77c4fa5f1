"""Answers given before the request body has arrived keep the connection usable.

The dashboard guard (401/403), Quart's 404/405/413 and the static files answer without reading
the request body. An HTTP/1.1 connection can only serve its next request once the current one
has been read to its end, so an answer sent while the body is still on its way leaves the
server two choices: read the rest, or close. This middleware holds the start of such an answer
until the body is complete (Quart's own reader consumes it meanwhile), as Go's net/http does
after a handler returns; past :data:`DRAIN_LIMIT_BYTES`, or when the rest does not arrive within
:data:`DRAIN_WINDOW_S`, the answer goes out at once with ``Connection: close`` instead: nothing
unbounded is read only to be thrown away.
"""

from __future__ import annotations

from typing import Final

import trio

from web.asgi import ASGIApp, Message, Receive, Scope, Send, header

DRAIN_LIMIT_BYTES: Final = 256 * 1024
DRAIN_WINDOW_S: Final = 2.0
_CLOSE: Final = (b"connection", b"close")


def finish_body_first(app: ASGIApp) -> ASGIApp:
    """Wrap an app whose reader consumes request bodies concurrently (Quart does) so that its
    early answers wait for the body, within bounds, or close the connection."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _has_body(scope):
            await app(scope, receive, send)
            return
        body = _BodyProgress(receive, _declared_length(scope))
        await app(scope, body.receive, _holding_answer(send, body))

    return wrapped


def _has_body(scope: Scope) -> bool:
    length = header(scope, b"content-length")
    if length is not None:
        return length.strip() != b"0"
    return header(scope, b"transfer-encoding") is not None


def _declared_length(scope: Scope) -> int | None:
    length = header(scope, b"content-length")
    return int(length) if length is not None and length.strip().isdigit() else None


class _BodyProgress:
    """How much of one request body has passed through the app's ``receive``."""

    def __init__(self, receive: Receive, declared: int | None) -> None:
        self._receive = receive
        self.declared = declared
        self.received = 0
        self.complete = False
        self.settled = trio.Event()  # complete, or past the limit: nothing left to wait for

    async def receive(self) -> Message:
        message = await self._receive()
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if not message.get("more_body", False):
                self.complete = True
        else:  # http.disconnect: nothing more will come
            self.complete = True
        if self.complete or self.received > DRAIN_LIMIT_BYTES:
            self.settled.set()
        return message

    async def drained(self) -> bool:
        """Whether the body ends within the limit and the window (waiting for it if needed)."""
        if self.declared is not None and self.declared > DRAIN_LIMIT_BYTES:
            return self.complete
        with trio.move_on_after(DRAIN_WINDOW_S):
            await self.settled.wait()
        return self.complete and self.received <= DRAIN_LIMIT_BYTES


def _holding_answer(send: Send, body: _BodyProgress) -> Send:
    async def send_after_body(message: Message) -> None:
        if (
            message["type"] == "http.response.start"
            and not body.complete
            and not await body.drained()
        ):
            message = {**message, "headers": [*message.get("headers", ()), _CLOSE]}
        await send(message)

    return send_after_body
