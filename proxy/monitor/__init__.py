"""``llm-proxy monitor``: the gateway's live feed of calls in a terminal, over the WebSocket.

One line per call (time, client, model, provider, status, tokens in/out, cost, latency), running
totals every few calls, and a line on each reconnect. Part of the command line, like
``proxy/cli.py``: only the CLI imports it. The frame-to-text part (``text``, ``call_line``,
``feed_view``) is pure; ``watch`` is the trio loop around it, with ``urls``, ``credentials`` and
``errors`` beside it; ``command`` runs it until Ctrl-C.

The names the CLI calls are re-exported here, so it can say ``monitor.run(...)``.
"""

from proxy.monitor.command import run
from proxy.monitor.credentials import credentials_from
from proxy.monitor.errors import MonitorError
from proxy.monitor.urls import check_url, url_from_config

__all__ = ["MonitorError", "check_url", "credentials_from", "run", "url_from_config"]
