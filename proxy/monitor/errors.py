"""How the monitor fails: the error that stops it, the one that pauses it, a server's refusal.

Refused credentials or a bad URL cannot get better by waiting (``MonitorError``, whose message is
for the user); a server that is down or busy can (``Unavailable``, retried after a pause). What a
server said when it refused is printed too, made terminal-safe.
"""

from __future__ import annotations

import json

from proxy.monitor.text import clip, printable


class MonitorError(Exception):
    """The monitor cannot go on (refused credentials, a bad URL); the message says why."""


class Unavailable(Exception):
    """The server cannot be reached right now: retried after a pause."""


def error_message(body: bytes | None) -> str:
    """The ``error.message`` of a JSON error body, else the body's first line."""
    if not body:
        return ""
    try:
        data = json.loads(body)
        return printable(data["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return clip(printable(body.decode(errors="replace").splitlines()[0]), 200)
