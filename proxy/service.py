"""The composition root: start every actor and the HTTP server in one nursery, stop them in order.

Start order is storage writer, request logger, providers, then the listener; each actor reports
readiness through ``nursery.start``. Shutdown runs the other way (design §2): stop accepting, let
in-flight calls finish within the grace period, then close providers, the logger (which drains into
the writer) and finally the writer (whose last flush and checkpoint run shielded).
"""

from __future__ import annotations

import dataclasses
import logging
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any, cast

import hypercorn.config
import hypercorn.trio
import trio

from actors.provider import ProviderActor
from actors.request_logger import RequestLogger
from proxy.config import KEYED_PROVIDERS, Config
from proxy.pricing import PriceOverride, Pricer
from proxy.providers.registry import UnsupportedProvider, adapter_for
from proxy.routing import AliasTarget, Router
from storage.reads import ReadPool
from storage.writer import StorageWriter
from web.app import create_app
from web.asgi import ASGIApp
from web.auth import Authenticator
from web.gateway import Gateway

log = logging.getLogger("llm_proxy.service")


@dataclasses.dataclass(frozen=True, slots=True)
class RunningService:
    """What :func:`run` reports once it listens: where, the gateway, and how to stop it."""

    base_url: str
    gateway: Gateway
    stop: Callable[[], None]


def build_pricer(config: Config) -> Pricer:
    """The price table with the config's per-alias overrides."""
    overrides = {
        name: PriceOverride(
            alias.input_per_mtok, alias.output_per_mtok, alias.cached_input_per_mtok
        )
        for name, alias in config.models.items()
        if alias.input_per_mtok is not None or alias.output_per_mtok is not None
    }
    return Pricer(overrides)


def build_providers(config: Config) -> dict[str, ProviderActor]:
    """One actor per enabled provider this build can speak to."""
    actors: dict[str, ProviderActor] = {}
    for provider in config.enabled_providers():
        try:
            adapter = adapter_for(provider)
        except UnsupportedProvider as exc:
            log.warning("provider=%s skipped: %s", provider.name, exc)
            continue
        actors[provider.name] = ProviderActor(provider, adapter)
    if "mock" in actors and not any(config.providers[name].api_key for name in KEYED_PROVIDERS):
        log.info(
            "no upstream API key is configured: the mock provider is on (model 'mock' answers "
            "with an echo); set OPENAI_API_KEY or another provider key to use a real upstream"
        )
    return actors


def build_authenticator(config: Config, providers: dict[str, ProviderActor]) -> Authenticator:
    """Static keys from the config; anonymous calls only if allowed, or in demo mode."""
    allow_anonymous = config.auth.allow_anonymous
    # Demo mode: no upstream key and no API key configured, so only the free in-process mock can
    # answer. Letting a first `curl` through without a key costs nothing and risks nothing.
    if not config.auth.tokens and set(providers) == {"mock"} and not allow_anonymous:
        allow_anonymous = True
        log.warning(
            "demo mode: only the mock provider is enabled and no API key is configured, so calls "
            "without a key are accepted; configure a provider key or [auth] tokens to end it"
        )
    return Authenticator(config.auth.tokens, allow_anonymous=allow_anonymous)


def hypercorn_config(config: Config) -> hypercorn.config.Config:
    """Hypercorn settings from ours: bind, grace period, no access log (we log every call)."""
    hc = hypercorn.config.Config()
    hc.bind = [f"{config.server.host}:{config.server.port}"]
    hc.graceful_timeout = config.server.graceful_timeout_s
    hc.accesslog = None
    # hypercorn's own lines (bind, errors) go through our logging, in our format.
    hc.errorlog = logging.getLogger("hypercorn.error")
    hc.keep_alive_timeout = 75
    hc.include_server_header = False
    return hc


@asynccontextmanager
async def _running(
    start: Callable[..., Awaitable[Any]], close: Callable[[], None]
) -> AsyncIterator[None]:
    """An actor started in its own nursery and closed (then awaited) when the block ends."""
    async with trio.open_nursery() as nursery:
        await nursery.start(start)
        try:
            yield
        finally:
            close()


async def _stop_on_signal(stop: Callable[[], None]) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            log.info("received %s: shutting down", signal.Signals(signum).name)
            stop()
            return


async def run(
    config: Config,
    *,
    handle_signals: bool = True,
    task_status: trio.TaskStatus[RunningService] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the gateway until SIGTERM/SIGINT (or ``RunningService.stop``), then shut down cleanly."""
    database = config.server.database
    writer = StorageWriter(database)
    reads = ReadPool(database)
    logger = RequestLogger(writer, build_pricer(config))
    providers = build_providers(config)
    router = Router(
        aliases={
            name: AliasTarget(alias.provider, alias.model, alias.fallbacks)
            for name, alias in config.models.items()
        },
        providers=config.providers.keys(),
        enabled=providers.keys(),
    )
    gateway = Gateway(
        config=config,
        router=router,
        providers=providers,
        logger=logger,
        writer=writer,
        reads=reads,
        auth=build_authenticator(config, providers),
        started_at=time.monotonic(),
    )
    shutdown = trio.Event()

    def stop() -> None:
        gateway.draining = True
        shutdown.set()

    try:
        async with AsyncExitStack() as actors:
            await actors.enter_async_context(_running(writer.run, writer.close))
            await actors.enter_async_context(_running(logger.run, logger.close))
            for actor in providers.values():
                await actors.enter_async_context(_running(actor.run, actor.close))
            gateway.ready = True
            log.info("started: database=%s providers=%s", database, ",".join(providers) or "none")
            async with trio.open_nursery() as server:
                if handle_signals:
                    server.start_soon(_stop_on_signal, stop)
                app = create_app(gateway)
                binds: list[str] = await server.start(
                    _serve, app, hypercorn_config(config), shutdown, server.cancel_scope
                )
                log.info("listening on %s", " ".join(binds))
                task_status.started(RunningService(binds[0], gateway, stop))
            gateway.ready = False
            log.info("server stopped; closing actors")
    finally:
        reads.close()
    log.info("shutdown complete")


async def _serve(
    app: ASGIApp,
    hc: hypercorn.config.Config,
    shutdown: trio.Event,
    server_scope: trio.CancelScope,
    *,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    # hypercorn returns once in-flight calls finished or its grace period ran out; the signal
    # watcher is then all that is left in the server nursery.
    await hypercorn.trio.serve(
        cast(Any, app), hc, shutdown_trigger=shutdown.wait, task_status=task_status
    )
    server_scope.cancel()
