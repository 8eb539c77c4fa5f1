"""hypercorn (trio worker): an app that cancels its send on ``http.disconnect`` breaks keep-alive.

Report for pgjones/hypercorn (not filed: this machine cannot reach the internet).

Versions: hypercorn 0.18.0, h11 0.16, trio 0.35, Python 3.11, Linux. The asyncio worker was not
tried.

Steps: serve, with ``hypercorn.trio.serve``, an ASGI app shaped like quart-trio's HTTP handling
(``quart_trio/asgi.py``, ``TrioASGIHTTPConnection``): one task answers, another reads
``receive()`` and cancels both when ``http.disconnect`` arrives. Then

1. send ``GET /`` on a keep-alive connection, read the answer, and leave the connection idle
   past ``keep_alive_timeout`` (0.5 s here);
2. on a new connection, send ``POST /`` with ``Content-Length: 8`` but no body yet; once the
   answer has arrived (the app does not read bodies), send the 8 bytes and a second request,
   ``GET /``, behind them.

Expected: 1. the server closes the idle connection after ``keep_alive_timeout``; 2. the server
either answers the second request or closes the connection.

Actual: 1. the connection stays open until the client closes it, however long that is;
2. neither: the second request is never answered and the connection stays open until the
client gives up and closes it.

Cause: at the end of an answer ``HTTPStream._send_closed`` → ``H11Protocol._maybe_recycle``
runs inside the app's ``send()`` call, so in the app's task. It first queues
``http.disconnect`` for the app (``_close_stream``), then changes the connection's state:
``send(Updated(idle=True))`` (``TCPServer.protocol_send`` → ``idle_task.restart``, which awaits
``nursery.start``) when the request was complete, or ``send(Closed())`` (``TCPServer._close`` →
``send_eof``, ``aclose``) when its body had not arrived. Both await unshielded, and the app, woken
by the disconnect it was just handed, cancels the task they run in: the idle timer is never
restarted, or the socket is never shut. In case 2 the reader task then gets the late body while
``H11Protocol.stream`` is None; ``_handle_events`` breaks out of its loop at the first ``Data``
event, leaving the next request unparsed in h11's buffer, so nothing more happens.

Suggested fix: run those state changes shielded (``with trio.CancelScope(shield=True)`` around
``idle_task.restart``/``stop`` and ``_close`` in ``TCPServer.protocol_send``), or hand them to the
connection's own task instead of running them in the app's.

Run: ``python tests/upstream/hypercorn_cancelled_send.py``; exit status 1 while the bug is there.
"""

from __future__ import annotations

import sys
from functools import partial
from typing import Any

import hypercorn.config
import hypercorn.trio
import trio

KEEP_ALIVE_S = 0.5
WAIT_S = 3.0


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answer 200 to everything, quart-trio style: stop at ``http.disconnect``."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def read_until_disconnect(nursery: trio.Nursery) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        nursery.cancel_scope.cancel()

    async def answer(nursery: trio.Nursery) -> None:
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]}
        )
        await send({"type": "http.response.body", "body": b"ok"})
        nursery.cancel_scope.cancel()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(read_until_disconnect, nursery)
        nursery.start_soon(answer, nursery)


async def read_answer(stream: trio.SocketStream, buffer: bytearray) -> str:
    """'answered', or 'closed' when the server closes first (a timeout propagates)."""
    while b"ok" not in buffer:
        data = await stream.receive_some(65536)
        if not data:
            return "closed"
        buffer += data
    del buffer[: buffer.index(b"ok") + 2]
    return "answered"


async def closed_within(stream: trio.SocketStream, seconds: float) -> bool:
    with trio.move_on_after(seconds):
        try:
            while await stream.receive_some(65536):
                pass
        except trio.BrokenResourceError:
            pass
        return True
    return False


async def idle_connection_is_closed(port: int) -> bool:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
    with trio.fail_after(WAIT_S):
        await read_answer(stream, bytearray())
    closed = await closed_within(stream, KEEP_ALIVE_S + WAIT_S)
    await stream.aclose()
    return closed


async def late_body_then_next_request(port: int) -> str:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    buffer = bytearray()
    await stream.send_all(b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 8\r\n\r\n")
    with trio.fail_after(WAIT_S):
        await read_answer(stream, buffer)
    await trio.sleep(0.05)  # the body comes a little after the answer
    try:
        await stream.send_all(b"12345678" + b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        with trio.fail_after(WAIT_S):
            outcome = await read_answer(stream, buffer)
    except trio.TooSlowError:
        outcome = "neither answered nor closed"
    except trio.BrokenResourceError:
        outcome = "closed"
    await stream.aclose()
    return outcome


async def main() -> int:
    config = hypercorn.config.Config()
    config.bind = ["127.0.0.1:0"]
    config.keep_alive_timeout = KEEP_ALIVE_S
    config.graceful_timeout = 0.1
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(partial(hypercorn.trio.serve, app, config))
        port = int(binds[0].rsplit(":", 1)[1])
        idle_closed = await idle_connection_is_closed(port)
        late_body = await late_body_then_next_request(port)
        nursery.cancel_scope.cancel()
    print(f"1. idle keep-alive connection closed after {KEEP_ALIVE_S} s: {idle_closed}")
    print(f"2. request after a late body: {late_body}")
    buggy = not idle_closed or late_body == "neither answered nor closed"
    print("BUG PRESENT" if buggy else "fixed")
    return 1 if buggy else 0


if __name__ == "__main__":
    sys.exit(trio.run(main))
