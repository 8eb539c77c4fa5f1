"""Serve a raw ASGI3 app with hypercorn on 127.0.0.1, on a free port, inside a trio nursery."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from functools import partial
from typing import Any

import trio
from hypercorn.config import Config
from hypercorn.trio import serve

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

ERROR_LOGGER_NAME = "tests.fakes.asgi_server"


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
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve `app` until cancelled (or `shutdown` is set); started() reports "http://127.0.0.1:PORT"."""
    trigger = shutdown if shutdown is not None else trio.Event()
    run = partial(serve, _handle_lifespan(app), make_config(), shutdown_trigger=trigger.wait)  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        # hypercorn 0.18's trio serve() calls task_status.started(binds) once its sockets listen,
        # where binds is the list of bound URLs, e.g. ["http://127.0.0.1:43117"].
        binds: list[str] = await nursery.start(run)
        task_status.started(binds[0])
