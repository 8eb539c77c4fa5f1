"""The trio actors: one task each, owning its state, reached through a small typed facade.

Every actor has one shape (:class:`Actor`), and one way to stop:

- ``__init__`` only stores its collaborators (and opens its bounded inbox, if it takes messages:
  the StorageWriter's jobs, the RequestLogger's records); no I/O, no task.
- ``async def run(self, *, task_status)`` opens its resources, calls ``task_status.started()``,
  serves until it is closed, then finishes what it accepted (an inbox is drained, pending writes
  flushed, shielded and bounded) and returns.
- ``close()`` is the only way to stop it: synchronous, idempotent, callable from any task, before
  or after ``run`` started (a closed actor's ``run`` returns once started). An actor with an inbox
  closes the inbox, so ``run`` drains what was queued; one without waits on a ``trio.Event`` and
  cancels its own background work. Nothing else (a cancel scope from outside, a field set by a
  caller) stops an actor.
- ``statistics()`` returns a frozen record for ``/metrics`` and ``/api/system/health``.

The resources an actor owns (a provider's backends, HTTP clients, fan-outs) are not actors: only
their owner closes them (``aclose()`` for async resources, as trio and httpx name it).
:func:`proxy.service.run` starts the actors in dependency order, each in its own nursery, and
closes them in reverse order.
"""

from __future__ import annotations

from typing import Protocol

import trio


class Actor(Protocol):
    """A long-lived part with its own task: started with ``run``, stopped with ``close``."""

    async def run(self, *, task_status: trio.TaskStatus[None] = ...) -> None:
        """Open resources, report started, serve until :meth:`close`, finish, return."""

    def close(self) -> None:
        """Stop: :meth:`run` finishes what it accepted and returns (idempotent)."""
