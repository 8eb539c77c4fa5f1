"""``llm-proxy monitor``: the options of the terminal live feed, and running it until Ctrl-C.

The feed itself is :mod:`proxy.monitor`. A password is asked for, never taken from the command
line, and a token is better passed as ``$LLM_PROXY_TOKEN``, which other users cannot see.
"""

from __future__ import annotations

import argparse
import os

import trio

from proxy.commands.errors import fail
from proxy.config import Config

__all__ = ["add_parser", "run"]


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The ``monitor`` subcommand: where the feed is and who signs in."""
    monitor = commands.add_parser(
        "monitor",
        help="watch the calls live in the terminal",
        description=(
            "Print one line per call as the gateway logs it, with running totals, over the "
            "dashboard's WebSocket feed; reconnects when the server restarts; Ctrl-C stops."
        ),
    )
    monitor.add_argument(
        "--url",
        help="the gateway (http://HOST:PORT or https://…) or its feed (ws://HOST:PORT/api/ws); "
        "default: the config's server address, else ws://127.0.0.1:8080/api/ws",
    )
    monitor.add_argument("--config", help="TOML config file (default: $LLM_PROXY_CONFIG)")
    who = monitor.add_mutually_exclusive_group()
    who.add_argument(
        "--token",
        help="a dashboard session token (better: $LLM_PROXY_TOKEN, which other users cannot see)",
    )
    who.add_argument(
        "--user",
        metavar="USERNAME",
        help="sign in as USERNAME; the password is asked for, never taken from the command line",
    )


def run(args: argparse.Namespace, config: Config) -> int:
    """Watch the live feed until Ctrl-C."""
    import getpass

    from proxy import monitor

    url = args.url or monitor.url_from_config(config.server.host, config.server.port)
    try:
        url = monitor.check_url(url)  # an http(s):// address becomes the feed's ws(s):// URL
        credentials = monitor.credentials_from(
            url=url,
            token=args.token,
            user=args.user,
            environ=os.environ,
            ask_password=getpass.getpass,
        )
        trio.run(monitor.run, url, credentials)
    except monitor.MonitorError as exc:
        return fail(str(exc))
    except (KeyboardInterrupt, EOFError):  # Ctrl-C or Ctrl-D at the password prompt
        return 130
    return 0
