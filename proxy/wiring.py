"""Composition: every part :func:`proxy.service.run` builds, and each surface's share of them.

:class:`ServiceParts` is the composition root's own record (and what tests inspect through
``RunningService.gateway``); no handler ever receives it. :func:`app_deps` hands each surface
(``/v1``, ``/metrics``, each ``/api`` area) the few parts it uses.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from actors.admission import Admission
from actors.budget_keeper import BudgetKeeper
from actors.client_directory import ClientDirectory
from actors.fleet_bus import ChangeBus
from actors.fleet_feed import FleetFeed
from actors.fleet_presence import FleetPresence
from actors.provider import ProviderActor
from actors.redis_link import RedisLink
from actors.request_logger import RequestLogger
from actors.retention import Retention
from actors.runtime_settings import RuntimeSettings
from actors.session_store import Sessions
from proxy.config import Config
from proxy.images import ImageFetcher
from proxy.login_throttle import LoginThrottle, SignInThrottle
from proxy.passwords import Passwords
from proxy.pricing import Pricer
from proxy.routing import Router
from proxy.worker_place import WorkerPlace
from storage.reads import ReadPool
from storage.response_store import ResponseStore
from storage.writer import StorageWriter
from web.api import ApiDeps
from web.api.auth import AuthApi
from web.api.budgets import BudgetsApi
from web.api.clients import ClientsApi
from web.api.common import AuditLog
from web.api.live import LiveApi
from web.api.providers import ProvidersApi
from web.api.system import SystemApi
from web.api.usage import UsageApi
from web.app import AppDeps
from web.auth import Authenticator
from web.connections import Connections
from web.events import EventHub
from web.hangups import HangupWatcher
from web.in_flight import InFlight
from web.live_feeds import LiveFeeds
from web.log_buffer import LogBuffer
from web.metrics import Metrics
from web.observed import ObservedParts
from web.readiness import Readiness
from web.sibling_metrics import SiblingMetrics
from web.v1_deps import V1Deps


@dataclasses.dataclass(frozen=True, slots=True)
class ServiceParts:
    """Everything the running service is made of (built once, never reassigned)."""

    config: Config
    router: Router
    providers: Mapping[str, ProviderActor]
    settings: RuntimeSettings
    logger: RequestLogger
    writer: StorageWriter
    reads: ReadPool
    auth: Authenticator
    limiter: Admission  # FleetLimiter when redis is set, else RateLimiter
    directory: ClientDirectory
    sessions: Sessions
    passwords: Passwords
    retention: Retention
    responses: ResponseStore  # what /v1/responses stores when `store` is not false
    connections: Connections
    images: ImageFetcher
    events: EventHub
    metrics: Metrics
    started_at: float  # time.monotonic() at start
    started_unix: int  # time.time() at start
    instance: str  # this process's name in the fleet ([cluster] instance_name, or host:pid)
    redis: RedisLink | None  # the fleet's Redis; None: a single process, all state in memory
    readiness: Readiness = dataclasses.field(default_factory=Readiness)
    throttle: SignInThrottle = dataclasses.field(default_factory=LoginThrottle)
    log_buffer: LogBuffer = dataclasses.field(default_factory=LogBuffer)
    in_flight: InFlight = dataclasses.field(default_factory=InFlight)
    hangups: HangupWatcher = dataclasses.field(default_factory=HangupWatcher)
    live_feeds: LiveFeeds = dataclasses.field(default_factory=LiveFeeds)
    changes: ChangeBus | None = None  # tells the fleet's other processes what changed here
    fleet_feed: FleetFeed | None = None  # with Redis: the fleet's calls on this live feed
    presence: FleetPresence | None = None  # with Redis: heartbeats, the live instances
    worker: WorkerPlace | None = None  # a worker of [server] workers: its number and siblings
    sibling_metrics: SiblingMetrics | None = None  # a worker's /metrics of every worker
    budgets: BudgetKeeper | None = None  # spend budgets: admission, settlement, warnings
    pricer: Pricer | None = None  # the prices every call is billed at


def app_deps(parts: ServiceParts) -> AppDeps:
    """What the ASGI app is built from: each surface gets its own few parts."""
    config = parts.config
    observed = ObservedParts(
        started_at=parts.started_at,
        readiness=parts.readiness,
        in_flight=parts.in_flight,
        connections=parts.connections,
        writer=parts.writer,
        logger=parts.logger,
        limiter=parts.limiter,
        directory=parts.directory,
        sessions=parts.sessions,
        events=parts.events,
        retention=parts.retention,
        providers=parts.providers,
        images=parts.images,
        instance=parts.instance,
        redis=parts.redis,
        fleet_feed=parts.fleet_feed,
        presence=parts.presence,
        budgets=parts.budgets,
    )
    v1 = V1Deps(
        config=config,
        auth=parts.auth,
        limiter=parts.limiter,
        router=parts.router,
        providers=parts.providers,
        hangups=parts.hangups,
        logger=parts.logger,
        readiness=parts.readiness,
        started_unix=parts.started_unix,
        responses=parts.responses,
        budgets=parts.budgets,
        pricer=parts.pricer,
    )
    return AppDeps(
        server=config.server,
        started_at=parts.started_at,
        readiness=parts.readiness,
        in_flight=parts.in_flight,
        writer=parts.writer,
        v1=v1,
        metrics=parts.metrics,
        observed=observed,
        api=_api_deps(parts, observed) if config.dashboard.enabled else None,
        siblings=parts.sibling_metrics,
    )


def _api_deps(parts: ServiceParts, observed: ObservedParts) -> ApiDeps:
    audit = AuditLog(
        parts.writer, announce=parts.changes.publish if parts.changes is not None else None
    )
    return ApiDeps(
        sessions=parts.sessions,
        auth=AuthApi(
            reads=parts.reads,
            writer=parts.writer,
            sessions=parts.sessions,
            passwords=parts.passwords,
            throttle=parts.throttle,
            audit=audit,
        ),
        clients=ClientsApi(
            reads=parts.reads,
            writer=parts.writer,
            directory=parts.directory,
            audit=audit,
            default_requests_per_minute=parts.config.limits.default_client_requests_per_minute,
            budgets=parts.budgets,
        ),
        budgets=BudgetsApi(
            writer=parts.writer,
            keeper=parts.budgets,
            audit=audit,
            providers=tuple(parts.config.providers),
        )
        if parts.budgets is not None
        else None,
        live=LiveApi(
            caps=parts.config.dashboard,
            live_feeds=parts.live_feeds,
            readiness=parts.readiness,
            sessions=parts.sessions,
            logger=parts.logger,
            events=parts.events,
            router=parts.router,
            providers=parts.providers,
            started_at=parts.started_at,
            clients=parts.directory,
            in_flight=parts.in_flight,
            presence=parts.presence,
        ),
        providers=ProvidersApi(
            files=parts.config.providers,
            actors=parts.providers,
            router=parts.router,
            settings=parts.settings,
            reads=parts.reads,
            writer=parts.writer,
            audit=audit,
        ),
        system=SystemApi(
            config=parts.config,
            observed=observed,
            log_buffer=parts.log_buffer,
            reads=parts.reads,
            writer=parts.writer,
            audit=audit,
        ),
        usage=UsageApi(reads=parts.reads),
    )
