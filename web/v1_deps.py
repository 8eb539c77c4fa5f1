"""What the ``/v1`` surface uses, and nothing more: handed to its handlers by ``web/app.py``."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from actors.admission import Admission
from actors.budget_keeper import BudgetKeeper
from actors.provider import ProviderActor
from actors.request_logger import RequestLogger
from proxy.config import Config
from proxy.pricing import Pricer
from proxy.routing import Router
from storage.response_store import ResponseStore
from web.auth import Authenticator
from web.hangups import HangupWatcher
from web.readiness import Readiness


@dataclasses.dataclass(frozen=True, slots=True)
class V1Deps:
    """The collaborators of ``/v1/chat/completions``, ``/v1/responses`` and ``/v1/models``."""

    config: Config
    auth: Authenticator
    limiter: Admission
    router: Router
    providers: Mapping[str, ProviderActor]
    hangups: HangupWatcher
    logger: RequestLogger
    readiness: Readiness
    #: Wall-clock start (Unix seconds): the ``created`` of models whose upstream gives none.
    started_unix: int
    #: The responses ``/v1/responses`` keeps for ``previous_response_id`` and ``GET``.
    responses: ResponseStore
    #: Spend budgets: a call reserves its estimated cost at admission and settles its real one.
    budgets: BudgetKeeper | None = None
    #: Prices a call's estimate and its real cost (then handed to the logger priced).
    pricer: Pricer | None = None
