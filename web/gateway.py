"""The running gateway's parts, as the front end sees them (built by ``proxy.service``)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping

from actors.client_directory import ClientDirectory
from actors.provider import ProviderActor
from actors.rate_limiter import RateLimiter
from actors.request_logger import RequestLogger
from actors.retention import Retention
from actors.session_store import SessionStore
from proxy.config import Config
from proxy.images import ImageFetcher
from proxy.login_throttle import LoginThrottle
from proxy.passwords import Passwords
from proxy.routing import Router
from storage.reads import ReadPool
from storage.writer import StorageWriter
from web.auth import Authenticator
from web.connections import Connections
from web.events import EventHub
from web.hangups import HangupWatcher
from web.in_flight import InFlight
from web.live_feeds import LiveFeeds
from web.log_buffer import LogBuffer
from web.metrics import Metrics


@dataclasses.dataclass(slots=True)
class Gateway:
    """Everything a request handler may touch; ``ready``/``draining`` drive ``/readyz``."""

    config: Config
    router: Router
    providers: Mapping[str, ProviderActor]
    logger: RequestLogger
    writer: StorageWriter
    reads: ReadPool
    auth: Authenticator
    limiter: RateLimiter
    directory: ClientDirectory
    sessions: SessionStore
    passwords: Passwords
    retention: Retention
    started_at: float
    connections: Connections
    images: ImageFetcher  # the fetcher of image URLs, for its statistics
    #: Wall-clock start (Unix seconds): the ``created`` of models whose upstream gives none.
    started_unix: int = dataclasses.field(default_factory=lambda: int(time.time()))
    throttle: LoginThrottle = dataclasses.field(default_factory=LoginThrottle)
    events: EventHub = dataclasses.field(default_factory=EventHub)
    log_buffer: LogBuffer = dataclasses.field(default_factory=LogBuffer)
    metrics: Metrics = dataclasses.field(default_factory=Metrics)
    in_flight: InFlight = dataclasses.field(default_factory=InFlight)
    hangups: HangupWatcher = dataclasses.field(default_factory=HangupWatcher)
    live_feeds: LiveFeeds = dataclasses.field(default_factory=LiveFeeds)
    ready: bool = False
    draining: bool = False
