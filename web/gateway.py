"""The running gateway's parts, as the front end sees them (built by ``proxy.service``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from actors.provider import ProviderActor
from actors.request_logger import RequestLogger
from proxy.config import Config
from proxy.routing import Router
from storage.reads import ReadPool
from storage.writer import StorageWriter
from web.auth import Authenticator


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
    started_at: float
    ready: bool = False
    draining: bool = False
