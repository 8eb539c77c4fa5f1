"""The ``monitor`` command: the feed printed to stdout until Ctrl-C or SIGTERM, then the totals.

Lines are written from a worker thread, so a paused pager never stalls the trio loop, and the
terminal's width is read again for every frame, so a resized window still gets lines that fit.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Sequence

import trio

from proxy.monitor.colour import use_colour
from proxy.monitor.credentials import Credentials
from proxy.monitor.errors import MonitorError
from proxy.monitor.feed_view import DEFAULT_WIDTH, FeedView
from proxy.monitor.watch import Emit, watch


def terminal_width() -> int:
    """The terminal's width now (or $COLUMNS, or a default when the output is not a terminal)."""
    import shutil

    return shutil.get_terminal_size((DEFAULT_WIDTH, 24)).columns


def stdout_emitter() -> Emit:
    """Write lines to stdout from a worker thread (a paused pager must not stall the loop)."""
    encoding = sys.stdout.encoding or "utf-8"
    out = trio.wrap_file(sys.stdout)

    async def emit(line: str) -> None:
        # A terminal that cannot show a character gets "?" rather than a crash.
        await out.write(line.encode(encoding, "replace").decode(encoding) + "\n")
        await out.flush()

    return emit


async def run(
    url: str,
    credentials: Credentials,
    *,
    emit: Emit | None = None,
    signals: Sequence[int] = (signal.SIGINT, signal.SIGTERM),
) -> None:
    """The ``monitor`` command: watch until Ctrl-C (or SIGTERM), then print the totals.

    Raises MonitorError when the monitor cannot go on.
    """
    # Colour only when the lines go to a terminal of ours (not a file, a pipe or a test's sink).
    colour = emit is None and use_colour(sys.stdout, os.environ)
    view = FeedView(terminal_width(), colour=colour)
    emit = emit or stdout_emitter()
    failure: MonitorError | None = None
    with trio.open_signal_receiver(*signals) as received:
        async with trio.open_nursery() as nursery:

            async def feed() -> None:
                nonlocal failure
                try:
                    await watch(url, credentials, emit, view, width=terminal_width)
                except MonitorError as exc:
                    failure = exc
                nursery.cancel_scope.cancel()

            async def stop_on_signal() -> None:
                async for _ in received:
                    nursery.cancel_scope.cancel()
                    return

            nursery.start_soon(feed)
            nursery.start_soon(stop_on_signal)
    if failure is not None:
        raise failure
    with trio.move_on_after(2):
        await emit(view.totals_line())
