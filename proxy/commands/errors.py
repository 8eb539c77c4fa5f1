"""How a subcommand fails: one line on stderr and exit status 2, as for a usage error."""

from __future__ import annotations

import sys

__all__ = ["UsageError", "fail"]


class UsageError(Exception):
    """A bad command-line value; the message is printed as is."""


def fail(message: str) -> int:
    """Print a one-line error and return the exit status for it."""
    print(f"llm-proxy: {' '.join(message.split())}", file=sys.stderr)
    return 2
