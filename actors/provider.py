"""ProviderActor: one per enabled upstream, owning its HTTP client, concurrency and statistics.

Calls run in the caller's task against resources the actor owns (client, limiter). That keeps a
client disconnect structural: cancelling the request's scope cancels the upstream read right there,
with no relay between tasks, and saves two task switches per streamed chunk. The actor's task owns
the lifecycle: it opens the client before it reports started and closes it after the server stopped.

The actor is generic; the parts of a call live beside it: admission through the circuit breaker
and what each call's outcome tells it (:mod:`actors.provider_admission`), and the backend that
reaches the upstream, over HTTP (:mod:`actors.provider_http`, its streams pulled by
:mod:`actors.provider_http_stream`) or in-process (:mod:`actors.provider_mock`).

Deadlines: a non-streaming call must answer within ``timeout_s``. A stream must produce its first
chunk within ``timeout_s`` of the call and each next chunk within ``timeout_s`` of being asked for;
bytes that produce no chunk (keep-alive comments) extend neither deadline.

Secrets: the provider key joins a request only in the HTTP backend, and only for an origin the file
binds it to. Every error leaving a call is scrubbed of every configured secret first
(:mod:`proxy.secret_scrubber`): where a call ends (:meth:`CallGate.ended
<actors.provider_admission.CallGate.ended>`), in a stream, and in a model listing here.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractContextManager, asynccontextmanager, nullcontext

import trio

from actors.provider_admission import CallGate, JudgedStream, Outcome
from actors.provider_backend import Backend, CallTiming, ChunkStream
from actors.provider_http import HttpBackend
from actors.provider_mock import MockBackend
from actors.provider_reach import UNKNOWN, ReachSnapshot
from actors.stall_watch import StallWatch
from proxy.chat import chat_request
from proxy.client_request import ClientRequest
from proxy.config import ProviderConfig
from proxy.errors import GatewayError, UpstreamTimeout, UpstreamUnavailable
from proxy.images import ImageFetcher, ImageLease, inline_remote_images
from proxy.messages import MessagesRequest
from proxy.origins import KeyBinding, key_binding
from proxy.providers.base import Answer, WireAdapter
from proxy.providers.mock import MOCK_MODELS
from proxy.secret_scrubber import SecretScrubber

log = logging.getLogger("llm_proxy.provider")

MODELS_TTL_S = 600.0  # how long an upstream's model list is served from cache
MODELS_RETRY_S = 30.0  # how soon a failed listing is tried again
LOCAL_MODELS_REFRESH_S = 30.0  # polling period for lists whose names route (Ollama's)
PROBE_TIMEOUT_S = 10.0  # the reachability probe's deadline at most


@dataclasses.dataclass(frozen=True, slots=True)
class ProviderStatistics:
    """A snapshot for health and metrics."""

    name: str
    in_flight: int
    waiting: int
    calls: int
    errors: int
    max_concurrency: int
    breaker_state: str
    breaker_trips: int
    reachability: ReachSnapshot = UNKNOWN


_NO_LEASE: AbstractContextManager[None] = nullcontext()  # a call without images to fetch


class ProviderActor:
    """One upstream provider: ``complete()``, ``stream()`` and ``models()`` for the front end."""

    def __init__(
        self,
        config: ProviderConfig,
        adapter: WireAdapter | None,
        *,
        images: ImageFetcher | None = None,
        on_breaker_change: Callable[[str, str], None] | None = None,
        scrubber: SecretScrubber | None = None,
        probe_interval_s: float = 0.0,
    ) -> None:
        self.name = config.name
        self.config = config
        # Bound to the file's config: a later base_url override never widens it.
        self.key_binding: KeyBinding = key_binding(config)
        # Every upstream-derived error leaves this actor through it (see CallGate.ended).
        self.scrubber = scrubber or SecretScrubber([config.api_key] if config.api_key else [])
        self._adapter = adapter
        # Only upstreams that cannot fetch image URLs themselves get the gateway's fetcher.
        self._images = images if adapter is not None and adapter.needs_inline_images else None
        self._limiter = trio.CapacityLimiter(config.max_concurrency)
        # The deadline on each next chunk of this provider's streams (one task, not a scope each).
        self._stalls = StallWatch(config.timeout_s)
        self._gate = CallGate(config, self.scrubber, on_breaker_change)
        self._closed = trio.Event()
        self._backend: Backend | None = None
        self._nursery: trio.Nursery | None = None
        self._models: list[str] | None = None
        self._created: dict[str, int] = {}
        self._models_expire = 0.0
        self._listing_failed = False
        # Idle longer than this (no call, no probe): one probe of the model list (0 = never).
        self._probe_interval_s = probe_interval_s
        self._probing = True  # off while the dashboard has the provider switched off
        self._started_at = 0.0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Open the upstream client, report started, serve until :meth:`close`."""
        self._backend = self._new_backend()
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._stalls.run)
                if self._adapter is not None and self._adapter.routes_listed_models:
                    nursery.start_soon(self._keep_models_fresh)
                self._started_at = trio.current_time()
                if self._probe_interval_s > 0:
                    nursery.start_soon(self._probe_when_idle, self._probe_interval_s)
                task_status.started()
                await self._closed.wait()
                nursery.cancel_scope.cancel()
        finally:
            self._nursery = None
            backend, self._backend = self._backend, None
            if backend is not None:
                with trio.move_on_after(5, shield=True):
                    await backend.aclose()

    def _new_backend(self) -> Backend:
        if self._adapter is None:
            return MockBackend(self.config)
        return HttpBackend(self.config, self._adapter, self.key_binding, self._stalls)

    def reconfigure(
        self, *, base_url: str | None = None, max_concurrency: int | None = None
    ) -> None:
        """Apply a new base URL or concurrency limit now (None: keep the current one).

        New calls go to a new backend at once; calls already running finish on the old one,
        which is closed when the last of them ends. A smaller limit lets running calls finish
        and admits new ones only as slots free up.
        """
        config = self.config
        if base_url is not None and base_url != config.base_url:
            if self._adapter is None:
                raise ValueError(f"provider {self.name} answers in-process: it has no base URL")
            config = dataclasses.replace(config, base_url=base_url)
            # Another upstream may serve other models: ask again rather than serve stale ones.
            self._models_expire = 0.0
        if max_concurrency is not None and max_concurrency != config.max_concurrency:
            if max_concurrency < 1:
                raise ValueError(f"max_concurrency must be at least 1, got {max_concurrency}")
            config = dataclasses.replace(config, max_concurrency=max_concurrency)
            self._limiter.total_tokens = max_concurrency
        if config is self.config:
            return
        self.config = config
        old, nursery = self._backend, self._nursery
        if old is None or nursery is None:
            return  # not running: run() builds its backend from the new config
        # The HTTP pool is sized from the concurrency limit, so either change needs a new one.
        self._backend = self._new_backend()
        nursery.start_soon(self._close_when_idle, old)

    async def _close_when_idle(self, backend: Backend) -> None:
        """Close a replaced backend once the calls still using it are done (or at shutdown)."""
        try:
            await backend.wait_idle()
        finally:
            with trio.move_on_after(5, shield=True):
                await backend.aclose()

    @property
    def default_model(self) -> str | None:
        """A known chat model of this provider, for a test call the dashboard names none for
        (its choice is :meth:`RuntimeSettings.default_model
        <actors.runtime_settings.RuntimeSettings.default_model>`)."""
        # The adapter's short list holds chat models; an upstream's own list may start with
        # anything (embeddings, images), so it is only the last resort (Ollama has no list).
        fallback = self._adapter.fallback_models if self._adapter is not None else MOCK_MODELS
        if fallback:
            return fallback[0]
        known = self.known_models()
        return known[0] if known else None

    async def forget_response(self, response_id: str) -> None:
        """Have the upstream delete a response passed through to it earlier, within the
        provider's timeout; a GatewayError when it could not."""
        backend = self._ready_backend()
        backend.acquire()
        try:
            with trio.fail_after(self.config.timeout_s):
                await backend.forget_response(response_id)
        except trio.TooSlowError:
            raise UpstreamTimeout(
                f"Upstream {self.name} did not delete the response within "
                f"{self.config.timeout_s:g} s."
            ) from None
        finally:
            backend.release()

    async def count_message_tokens(self, request: MessagesRequest, model: str) -> bytes:
        """The upstream's count of a Messages request's input tokens (its JSON answer), within
        the provider's timeout; a GatewayError when it could not count them."""
        backend = self._ready_backend()
        backend.acquire()
        try:
            with trio.fail_after(self.config.timeout_s):
                return await backend.count_message_tokens(request, model)
        except trio.TooSlowError:
            raise UpstreamTimeout(
                f"Upstream {self.name} did not count the tokens within {self.config.timeout_s:g} s."
            ) from None
        finally:
            backend.release()

    def speaks(self, protocol: str) -> bool:
        """Whether this upstream takes requests of client ``protocol`` as they are (passed
        through); when not, a surface gives it the chat form of the request."""
        return self._adapter is not None and self._adapter.passthrough_for(protocol) is not None

    def close(self) -> None:
        """Stop: :meth:`run` closes the client and returns."""
        self._closed.set()

    @property
    def breaker_state(self) -> str:
        """The circuit breaker's state: ``closed``, ``open`` or ``half_open``."""
        return self._gate.breaker.state.value

    def statistics(self) -> ProviderStatistics:
        """Calls in flight and waiting for a slot, totals, errors, the breaker."""
        stats = self._limiter.statistics()
        breaker = self._gate.breaker.statistics()
        return ProviderStatistics(
            self.name,
            stats.borrowed_tokens,
            stats.tasks_waiting,
            self._gate.calls,
            self._gate.errors,
            int(self._limiter.total_tokens),
            breaker.state,
            breaker.trips,
            self._gate.reach.snapshot(),
        )

    def reachability(self) -> ReachSnapshot:
        """What the last call or probe said about reaching the upstream, and how long ago."""
        return self._gate.reach.snapshot()

    def set_probing(self, on: bool) -> None:
        """Probe the idle upstream, or not (a provider switched off is never probed)."""
        self._probing = on

    async def _probe_when_idle(self, interval: float) -> None:
        # Real calls keep the state fresh, and calls still running (a long stream) will say how
        # they ended: only an idle provider costs a request.
        reach = self._gate.reach
        while True:
            now = trio.current_time()
            idle = reach.idle_for(now, self._started_at)
            if idle < interval:
                await trio.sleep(interval - idle)
                continue
            if self._probing and not self._limiter.borrowed_tokens:
                await self.probe()
            await trio.sleep(interval)

    async def probe(self) -> ReachSnapshot:
        """Ask the upstream for its model list (one cheap, unbilled request, within a short
        deadline) and record whether it answered."""
        backend = self._ready_backend()
        # Never longer than the interval: one probe at a time, each telling something fresh.
        limit = min(PROBE_TIMEOUT_S, self.config.timeout_s, self._probe_interval_s or math.inf)
        reach = self._gate.reach
        was = reach.reachable if reach.at is not None else None
        backend.acquire()
        try:
            with trio.fail_after(limit):
                await backend.probe()
        except (GatewayError, trio.TooSlowError) as exc:
            if isinstance(exc, GatewayError):
                self.scrubber.scrub_error(exc)
            self._note_listing(exc)
        else:
            self._note_listing(None)
        finally:
            backend.release()
        if reach.reachable != was:
            # Said on a change only, not every interval.
            if reach.reachable:
                log.info("provider=%s reachable (model list %s)", self.name, reach.status)
            else:
                log.warning(
                    "provider=%s unreachable: %s (found by the idle probe of its model list)",
                    self.name,
                    reach.reason,
                )
        return reach.snapshot()

    def _note_listing(self, error: GatewayError | trio.TooSlowError | None) -> None:
        """What a request for the model list (a probe, or a refresh) said about reaching it."""
        reach, now = self._gate.reach, trio.current_time()
        if error is None:
            reach.answered(now, via="probe")
        elif isinstance(error, trio.TooSlowError):
            reach.failed(now, None, via="probe", reason="timeout")
        elif error.status >= 500:
            reach.failed(now, error, via="probe")
        else:
            reach.refused(now, error, via="probe")

    def _ready_backend(self) -> Backend:
        if self._backend is None:
            raise UpstreamUnavailable(f"Provider {self.name} is not running.")
        return self._backend

    async def _take_slot(self, deadline: float) -> None:
        """A concurrency slot, waited for until ``deadline`` (our capacity, not the upstream's)."""
        try:
            self._limiter.acquire_nowait()  # the common case, without a deadline's cancel scope
            return
        except trio.WouldBlock:
            pass
        with trio.CancelScope(deadline=deadline) as waiting:
            await self._limiter.acquire()
        if waiting.cancelled_caught:
            raise UpstreamTimeout(
                f"Provider {self.name} had no free slot within {self.config.timeout_s:g} s "
                f"({self.config.max_concurrency} calls in flight).",
                code="provider_busy",
            )

    @asynccontextmanager
    async def _slot(self, deadline: float) -> AsyncIterator[None]:
        await self._take_slot(deadline)
        try:
            yield
        finally:
            self._limiter.release()

    def _image_lease(
        self, request: ClientRequest, client: str
    ) -> AbstractContextManager[ImageLease | None]:
        """The lease on image memory of a call whose images this actor fetches, else none."""
        if self._images is None or not request.has_images:
            return _NO_LEASE
        return self._images.lease(client)

    async def _inline_images(
        self, request: ClientRequest, lease: ImageLease | None
    ) -> ClientRequest:
        # Only an upstream that cannot fetch images has a fetcher, and it gets chat requests.
        if self._images is None or lease is None:
            return request
        return await inline_remote_images(chat_request(request), self._images, lease)

    async def complete(
        self, request: ClientRequest, upstream_model: str, timing: CallTiming, *, client: str = ""
    ) -> Answer:
        """One non-streaming call, bounded by the provider's timeout; ``client`` shares images."""
        backend = self._ready_backend()
        with self._gate.admit(backend) as call, self._image_lease(request, client) as lease:
            # Handed over, not kept in this frame: the inlined images are freed as soon as the
            # backend has built the upstream body from them (their lease counts one copy each).
            outgoing = [await self._inline_images(request, lease)]
            deadline = trio.current_time() + self.config.timeout_s
            await self._take_slot(deadline)
            try:
                with trio.CancelScope(deadline=deadline) as waiting:
                    response = await backend.complete(outgoing.pop(), upstream_model, timing)
            except GatewayError as exc:
                call.judge(exc)
                raise
            finally:
                self._limiter.release()
            if waiting.cancelled_caught:
                call.outcome = Outcome.FAILURE
                raise UpstreamTimeout(
                    f"Upstream {self.name} did not answer within {self.config.timeout_s:g} s."
                )
            call.outcome = Outcome.SUCCESS
            return response

    @asynccontextmanager
    async def stream(
        self, request: ClientRequest, upstream_model: str, timing: CallTiming, *, client: str = ""
    ) -> AsyncIterator[ChunkStream]:
        """A streaming call; leaving the block (or being cancelled) ends the upstream call."""
        backend = self._ready_backend()
        with self._gate.admit(backend) as call, self._image_lease(request, client) as lease:
            # Handed over, not kept in this frame for the whole stream (see complete()).
            outgoing = [await self._inline_images(request, lease)]
            deadline = trio.current_time() + self.config.timeout_s
            async with self._slot(deadline):
                opened = False
                try:
                    async with backend.open_stream(
                        outgoing.pop(), upstream_model, timing, deadline
                    ) as chunks:
                        opened = True
                        if lease is not None:
                            # The upstream answered: it has the body, which the backend let go.
                            lease.release()
                        yield JudgedStream(chunks, call, self.scrubber)
                except GatewayError as exc:
                    # Once open, only the stream's own errors judge the upstream (the stream
                    # records them); an error of the caller's says nothing about it.
                    if not opened:
                        call.judge(exc)
                    raise

    def known_models(self) -> list[str]:
        """The last model list fetched, without waiting (empty before the first answer)."""
        return self._models or []

    def created_times(self) -> Mapping[str, int]:
        """When each model the upstream listed was created (Unix seconds), for those it says;
        kept through a failed listing, since a model's age does not change."""
        return self._created

    async def _keep_models_fresh(self) -> None:
        # Models that route by plain name (Ollama's) must be known before a call asks for them,
        # and a model pulled a minute ago should route now: poll the cheap local list.
        while True:
            await self.refresh_models()
            await trio.sleep(LOCAL_MODELS_REFRESH_S)

    async def models(self) -> list[str]:
        """The upstream's models, cached; the static list when it cannot be asked."""
        if self._models is not None and trio.current_time() < self._models_expire:
            return self._models
        return await self.refresh_models()

    async def refresh_models(self) -> list[str]:
        """Ask the upstream for its models now; on failure keep serving the static list."""
        backend = self._ready_backend()
        now = trio.current_time()
        backend.acquire()
        try:
            with trio.fail_after(min(self.config.timeout_s, 10.0)):
                models = await backend.list_models()
        except (GatewayError, trio.TooSlowError) as exc:
            if isinstance(exc, GatewayError):
                self.scrubber.scrub_error(exc)
            self._note_listing(exc)
            # Said once, not every poll: an enabled-by-default Ollama may simply not be running.
            level = logging.DEBUG if self._listing_failed else logging.WARNING
            log.log(
                level,
                "provider=%s listing models failed: %s (retried every %g s; set "
                "[providers.%s] enabled = false if it is not used)",
                self.name,
                exc or "timeout",
                MODELS_RETRY_S,
                self.name,
            )
            self._listing_failed = True
            fallback = self._adapter.fallback_models if self._adapter else MOCK_MODELS
            self._models, self._models_expire = list(fallback), now + MODELS_RETRY_S
            return self._models
        finally:
            backend.release()
        self._note_listing(None)
        if self._listing_failed:
            log.info("provider=%s listing models works again", self.name)
        self._listing_failed = False
        self._created = {m.id: m.created for m in models if m.created is not None}
        self._models = [m.id for m in models]
        self._models_expire = now + MODELS_TTL_S
        return self._models
