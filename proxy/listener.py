"""The listening socket's settings: hypercorn's config from ours, bound before anything else
starts (a port in use is then the only thing said), with a send deadline on accepted connections
and, for the workers of ``[server] workers``, SO_REUSEPORT on one shared port."""

from __future__ import annotations

import logging
import socket
from typing import Any

import hypercorn.config

from proxy.config import Config
from proxy.errors import StartupError

__all__ = ["ListenerConfig", "hypercorn_config"]


class ListenerConfig(hypercorn.config.Config):
    """hypercorn's settings, with a send deadline on every accepted connection.

    hypercorn writes to a client inside a shielded scope, so a peer that stopped reading (full
    kernel buffers) holds that write, and with it a graceful shutdown, until TCP gives up — which
    can take many minutes. TCP_USER_TIMEOUT on the listening socket (accepted sockets inherit it)
    makes the kernel drop such a connection after ``stalled_client_timeout_s``.
    """

    stalled_client_timeout_s: float = 20.0
    _bound: Any = None

    def bind_now(self) -> None:
        """Bind the listening sockets now, so that a port in use fails the start at once."""
        try:
            self._bound = self._tuned_sockets()
        except OSError as exc:  # socket.gaierror too: a host name that does not resolve
            raise StartupError(f"cannot listen on {' '.join(self.bind)}: {exc}") from exc

    def bound_port(self) -> int:
        """The port :meth:`bind_now` bound (the one the kernel chose for port 0)."""
        if self._bound is None:
            raise RuntimeError("nothing is bound")
        sockets = (*self._bound.secure_sockets, *self._bound.insecure_sockets)
        return int(sockets[0].getsockname()[1])

    def close_unused(self) -> None:
        """Close the sockets :meth:`bind_now` bound if hypercorn never took them."""
        sockets, self._bound = self._bound, None
        if sockets is not None:
            for sock in (*sockets.secure_sockets, *sockets.insecure_sockets):
                sock.close()

    def create_sockets(self) -> Any:
        if self._bound is not None:
            sockets, self._bound = self._bound, None
            return sockets
        return self._tuned_sockets()

    def _tuned_sockets(self) -> Any:
        sockets = super().create_sockets()
        timeout_ms = int(self.stalled_client_timeout_s * 1000)
        if hasattr(socket, "TCP_USER_TIMEOUT"):  # Linux only
            for sock in (*sockets.secure_sockets, *sockets.insecure_sockets):
                if sock.family in (socket.AF_INET, socket.AF_INET6):
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, timeout_ms)
        return sockets


def hypercorn_config(config: Config, *, shared_port: bool = False) -> ListenerConfig:
    """Hypercorn settings from ours: bind, grace period, no access log (we log every call).

    ``shared_port``: the listening socket gets SO_REUSEPORT before it is bound, so that the
    workers of ``[server] workers`` each listen on the same port and the kernel spreads the
    connections among them (hypercorn sets it when told of more than one worker).
    """
    hc = ListenerConfig()
    if shared_port:
        hc.workers = max(2, config.server.workers)
    hc.stalled_client_timeout_s = config.server.stalled_client_timeout_s
    host = config.server.host
    # An IPv6 address in brackets, so that log lines and errors read "[::1]:8080".
    host = f"[{host}]" if ":" in host and not host.startswith("[") else host
    hc.bind = [f"{host}:{config.server.port}"]
    hc.graceful_timeout = config.server.graceful_timeout_s
    hc.accesslog = None
    # hypercorn's own lines (bind, errors) go through our logging, in our format.
    hc.errorlog = logging.getLogger("hypercorn.error")
    hc.keep_alive_timeout = config.server.keep_alive_timeout_s
    hc.include_server_header = False
    # hypercorn's default of 100 drops connections when a burst of clients connects at once
    # (their SYN is retried a second later); the kernel caps this at net.core.somaxconn.
    hc.backlog = 2048
    return hc
