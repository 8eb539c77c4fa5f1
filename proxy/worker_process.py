"""One worker of ``[server] workers``: a whole gateway service on the port it shares.

The supervisor (:mod:`proxy.workers`) starts ``python -m proxy.worker_process`` and writes its
order on the child's stdin: the config (with the port the supervisor reserved, so ``--port 0``
means the same port for every worker), the worker's number, the supervisor's pid, and the
private directory where the workers serve each other their metrics. The config goes
through a pipe, never the command line or the environment, because it holds the provider keys.
Everything else is the single-process service: its own signals, its own notify socket (the
supervisor's private one in ``$NOTIFY_SOCKET``), its own exit status.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import dataclasses
import io
import os
import pickle
import signal
import sys
import types
from typing import Any, Final

from proxy.config import Config
from proxy.worker_place import WorkerPlace

PR_SET_PDEATHSIG: Final = 1


@dataclasses.dataclass(frozen=True, slots=True)
class WorkerOrder:
    """What a worker is told on its stdin."""

    config: Config
    number: int
    """1 … N, fixed for the slot: a restarted worker keeps its number."""
    supervisor_pid: int
    metrics_dir: str | None = None
    """The supervisor's private directory where each worker serves its metrics to the others
    (None: a worker alone, whose ``/metrics`` is its own)."""
    workers: int = 1
    """How many workers share the port (``[server] workers``)."""

    def place(self) -> WorkerPlace | None:
        """Where this worker stands among its siblings, for its ``/metrics``."""
        if self.metrics_dir is None:
            return None
        return WorkerPlace(self.number, self.workers, self.metrics_dir)


def _mapping_proxy(items: dict[Any, Any]) -> types.MappingProxyType[Any, Any]:
    """Rebuilds a read-only mapping of the config (``pickle`` cannot take one as is)."""
    return types.MappingProxyType(items)


class _OrderPickler(pickle.Pickler):
    """A pickler that takes the config's read-only mappings as the dicts they show."""

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, types.MappingProxyType):
            return _mapping_proxy, (dict(obj),)
        return NotImplemented


def encode_order(order: WorkerOrder) -> bytes:
    """The order as bytes for the child's stdin."""
    buffer = io.BytesIO()
    _OrderPickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(order)
    return buffer.getvalue()


def decode_order(data: bytes) -> WorkerOrder:
    """The order the supervisor wrote (only ever our own parent's bytes)."""
    order = pickle.loads(data)
    if not isinstance(order, WorkerOrder):
        raise TypeError(f"not a worker order: {type(order).__name__}")
    return order


def worker_config(config: Config, number: int, port: int) -> Config:
    """The config of worker ``number``: the reserved port, and its own instance name.

    A configured ``instance_name`` becomes ``name/<n>``; without one every worker keeps the
    default ``<hostname>:<pid>``, which is already its own.
    """
    cluster = config.cluster
    if cluster.instance_name:
        cluster = dataclasses.replace(cluster, instance_name=f"{cluster.instance_name}/{number}")
    server = dataclasses.replace(config.server, port=port)
    return dataclasses.replace(config, server=server, cluster=cluster)


def die_with_supervisor(supervisor_pid: int) -> None:
    """Get SIGTERM when the supervisor dies (even SIGKILLed), and stop now if it already has.

    SIGTERM rather than SIGKILL: a worker left alone then shuts down gracefully, its accepted
    records stored, instead of serving on without anyone to restart or stop it.
    """
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    # The supervisor may have died before the prctl: then we were adopted by another process.
    if os.getppid() != supervisor_pid:
        sys.exit(1)


def main() -> int:
    """Read the order, then run the service until it stops; the exit status."""
    from proxy.serve import raise_open_files_limit, run_service, setup_logging

    order = decode_order(sys.stdin.buffer.read())
    die_with_supervisor(order.supervisor_pid)
    config = order.config
    setup_logging(config.server.log_level, config.logging.format, worker=str(order.number))
    raise_open_files_limit()
    return run_service(config, shared_port=True, worker=order.place())


if __name__ == "__main__":
    # Through the module's own name: the order was pickled as proxy.worker_process.WorkerOrder,
    # a different class from this __main__ copy's.
    from proxy import worker_process

    sys.exit(worker_process.main())
