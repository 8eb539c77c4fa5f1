"""Serve a raw ASGI3 app with hypercorn on 127.0.0.1, on a free port; the fakes' shared plumbing."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass
from functools import partial
from typing import Any, ClassVar, Generic, TypeVar

import msgspec
import trio
from hypercorn.config import Config
from hypercorn.trio import serve

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

ERROR_LOGGER_NAME = "tests.fakes.asgi_server"

B = TypeVar("B")


class CutConnection(Exception):
    """Raise from an ASGI app after some body to drop the connection without ending the body."""


class _DropCutConnection(logging.Filter):
    """Keep hypercorn from logging the deliberate CutConnection as an app error."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], CutConnection))


_error_logger = logging.getLogger(ERROR_LOGGER_NAME)
_error_logger.addFilter(_DropCutConnection())


def make_config() -> Config:
    """Return a hypercorn Config for a test server: port 0, quiet, short graceful shutdown."""
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    config.errorlog = _error_logger  # app errors reach pytest's log capture, not raw stderr
    config.graceful_timeout = 0.5
    # Longer than httpx's 5 s keep-alive expiry, so the client always closes idle connections
    # first and a reused connection never races a server-side close.
    config.keep_alive_timeout = 75.0
    config.include_server_header = False
    return config


def _handle_lifespan(app: ASGIApp) -> ASGIApp:
    """Answer the lifespan protocol here, so fakes only ever see "http" scopes.

    hypercorn 0.18 fails at startup (ClosedResourceError) if an app simply returns on a lifespan
    scope instead of raising or completing the handshake.
    """

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await app(scope, receive, send)
            return
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    return wrapped


async def serve_asgi(
    app: ASGIApp,
    *,
    shutdown: trio.Event | None = None,
    config: Config | None = None,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve `app` until cancelled (or `shutdown` is set); started() reports "http://127.0.0.1:PORT"."""
    # `config` defaults to make_config(); pass one built by it to add, say, a TLS certificate.
    trigger = shutdown if shutdown is not None else trio.Event()
    config = config if config is not None else make_config()
    run = partial(serve, _handle_lifespan(app), config, shutdown_trigger=trigger.wait)  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        # hypercorn 0.18's trio serve() calls task_status.started(binds) once its sockets listen,
        # where binds is the list of bound URLs, e.g. ["http://127.0.0.1:43117"].
        binds: list[str] = await nursery.start(run)
        task_status.started(binds[0])


# ---------------------------------------------------------------------------------------------
# Plumbing shared by the scripted fakes
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Received:
    """One request as the fake saw it."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: Any
    raw: bytes


async def read_request(scope: Scope, receive: Receive) -> Received | None:
    """Read a whole HTTP request (JSON body decoded, or None); None if the client left first."""
    raw = b""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        raw += message.get("body", b"")
        if not message.get("more_body", False):
            break
    headers: dict[str, str] = {}
    for name, value in scope["headers"]:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    try:
        body = msgspec.json.decode(raw) if raw else None
    except msgspec.DecodeError:
        body = None
    query = scope["query_string"].decode("latin-1")
    return Received(scope["method"], scope["path"], query, headers, body, raw)


class ResponseWriter:
    """Wraps ASGI send; marks itself finished just before the last body message goes out."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self.finished = False

    async def start(self, status: int, headers: Mapping[str, str]) -> None:
        """Send the status line and headers."""
        raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
        await self._send({"type": "http.response.start", "status": status, "headers": raw})

    async def write(self, data: bytes) -> None:
        """Send a piece of the body; more follows."""
        await self._send({"type": "http.response.body", "body": data, "more_body": True})

    async def end(self, data: bytes = b"") -> None:
        """Send the last piece of the body."""
        self.finished = True
        await self._send({"type": "http.response.body", "body": data, "more_body": False})

    async def full(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
        """Send a complete response with a content-length."""
        await self.start(status, {**headers, "content-length": str(len(body))})
        await self.end(body)


class ScriptedUpstream(ABC, Generic[B]):
    """A fake upstream over real HTTP that answers with behaviours of type `B` queued by tests."""

    url_suffix: ClassVar[str] = ""  # appended to "http://127.0.0.1:PORT" to make base_url

    def __init__(self) -> None:
        self.base_url = ""  # "http://127.0.0.1:PORT" + url_suffix once running
        self.received: list[Received] = []  # every request, recorded before it is answered
        self.disconnects = 0  # answers whose client left before the last body message
        self._queue: deque[B] = deque()
        self.disconnected_at: list[float] = []  # trio clock times the disconnects were seen
        # When set, chat answers wait until this event is set (after the request is recorded),
        # so a test can hold calls in flight by events instead of timers.
        self.hold: trio.Event | None = None

    def enqueue(self, *behaviours: B) -> None:
        """Use these behaviours, in order, for the next scripted answers; then the default."""
        self._queue.extend(behaviours)

    def clear(self) -> None:
        """Forget the behaviours not used yet."""
        self._queue.clear()

    def next_behaviour(self, default: B) -> B:
        """The next queued behaviour, or `default` once the queue is empty."""
        return self._queue.popleft() if self._queue else default

    async def run(self, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled; started() reports base_url ("http://127.0.0.1:PORT" + suffix)."""
        async with trio.open_nursery() as nursery:
            url: str = await nursery.start(serve_asgi, self._app)
            self.base_url = url + self.url_suffix
            task_status.started(self.base_url)

    async def _app(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The raw ASGI3 entry point: record the request, then let the subclass answer it."""
        if scope["type"] != "http":
            return
        request = await read_request(scope, receive)
        if request is None:
            return
        self.received.append(request)
        await self._handle(request, ResponseWriter(send), receive)

    @abstractmethod
    async def _handle(self, request: Received, reply: ResponseWriter, receive: Receive) -> None:
        """Answer one request, already recorded in `received`."""

    async def _answer_watched(
        self, reply: ResponseWriter, receive: Receive, answer: Callable[[], Awaitable[bool]]
    ) -> None:
        """Run `answer` while watching for the client leaving; True from it drops the connection."""
        cut = False
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._watch_disconnect, receive, reply, nursery.cancel_scope)
            if self.hold is not None:
                await self.hold.wait()
            cut = await answer()
            nursery.cancel_scope.cancel()
        if cut:
            raise CutConnection

    async def _watch_disconnect(
        self, receive: Receive, reply: ResponseWriter, scope: trio.CancelScope
    ) -> None:
        """Count and stop a response whose client goes away before its last body message."""
        while (await receive())["type"] != "http.disconnect":
            pass
        if not reply.finished:
            self.disconnects += 1
            self.disconnected_at.append(trio.current_time())
            scope.cancel()
