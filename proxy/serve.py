"""The ``serve`` command's process: logging to stderr, the open-files limit, and the service run
to its end, with a failed start said in one line instead of a traceback.

With ``[server] workers`` above 1 the process is the supervisor of that many worker processes
(:mod:`proxy.workers`), each of which runs the service here through :func:`run_service`.
"""

from __future__ import annotations

import logging
import resource
from collections.abc import Iterator
from functools import partial

import trio

from proxy.config import Config
from proxy.errors import StartupError
from proxy.log_format import LogFormat, stderr_handler
from proxy.worker_place import WorkerPlace


def serve(config: Config) -> int:
    """Run the gateway until it is stopped; returns the process's exit status."""
    setup_logging(config.server.log_level, config.logging.format)
    if config.server.workers > 1:
        from proxy.workers import supervise

        return supervise(config)
    raise_open_files_limit()
    return run_service(config)


def setup_logging(level: str, fmt: LogFormat = "text", *, worker: str | None = None) -> None:
    """One line per event on stderr, which journald and ``docker logs`` collect.

    ``fmt`` is ``[logging] format``: ``key=value`` text or one JSON object per line; either way
    a line logged during a ``/v1`` call carries its request id, and a worker's its number.
    """
    handler = stderr_handler(fmt, worker=worker)
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    # httpx logs every request URL at INFO; our own lines already say what matters.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # hpack logs every HTTP/2 header it decodes at DEBUG, API keys included: never that.
    logging.getLogger("hpack").setLevel(logging.INFO)


def raise_open_files_limit() -> None:
    """Lift the soft limit on open files to the hard one, as Go and nginx do.

    Every call holds two descriptors (client and upstream connection), and the usual soft limit
    of 1,024 (systemd's default too) would refuse connections at about 500 streams in flight.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        except (ValueError, OSError) as exc:
            logging.getLogger("llm_proxy").warning("could not raise the open files limit: %s", exc)


def run_service(
    config: Config, *, shared_port: bool = False, worker: WorkerPlace | None = None
) -> int:
    """Run the gateway; a known start-up failure is one log line and exit status 1.

    ``shared_port``: a worker of several, whose listening socket shares the port with the
    others' (SO_REUSEPORT); ``worker``: which of them (its ``/metrics`` answers for all).

    The service runs in nested nurseries, so whatever ends it arrives wrapped in exception
    groups: this is the one place they are unwrapped. Anything but a :class:`StartupError` (or
    Ctrl-C) is a bug and keeps its traceback.
    """
    from proxy import service  # the server's imports are only worth paying for when serving

    log = logging.getLogger("llm_proxy")
    try:
        return trio.run(partial(service.run, config, shared_port=shared_port, worker=worker))
    except* StartupError as group:
        for failure in leaves(group):
            log.error("cannot start: %s", failure)
        status = 1
    except* KeyboardInterrupt:
        # Ctrl-C while the service does not handle signals itself: during start-up, mostly.
        log.warning("interrupted (SIGINT)")
        status = 130
    return status


def leaves(group: BaseExceptionGroup[BaseException]) -> Iterator[BaseException]:
    """The exceptions of a group and of the groups within it."""
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            yield from leaves(exc)
        else:
            yield exc
