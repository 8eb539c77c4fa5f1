"""Telling running gateways that the CLI changed the database (when they share a Redis).

The CLI writes the database directly; gateways of a fleet learn of other processes' changes
from the change bus (``actors/fleet_bus.py``), so a command that changed clients, keys or users
announces it there too, with a short-lived client under a deadline. The change is stored either
way: when Redis does not answer, the command still succeeds and says when the gateways will see
it (their periodic full reload).
"""

from __future__ import annotations

import socket
import sys
from typing import Final

from proxy.config import Config

__all__ = ["announce_change"]

DEADLINE_S: Final = 3.0


def announce_change(config: Config, kind: str, name: str | None) -> None:
    """Announce a change of ``kind`` (``name``) to the gateways sharing ``config``'s Redis (if
    one is configured); a Redis that does not answer is said on stderr, never a failure."""
    url = config.cluster.redis_url
    if not url:
        return  # a single gateway polls the database itself
    import trio  # only a command that changed something in a fleet pays for these

    try:
        trio.run(_publish, url, kind, name)
    except Exception as exc:  # Redis down, refused, a timeout: the change is stored regardless
        from actors.fleet_bus import FULL_RELOAD_S

        print(
            f"note: could not tell running gateways through redis ({_describe(exc)}); they pick "
            f"the change up within their periodic reload ({FULL_RELOAD_S:g} s)",
            file=sys.stderr,
        )


async def _publish(url: str, kind: str, name: str | None) -> None:
    import coredis
    import coredis.retry
    import trio

    from actors.fleet_bus import CHANNEL, encode_change

    client: coredis.Redis[str] = coredis.Redis.from_url(
        url,
        decode_responses=True,
        connect_timeout=DEADLINE_S,
        stream_timeout=DEADLINE_S,
        retry_policy=coredis.retry.NoRetryPolicy(),
    )
    with trio.fail_after(DEADLINE_S):
        async with client:
            # The CLI is no gateway: no instance skips this announcement.
            await client.publish(CHANNEL, encode_change(f"cli@{socket.gethostname()}", kind, name))


def _describe(exc: BaseException) -> str:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    if type(exc).__name__ == "TooSlowError":
        return "timed out"
    # coredis' messages name the host and port, never the URL's password.
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
