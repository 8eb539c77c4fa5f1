"""hypercorn (trio worker): a closed connection keeps its socket until ``keep_alive_timeout``.

Report for pgjones/hypercorn (not filed: this machine cannot reach the internet).

Versions: hypercorn 0.18.0, trio 0.35, Python 3.11, Linux.

Steps: serve any ASGI app with ``hypercorn.trio.serve`` and ``keep_alive_timeout = 5``; connect
and close at once without sending anything (a port scan, a health checker's TCP probe, a client
that gave up); look at the server's side of the connection (``ss -tan``).

Expected: the server notices the end of the stream and closes its socket at once.

Actual: the socket sits in CLOSE-WAIT for the whole ``keep_alive_timeout`` (hypercorn's default
is 5 s; servers behind load balancers often set 60-75 s). A burst of such connects uses up file
descriptors: with 400 of them, 500 bare connects made the server stop accepting for a minute.

Cause: ``TCPServer.run`` (``hypercorn/trio/tcp_server.py``) starts the idle timer
(``idle_task.restart(self._task_group, self._idle_timeout)``) in the connection's task group and
then awaits ``_read_data``. On EOF ``_read_data`` returns, but leaving ``async with
TaskGroup()`` waits for every task in it, the idle timer included, so ``_close`` in the
``finally`` only runs once ``_idle_timeout`` has slept ``keep_alive_timeout``. Nothing stops the
timer when reading ends.

Suggested fix: ``await self.idle_task.stop()`` at the end of ``_read_data`` (or cancel the task
group's scope once reading is over and no request is in progress).

Run: ``python tests/upstream/hypercorn_idle_timer_after_eof.py``; exit status 1 while the bug is
there.
"""

from __future__ import annotations

import sys
from functools import partial
from typing import Any

import hypercorn.config
import hypercorn.trio
import trio

KEEP_ALIVE_S = 5.0
CONNECTIONS = 10
WAIT_S = 2.0


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Any app will do: this one only handles the lifespan."""
    while scope["type"] == "lifespan":
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        else:
            await send({"type": "lifespan.shutdown.complete"})
            return


def close_wait_sockets(port: int) -> int:
    """Sockets on this machine in CLOSE-WAIT whose local address is 127.0.0.1:``port``."""
    local = f"0100007F:{port:04X}"  # /proc/net/tcp's notation
    with open("/proc/net/tcp") as lines:
        return sum(1 for line in lines if line.split()[1:4:2] == [local, "08"])


async def main() -> int:
    config = hypercorn.config.Config()
    config.bind = ["127.0.0.1:0"]
    config.keep_alive_timeout = KEEP_ALIVE_S
    config.graceful_timeout = 0.1
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(partial(hypercorn.trio.serve, app, config))
        port = int(binds[0].rsplit(":", 1)[1])
        for _ in range(CONNECTIONS):
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            await stream.aclose()
        with trio.move_on_after(WAIT_S):
            while close_wait_sockets(port):
                await trio.sleep(0.05)
        left = close_wait_sockets(port)
        nursery.cancel_scope.cancel()
    print(f"{left} of {CONNECTIONS} closed connections still in CLOSE-WAIT after {WAIT_S} s")
    print("BUG PRESENT" if left else "fixed")
    return 1 if left else 0


if __name__ == "__main__":
    sys.exit(trio.run(main))
