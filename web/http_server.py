"""The HTTP server: hypercorn's trio worker with our accept loop and connection handler.

``hypercorn.trio.serve`` accepts through ``trio.serve_listeners`` and hands each socket to its
own ``TCPServer``; neither can be told to count connections, cap them, or time out a connection
that never sends a request. This is its ``worker_serve`` (lifespan, listeners, graceful
shutdown) with the accept loop replaced by one that admits each socket through
:class:`~web.connections.Connections` without ever waiting, and the handler replaced by
:class:`~web.http_connection.HTTPConnection`. Plain HTTP only: TLS is the reverse proxy's job.
"""

from __future__ import annotations

import errno
import logging
import math
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, cast

import hypercorn.config
import trio
from hypercorn.trio.lifespan import Lifespan
from hypercorn.trio.statsd import StatsdLogger
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import ConnectionState
from hypercorn.utils import repr_socket_addr, wrap_app

from web.asgi import ASGIApp
from web.connections import Connection, Connections
from web.http_connection import HTTPConnection

log = logging.getLogger("llm_proxy.http")

# accept() failures that mean "out of descriptors or memory for now", as in trio.serve_listeners.
_CAPACITY_ERRORS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})
_CAPACITY_PAUSE_S = 0.1
_COMPLAINT_INTERVAL_S = 10.0
_SHUTDOWN_DEADLINE_S = 1.0

Handler = Callable[[trio.SocketStream, Connection], Awaitable[None]]


async def serve(
    app: ASGIApp,
    config: hypercorn.config.Config,
    connections: Connections,
    *,
    header_timeout_s: float,
    shutdown_trigger: Callable[[], Awaitable[None]],
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` on ``config.bind`` until ``shutdown_trigger`` returns, then let the
    connections finish within ``config.graceful_timeout``; reports the bound URLs."""
    if config.ssl_enabled:
        raise ValueError("the gateway serves plain HTTP: terminate TLS in a reverse proxy")
    config.set_statsd_logger_class(StatsdLogger)
    # Our ASGI types are plain mappings; hypercorn's are TypedDicts.
    wrapped = wrap_app(cast(Any, app), config.wsgi_max_body_size, "asgi")
    lifespan_state: dict[str, Any] = {}
    lifespan = Lifespan(wrapped, config, lifespan_state)
    context = WorkerContext(None)
    async with trio.open_nursery() as lifespan_nursery:
        await lifespan_nursery.start(lifespan.handle_lifespan)
        await lifespan.wait_for_startup()
        async with trio.open_nursery() as connections_nursery:
            listeners, binds = _listen(config)
            handler = partial(
                _handle,
                partial(
                    HTTPConnection, wrapped, config, context, ConnectionState(lifespan_state.copy())
                ),
                header_timeout_s,
            )
            task_status.started(binds)
            try:
                async with trio.open_nursery() as accepting:
                    for listener in listeners:
                        accepting.start_soon(
                            _accept, listener, connections, connections_nursery, handler
                        )
                    await shutdown_trigger()
                    accepting.cancel_scope.cancel()
            finally:
                with trio.move_on_after(_SHUTDOWN_DEADLINE_S, shield=True):
                    # Idle connections close now and finished answers close their connection.
                    await context.terminated.set()
                connections_nursery.cancel_scope.deadline = (
                    trio.current_time() + config.graceful_timeout
                )
        await lifespan.wait_for_shutdown()
        lifespan_nursery.cancel_scope.cancel()


def _listen(config: hypercorn.config.Config) -> tuple[list[trio.SocketListener], list[str]]:
    listeners: list[trio.SocketListener] = []
    binds: list[str] = []
    for sock in config.create_sockets().insecure_sockets:
        sock.listen(config.backlog)
        listeners.append(trio.SocketListener(trio.socket.from_stdlib_socket(sock)))
        binds.append(f"http://{repr_socket_addr(sock.family, sock.getsockname())}")
    return listeners, binds


async def _accept(
    listener: trio.SocketListener,
    connections: Connections,
    nursery: trio.Nursery,
    handler: Handler,
) -> None:
    """Accept forever; each socket is admitted (or shed) at once, never waited on."""
    next_complaint = -math.inf
    async with listener:
        while True:
            try:
                stream = await listener.accept()
            except OSError as exc:
                if exc.errno not in _CAPACITY_ERRORS:
                    raise
                # Out of descriptors all the same (upstream sockets count too): pause, as
                # trio.serve_listeners does, and say so once in a while, not ten times a second.
                if trio.current_time() >= next_complaint:
                    log.error("accept failed: %s; retrying every %g s", exc, _CAPACITY_PAUSE_S)
                    next_complaint = trio.current_time() + _COMPLAINT_INTERVAL_S
                await trio.sleep(_CAPACITY_PAUSE_S)
                continue
            connection = connections.admit(stream.socket)
            if connection is not None:
                nursery.start_soon(handler, stream, connection)


async def _handle(
    make_server: Callable[..., HTTPConnection],
    header_timeout_s: float,
    stream: trio.SocketStream,
    connection: Connection,
) -> None:
    """Serve one connection; whatever ends it, its socket is closed and it is forgotten."""
    try:
        with connection.cancel_scope:
            server = make_server(stream, connection=connection, header_timeout_s=header_timeout_s)
            await server.run()
    finally:
        connection.release()
        with trio.move_on_after(_SHUTDOWN_DEADLINE_S, shield=True):
            await stream.aclose()
