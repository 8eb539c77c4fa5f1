"""The monitor's trio loop: read the feed, print its lines, reconnect with backoff when it drops.

The session token travels only in the ``Authorization`` header (the feed refuses one in the URL)
and is never printed. A refused session is renewed at once (a restarted server has forgotten it);
a lost connection or a busy server is retried after a pause that doubles up to a cap and starts
over once a connection works; a refusal that waiting cannot cure stops the monitor.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Final

import trio
from trio_websocket import ConnectionClosed, ConnectionRejected, HandshakeError, open_websocket_url

from proxy.monitor.call_line import Frame
from proxy.monitor.credentials import Credentials
from proxy.monitor.errors import MonitorError, Unavailable, error_message
from proxy.monitor.feed_view import FeedView
from proxy.monitor.text import printable
from proxy.monitor.urls import check_url, is_plaintext_remote, shown_url

BACKOFF_FIRST_S: Final = 0.5
BACKOFF_MAX_S: Final = 30.0
CONNECT_TIMEOUT_S: Final = 10.0
DISCONNECT_TIMEOUT_S: Final = 2.0

# The feed's close codes (``web/api/live.py``): the session ended; the password must change first.
SESSION_ENDED: Final = 4401
PASSWORD_CHANGE: Final = 4403

Emit = Callable[[str], Awaitable[None]]


def _decode(text: str | bytes) -> Frame | None:
    try:
        frame = json.loads(text)
    except ValueError:
        return None
    return frame if isinstance(frame, dict) else None


async def watch(
    url: str,
    credentials: Credentials,
    emit: Emit,
    view: FeedView,
    *,
    width: Callable[[], int] | None = None,
    backoff_first_s: float = BACKOFF_FIRST_S,
    backoff_max_s: float = BACKOFF_MAX_S,
    connect_timeout_s: float = CONNECT_TIMEOUT_S,
) -> None:
    """Print the feed at ``url`` until cancelled, reconnecting with backoff whenever the
    connection is lost; MonitorError when it cannot go on (credentials refused, bad URL)."""
    url = check_url(url)
    shown = shown_url(url)
    if is_plaintext_remote(url):
        await emit(
            f"-- warning: {shown} is not encrypted: the session crosses the network in clear;"
            " use wss:// (e.g. behind a TLS reverse proxy)"
        )
    await emit(f"-- watching {shown} (Ctrl-C to stop)")
    delay = backoff_first_s
    renew = False
    while True:
        renewed, renew = renew, False
        try:
            token = await credentials.token(renew=renewed)
            headers = [(b"authorization", f"Bearer {token}".encode())]
            async with open_websocket_url(
                url,
                extra_headers=headers,
                connect_timeout=connect_timeout_s,
                disconnect_timeout=DISCONNECT_TIMEOUT_S,
            ) as socket:
                while True:
                    frame = _decode(await socket.get_message())
                    if frame is None:
                        continue
                    if frame.get("type") == "hello":
                        delay = backoff_first_s  # a working connection resets the backoff
                    if width is not None:
                        view.width = width()
                    for line in view.on_frame(frame):
                        await emit(line)
        except ConnectionRejected as rejected:
            message = error_message(rejected.body)
            if rejected.status_code == 401 and not renewed:
                # Sessions live in the server's memory: a restarted server has forgotten it.
                renew = True
                reason = "the session was refused"
            elif rejected.status_code >= 500:
                reason = f"the server is unavailable (HTTP {rejected.status_code}: {message})"
            elif rejected.status_code == 429:
                # The session's feeds are all taken, often by this monitor's own dropped
                # connection that the server has not noticed yet: its place frees soon.
                reason = f"no place for the feed yet (HTTP 429: {message})"
            else:
                raise MonitorError(
                    f"the server refused the feed: HTTP {rejected.status_code}: {message}"
                ) from None
        except ConnectionClosed as closed:
            why = closed.reason
            code = why.code if why is not None else 1006
            text = printable(why.reason or "") if why is not None else ""
            if code == PASSWORD_CHANGE:
                raise MonitorError(f"the server ended the feed: {text}") from None
            renew = code == SESSION_ENDED
            reason = f"connection closed ({code}{': ' + text if text else ''})"
        except HandshakeError as exc:
            cause = exc.__cause__ or exc
            reason = f"cannot connect to {shown} ({type(cause).__name__}: {cause})"
        except Unavailable as exc:
            renew = renewed  # still to do, after the pause
            reason = str(exc)
        except (OSError, trio.BrokenResourceError) as exc:
            reason = f"connection lost ({type(exc).__name__}: {exc})"
        if renew and not renewed:
            # A refused session is renewed at once (a static token raises MonitorError there).
            await emit(f"-- {reason}")
            continue
        await emit(f"-- {reason}; reconnecting in {delay:g} s")
        await trio.sleep(delay)
        delay = min(delay * 2, backoff_max_s)
