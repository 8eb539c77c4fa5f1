"""Where a worker of ``[server] workers`` stands among its siblings: its number, how many there
are, and the supervisor's private directory where each serves its own metrics."""

from __future__ import annotations

import dataclasses
import os


@dataclasses.dataclass(frozen=True, slots=True)
class WorkerPlace:
    """Worker ``number`` of ``count``, its metrics socket (and its siblings') in ``directory``."""

    number: int
    """1 … count, fixed for the slot: a restarted worker keeps its number (and its series)."""
    count: int
    directory: str
    """The supervisor's ``mkdtemp`` directory (mode 0700): only this user reaches the sockets."""

    def socket_path(self, number: int) -> str:
        """The unix socket where worker ``number`` serves its exposition."""
        return os.path.join(self.directory, f"metrics-{number}.sock")

    @property
    def own_socket(self) -> str:
        """This worker's own metrics socket."""
        return self.socket_path(self.number)

    @property
    def siblings(self) -> list[int]:
        """The other workers' numbers."""
        return [n for n in range(1, self.count + 1) if n != self.number]
