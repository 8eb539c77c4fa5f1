"""The ``llm-proxy`` command line (design §9)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

import trio

from proxy import __version__
from proxy.config import Config, ConfigError, load_config, render_config, with_overrides

LOG_FORMAT = "%(asctime)s level=%(levelname)s logger=%(name)s %(message)s"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llm-proxy", description="A self-hosted, OpenAI-compatible LLM gateway."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the gateway")
    serve.add_argument("--config", help="TOML config file (default: $LLM_PROXY_CONFIG)")
    serve.add_argument("--host", help="listen address (overrides server.host)")
    serve.add_argument("--port", type=int, help="listen port (overrides server.port)")
    serve.add_argument("--database", help="SQLite file (overrides server.database)")

    check = commands.add_parser(
        "check-config", help="validate the config and print it with secrets masked"
    )
    check.add_argument("--config", help="TOML config file (default: $LLM_PROXY_CONFIG)")

    commands.add_parser("version", help="print the version")
    return parser


def _load(args: argparse.Namespace) -> Config:
    config = load_config(args.config)
    if args.command == "serve":
        config = with_overrides(config, host=args.host, port=args.port, database=args.database)
    return config


def setup_logging(level: str) -> None:
    """One line per event on stderr, which journald and ``docker logs`` collect."""
    logging.basicConfig(level=level.upper(), format=LOG_FORMAT, stream=sys.stderr, force=True)
    # httpx logs every request URL at INFO; our own lines already say what matters.
    logging.getLogger("httpx").setLevel(logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status."""
    args = _parser().parse_args(argv)
    if args.command == "version":
        print(f"llm-proxy {__version__}")
        return 0
    try:
        config = _load(args)
    except ConfigError as exc:
        print(f"llm-proxy: {exc}", file=sys.stderr)
        return 2
    if args.command == "check-config":
        print(f"# {config.source}: OK")
        print(render_config(config), end="")
        return 0
    setup_logging(config.server.log_level)
    from proxy import service  # the server's imports are only worth paying for when serving

    try:
        trio.run(service.run, config)
    except KeyboardInterrupt:  # a second Ctrl-C while shutting down
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
