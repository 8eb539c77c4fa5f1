"""The composition root: start every actor and the HTTP server in one nursery, stop them in order.

The listening socket is bound first (a port in use is then the only thing said), then the storage
writer, request logger and providers start; each actor reports readiness through
``nursery.start``. Shutdown runs the other way (design §2): stop accepting, let in-flight calls
finish within the grace period, then close providers, the logger (which drains into the writer)
and finally the writer (whose last flush and checkpoint run shielded). A second signal cuts the
grace period short (:mod:`proxy.stop_signals`).
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from functools import partial

import httpx
import hypercorn.config
import trio
import trio.lowlevel

from actors import Actor
from actors.budget_keeper import BudgetKeeper
from actors.client_directory import ClientDirectory
from actors.fanout import Fanout
from actors.fleet_budgets import FleetBudgetLedger
from actors.fleet_bus import ChangeBus, Follower
from actors.fleet_feed import FleetFeed
from actors.fleet_limiter import FleetLimiter
from actors.fleet_login_throttle import FleetLoginThrottle
from actors.fleet_presence import FleetPresence, LiveFigures
from actors.fleet_sessions import FleetSessionStore
from actors.rate_limiter import RateLimiter
from actors.redis_link import RedisLink, default_instance_name
from actors.request_logger import RequestLogger
from actors.retention import Retention
from actors.runtime_settings import RuntimeSettings, credit_ledger
from actors.session_store import Sessions, SessionStore, UserState
from proxy import __version__
from proxy.builders import build_authenticator, build_pricer, build_providers
from proxy.config import Config
from proxy.images import ImageFetcher, ImagePolicy
from proxy.listener import hypercorn_config
from proxy.login_throttle import LoginThrottle, SignInThrottle
from proxy.passwords import Passwords
from proxy.private_files import make_gateway_files_private
from proxy.records import LiveCall
from proxy.routing import AliasTarget, Router
from proxy.sd_notify import Notifier
from proxy.stop_signals import StopSignals
from proxy.wiring import ServiceParts, app_deps
from proxy.worker_place import WorkerPlace
from storage.database import configured_database
from storage.reads import ReadPool
from storage.response_store import ResponseStore
from storage.users import list_users
from storage.writer import StorageWriter
from web.app import create_app
from web.connections import connections_for
from web.events import EventHub
from web.first_admin import ensure_first_admin
from web.http_server import serve
from web.in_flight import InFlight
from web.metrics import Metrics, own_exposition
from web.metrics_socket import MetricsSocket
from web.sibling_metrics import SiblingMetrics

log = logging.getLogger("llm_proxy.service")


@dataclasses.dataclass(frozen=True, slots=True)
class RunningService:
    """What :func:`run` reports once it listens: where, its parts (for tests and inspection;
    no handler sees them), and how to stop it."""

    base_url: str
    gateway: ServiceParts
    stop: Callable[[], None]
    stopped: trio.Event  # set once every actor has exited (records flushed, WAL checkpointed)


@asynccontextmanager
async def _running(actor: Actor) -> AsyncIterator[None]:
    """An actor started in its own nursery and closed (then awaited) when the block ends."""
    async with trio.open_nursery() as nursery:
        await nursery.start(actor.run)
        try:
            yield
        finally:
            actor.close()


async def _user_states(reads: ReadPool) -> dict[str, UserState]:
    users = await reads.run(list_users)
    return {
        user.username: UserState(user.role, user.must_change_password, user.password_hash)
        for user in users
    }


def _change_followers(
    directory: ClientDirectory, sessions: Sessions, settings: RuntimeSettings, reads: ReadPool
) -> dict[str, Follower]:
    """What the change bus re-reads when another process of the fleet changed each kind."""

    async def clients(name: str | None) -> None:
        await directory.refresh()

    async def users(name: str | None) -> None:
        await sessions.follow_users()

    return {
        "clients": clients,
        "users": users,
        "providers": partial(settings.reload_providers, reads),
        "models": partial(settings.reload_models, reads),
    }


async def run(
    config: Config,
    *,
    handle_signals: bool = True,
    passwords: Passwords | None = None,
    shared_port: bool = False,
    worker: WorkerPlace | None = None,
    task_status: trio.TaskStatus[RunningService] = trio.TASK_STATUS_IGNORED,
) -> int:
    """Run the gateway until SIGTERM/SIGINT (or ``RunningService.stop``), then shut down cleanly.

    Returns the exit status: 0, or 128 + N when a second signal N cut the shutdown short
    (:mod:`proxy.stop_signals`). A known reason not to start (the port is taken, the database
    cannot be used) raises :class:`StartupError` before anything listens. ``shared_port``: one
    of several workers on the same port (:mod:`proxy.workers`); ``worker``: which one, so that
    its ``/metrics`` answers for every worker (:mod:`web.sibling_metrics`).
    """
    hc = hypercorn_config(config, shared_port=shared_port)
    # First, so that a port in use is the only thing said and nothing else is touched.
    hc.bind_now()
    try:
        return await _run_bound(
            config,
            hc,
            handle_signals=handle_signals,
            passwords=passwords,
            worker=worker,
            task_status=task_status,
        )
    finally:
        hc.close_unused()


async def _run_bound(
    config: Config,
    hc: hypercorn.config.Config,
    *,
    handle_signals: bool,
    passwords: Passwords | None,
    worker: WorkerPlace | None = None,
    task_status: trio.TaskStatus[RunningService],
) -> int:
    """:func:`run` once the listening sockets are bound."""
    # The files the gateway keeps beside it (the first admin's password, backups) live by
    # server.database whichever backend stores the data.
    database = config.server.database
    store = configured_database(config)
    writer = StorageWriter(
        store,
        record_requests=config.logging.record_requests,
        outage_buffer_records=config.storage.outage_buffer_records,
    )
    reads = ReadPool(store)
    policy = ImagePolicy.from_config(config.images)
    # One client for every image the gateway fetches on behalf of Gemini and Ollama; redirects
    # are followed by the fetcher itself so that each hop is checked.
    images_client = httpx.AsyncClient(
        timeout=httpx.Timeout(policy.timeout_s),
        # More connections than fetch slots, so a fetch never waits in httpx's pool.
        limits=httpx.Limits(max_connections=policy.max_fetches + 16, max_keepalive_connections=8),
        follow_redirects=False,
        trust_env=False,
    )
    events = EventHub()
    images = ImageFetcher(images_client, policy)
    providers = build_providers(config, images, events)
    ollama = providers.get("ollama")
    router = Router(
        aliases={
            name: AliasTarget(alias.provider, alias.model, alias.fallbacks)
            for name, alias in config.models.items()
        },
        providers=config.providers.keys(),
        enabled=providers.keys(),
        local_models=ollama.known_models if ollama is not None else frozenset,
        fallbacks=config.fallbacks,
    )
    pricer = build_pricer(config)
    instance = config.cluster.instance_name or default_instance_name()
    redis = (
        RedisLink(config.cluster.redis_url, instance=instance, on_down=config.cluster.on_redis_down)
        if config.cluster.redis_url
        else None
    )
    settings = RuntimeSettings(config.providers, router=router, providers=providers, pricer=pricer)
    metrics = Metrics()
    # The live fan-out: this process's calls, and with Redis the other instances' relayed in.
    live_calls = Fanout[LiveCall](1024)
    fleet_feed = FleetFeed(redis, live_calls) if redis is not None else None
    in_flight = InFlight()
    presence = (
        FleetPresence(
            redis,
            started_ms=int(time.time() * 1000),
            version=__version__,
            in_flight=lambda: in_flight.count,
            live_figures=lambda: LiveFigures(*logger.recent_calls(), in_flight.count),
        )
        if redis is not None
        else None
    )
    logger = RequestLogger(
        writer,
        pricer,
        credit=credit_ledger(settings, writer, events.publish),
        observer=metrics.observe,  # /metrics counts every logged call
        instance=instance,
        feed=live_calls,
        outlet=fleet_feed.offer if fleet_feed is not None else None,
    )
    directory = ClientDirectory(
        reads,
        writer,
        default_requests_per_minute=config.limits.default_client_requests_per_minute,
        # In a fleet the change bus says when to reload (and reloads in full periodically).
        poll_s=None if redis is not None else 0.5,
    )
    local_limiter = RateLimiter(global_requests_per_minute=config.limits.global_requests_per_minute)
    # With Redis: exact across the fleet; the in-memory limiter decides only while Redis is down.
    limiter: RateLimiter | FleetLimiter = (
        FleetLimiter(
            redis,
            global_requests_per_minute=config.limits.global_requests_per_minute,
            local=local_limiter,
        )
        if redis is not None
        else local_limiter
    )
    retention = Retention(
        writer,
        config.logging.retention_days,
        response_retention_days=config.responses.retention_days,
        vacuum=store.dialect == "sqlite",
    )
    # With Redis the spend is counted fleet-wide; this process's tallies decide while it is down.
    budget_ledger = FleetBudgetLedger(redis) if redis is not None else None
    budgets = BudgetKeeper(reads, writer, events.publish, fleet=budget_ledger)
    session_ttl_s = config.dashboard.session_ttl_hours * 3600
    # With the fleet's Redis: sessions and sign-in failures shared by every process.
    sessions: SessionStore | FleetSessionStore = (
        FleetSessionStore(redis, session_ttl_s, partial(_user_states, reads))
        if redis is not None
        else SessionStore(session_ttl_s, partial(_user_states, reads))
    )
    throttle: SignInThrottle = FleetLoginThrottle(redis) if redis is not None else LoginThrottle()
    changes = (
        ChangeBus(redis, _change_followers(directory, sessions, settings, reads))
        if redis is not None
        else None
    )
    # Its constructor hashes once (the dummy for unknown users): off the trio thread.
    hasher = passwords if passwords is not None else await trio.to_thread.run_sync(Passwords)
    parts = ServiceParts(
        config=config,
        router=router,
        providers=providers,
        settings=settings,
        logger=logger,
        writer=writer,
        reads=reads,
        auth=build_authenticator(config, providers, directory),
        limiter=limiter,
        directory=directory,
        sessions=sessions,
        passwords=hasher,
        retention=retention,
        responses=ResponseStore(writer, reads, retention_days=config.responses.retention_days),
        events=events,
        metrics=metrics,
        started_at=time.monotonic(),
        started_unix=int(time.time()),
        instance=instance,
        redis=redis,
        throttle=throttle,
        fleet_feed=fleet_feed,
        presence=presence,
        in_flight=in_flight,
        connections=connections_for(config.server.max_connections),
        images=images,
        changes=changes,
        worker=worker,
        sibling_metrics=SiblingMetrics(worker) if worker is not None else None,
        budgets=budgets,
        pricer=pricer,
    )
    readiness = parts.readiness
    shutdown = trio.Event()
    stopped = trio.Event()
    # Around the serving phase; cancelled by a second signal to cut the grace period short.
    hurry = trio.CancelScope()

    def stop() -> None:
        readiness.start_draining()
        shutdown.set()

    def stop_now() -> None:
        stop()
        hurry.cancel()

    signals = StopSignals(stop, stop_now) if handle_signals else None

    # The dashboard's recent-logs page reads the same lines stderr gets.
    logging.getLogger().addHandler(parts.log_buffer)
    try:
        async with AsyncExitStack() as actors:
            if signals is not None:
                # Entered first, left last: a signal while the actors drain is handled too.
                await actors.enter_async_context(signals.handling())
            await actors.enter_async_context(images_client)
            await actors.enter_async_context(_running(writer))
            # Once the writer has found the database usable (not someone's other file): its
            # -wal and -shm exist by now, and SQLite gave them the database's mode.
            await trio.to_thread.run_sync(make_gateway_files_private, database)
            if redis is not None:
                await actors.enter_async_context(_running(redis))
            if fleet_feed is not None:
                await actors.enter_async_context(_running(fleet_feed))
            if presence is not None:
                await actors.enter_async_context(_running(presence))
            if config.dashboard.enabled:
                await ensure_first_admin(writer, hasher, database, now_ms=int(time.time() * 1000))
                await actors.enter_async_context(_running(sessions))
            await actors.enter_async_context(_running(logger))
            await actors.enter_async_context(_running(directory))
            await actors.enter_async_context(_running(limiter))
            if budget_ledger is not None:
                await actors.enter_async_context(_running(budget_ledger))
            await actors.enter_async_context(_running(budgets))
            await actors.enter_async_context(_running(retention))
            for actor in providers.values():
                await actors.enter_async_context(_running(actor))
            await actors.enter_async_context(_running(parts.hangups))
            # The dashboard's stored overrides, before the first call is served.
            await settings.load(reads)
            if changes is not None:
                # After every part it reloads has started; closed before them.
                await actors.enter_async_context(_running(changes))
            # Everything built so far (modules, the price table, config) lives as long as the
            # process: out of the collector's sight, full collections stop rescanning it (~30 ms
            # each, stalling every request in flight).
            gc.collect()
            gc.freeze()
            # A call allocates a few hundred containers; at the default threshold (700) a young
            # collection ran every other call. Garbage cycles are rare here, so collect less often.
            gc.set_threshold(10_000, 10, 10)
            readiness.mark_ready()
            log.info(
                "started: instance=%s database=%s providers=%s",
                instance,
                store.describe(),
                ",".join(providers) or "none",
            )
            with hurry:
                async with trio.open_nursery() as server:
                    binds: list[str] = await server.start(_serve, parts, hc, shutdown)
                    log.info("listening on %s", " ".join(binds))
                    if handle_signals:
                        # systemd (Type=notify): READY now, watchdog pings, STOPPING at shutdown.
                        notifier = Notifier.from_environ()
                        ready = f"listening on {' '.join(binds)}"
                        server.start_soon(partial(notifier.serve, shutdown, ready_status=ready))
                    task_status.started(RunningService(binds[0], parts, stop, stopped))
            readiness.mark_stopped()
            log.info("server stopped; closing actors")
    finally:
        reads.close()
        logging.getLogger().removeHandler(parts.log_buffer)
        stopped.set()
    # The number lets an operator (and a test) see how a fleet of workers shared the calls.
    log.info("calls logged since start: %d", logger.statistics().records)
    log.info("shutdown complete")
    return signals.exit_status if signals is not None else 0


async def _serve(
    parts: ServiceParts,
    hc: hypercorn.config.Config,
    shutdown: trio.Event,
    *,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until ``shutdown``, then until the requests being answered are done (or the grace
    period ends); idle keep-alive connections are not waited for."""
    deps = app_deps(parts)
    async with trio.open_nursery() as nursery:
        if parts.worker is not None:
            # Before READY: a sibling's scrape finds this worker's metrics once it serves.
            own = MetricsSocket(
                parts.worker.own_socket, partial(own_exposition, deps.metrics, deps.observed)
            )
            await nursery.start(own.run)
        binds = await nursery.start(
            partial(
                serve,
                create_app(deps),
                hc,
                parts.connections,
                header_timeout_s=parts.config.server.header_timeout_s,
                shutdown_trigger=shutdown.wait,
            )
        )
        task_status.started(binds)
        await shutdown.wait()
        with trio.move_on_after(hc.graceful_timeout):
            # Let hypercorn close its listeners first, so nothing new starts meanwhile.
            await trio.lowlevel.checkpoint()
            await parts.in_flight.wait_idle()
        if parts.in_flight.requests:
            log.warning("grace period over: cutting %d requests", parts.in_flight.requests)
        nursery.cancel_scope.cancel()
