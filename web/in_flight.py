"""Counting the HTTP requests being answered, and of them the model calls.

At SIGTERM the service waits until no request is being answered (or the grace period ends, and
then says how many it cut), never for idle keep-alive connections: an SDK client that made one
call and kept its socket must not hold a shutdown for the whole grace period.

"In flight" as shown (the Overview's tile, ``/metrics``' ``llm_proxy_requests_in_flight``, the
health page, a fleet instance's heartbeat) is the model calls alone: counting every request made
an idle gateway show the dashboard's own API calls and the scrape asking.
"""

from __future__ import annotations

from typing import Final

import trio

# The /v1 routes that call a model (POST only); the model list, stored responses and
# count_tokens are cheap local answers.
MODEL_CALL_PATHS = frozenset(
    path + slash
    for path in ("/v1/chat/completions", "/v1/responses", "/v1/embeddings", "/v1/messages")
    for slash in ("", "/")
)


def is_model_call(method: str, path: str) -> bool:
    """Whether an HTTP request asks a model (and counts as in flight)."""
    return method == "POST" and path in MODEL_CALL_PATHS


class InFlight:
    """Requests in progress (what shutdown waits for) and the model calls among them."""

    def __init__(self) -> None:
        self._requests = 0
        self._model_calls = 0
        self._idle = trio.Event()
        self._idle.set()
        # Plain objects with __enter__/__exit__: this runs for every request on the hot path.
        self.model_call: Final = _Counted(self, model_call=True)
        self.other_request: Final = _Counted(self, model_call=False)

    @property
    def count(self) -> int:
        """Model calls being answered now."""
        return self._model_calls

    @property
    def requests(self) -> int:
        """HTTP requests of any kind being answered now."""
        return self._requests

    def request(self, *, model_call: bool) -> _Counted:
        """A context manager counting one request (and one model call if it is one)."""
        return self.model_call if model_call else self.other_request

    async def wait_idle(self) -> None:
        """Return once no request is in progress."""
        await self._idle.wait()

    def _enter(self, model_call: bool) -> None:
        self._requests += 1
        self._model_calls += model_call
        if self._idle.is_set():
            self._idle = trio.Event()

    def _exit(self, model_call: bool) -> None:
        self._requests -= 1
        self._model_calls -= model_call
        if self._requests == 0:
            self._idle.set()


class _Counted:
    """``with`` one request of a kind: counted while the block runs (reentrant, shared)."""

    __slots__ = ("_counter", "_model_call")

    def __init__(self, counter: InFlight, *, model_call: bool) -> None:
        self._counter = counter
        self._model_call = model_call

    def __enter__(self) -> None:
        self._counter._enter(self._model_call)

    def __exit__(self, *exc_info: object) -> None:
        self._counter._exit(self._model_call)
