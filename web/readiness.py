"""Whether the gateway serves: started (``/readyz``) and draining (shutdown has begun).

One small object with one owner: :func:`proxy.service.run` marks it ready once every actor has
started, draining at the first stop signal, and not ready once the server has stopped. Handlers
only read it.
"""

from __future__ import annotations


class Readiness:
    """The gateway's serving state, set by the service and read by handlers."""

    __slots__ = ("_draining", "_ready")

    def __init__(self) -> None:
        self._ready = False
        self._draining = False

    @property
    def ready(self) -> bool:
        """Every actor has started and the server has not stopped."""
        return self._ready

    @property
    def draining(self) -> bool:
        """Shutdown has begun: new calls are refused, calls in flight finish."""
        return self._draining

    def mark_ready(self) -> None:
        """Every actor has started: calls may be served."""
        self._ready = True

    def start_draining(self) -> None:
        """Shutdown has begun (it never ends: a stopped gateway is not restarted)."""
        self._draining = True

    def mark_stopped(self) -> None:
        """The server has stopped: nothing is served any more."""
        self._ready = False
