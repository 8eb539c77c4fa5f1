"""The running parts whose statistics ``/metrics`` and ``/api/system/health`` report."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from actors.admission import Admission
from actors.budget_keeper import BudgetKeeper
from actors.client_directory import ClientDirectory
from actors.fleet_feed import FleetFeed
from actors.fleet_presence import FleetPresence
from actors.provider import ProviderActor
from actors.redis_link import RedisLink
from actors.request_logger import RequestLogger
from actors.retention import Retention
from actors.session_store import Sessions
from proxy.images import ImageFetcher
from storage.writer import StorageWriter
from web.connections import Connections
from web.events import EventHub
from web.in_flight import InFlight
from web.readiness import Readiness


@dataclasses.dataclass(frozen=True, slots=True)
class ObservedParts:
    """Read for their ``statistics()`` (and the start time and readiness), never changed."""

    started_at: float  # time.monotonic() at start
    readiness: Readiness
    in_flight: InFlight
    connections: Connections
    writer: StorageWriter
    logger: RequestLogger
    limiter: Admission
    directory: ClientDirectory
    sessions: Sessions
    events: EventHub
    retention: Retention
    providers: Mapping[str, ProviderActor]
    images: ImageFetcher  # the fetcher of image URLs, for its statistics
    instance: str = ""  # this process's name in the fleet
    redis: RedisLink | None = None  # the fleet's Redis: up or down (the degraded state)
    fleet_feed: FleetFeed | None = None
    presence: FleetPresence | None = None  # the live instances
    budgets: BudgetKeeper | None = None  # spend budgets: refusals, global and provider spend
