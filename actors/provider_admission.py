"""Admission of one provider's calls: its circuit breaker asked before a call, told how it ended.

Each provider has a circuit breaker (:mod:`proxy.breaker`). What it counts:

- failure: a 5xx-class error from the upstream (502 garbage or credentials it refuses, 503, 504),
  a timeout, a connection error, a stream cut or stalled mid-way;
- success: a non-streaming answer parsed, or a stream read to its clean end. Reaching the first
  chunk is not enough, or an upstream that always breaks mid-stream would never open the breaker;
- neither: the client's own 4xx, a 429 (the upstream is healthy, only busy), a cancelled call (the
  client left), a failure before the upstream was asked (an image fetch, no free slot in time).

Every error leaving a call passes through here (:meth:`CallGate.ended`, or :class:`JudgedStream`
for one inside a stream) and is scrubbed of every configured secret first
(:mod:`proxy.secret_scrubber`): its text may quote the upstream.
"""

from __future__ import annotations

import enum
import logging
import math
from collections.abc import Callable

import trio

from actors.provider_backend import Backend, ChunkStream
from actors.provider_reach import Reachability
from proxy.breaker import BreakerState, CircuitBreaker
from proxy.config import ProviderConfig
from proxy.errors import GatewayError, UpstreamUnavailable
from proxy.providers.base import StreamItem
from proxy.secret_scrubber import SecretScrubber

log = logging.getLogger("llm_proxy.provider")


class Outcome(enum.Enum):
    """What one call says about the upstream's health."""

    SUCCESS = "success"
    FAILURE = "failure"
    NEUTRAL = "neutral"


class Call:
    """One admitted call: whether it is the breaker's probe, and what it found out."""

    __slots__ = ("error", "outcome", "probe")

    def __init__(self, probe: bool) -> None:
        self.probe = probe
        self.outcome = Outcome.NEUTRAL
        self.error: GatewayError | None = None  # the upstream's, kept for its reachability

    def judge(self, error: GatewayError) -> None:
        """Set the outcome from an error the upstream caused: 5xx class fails, 4xx says nothing."""
        self.outcome = Outcome.FAILURE if error.status >= 500 else Outcome.NEUTRAL
        self.error = error


class Admission:
    """The span of one admitted call (a class, not a generator: it runs on every call)."""

    __slots__ = ("backend", "call", "gate")

    def __init__(self, gate: CallGate, call: Call, backend: Backend) -> None:
        self.gate = gate
        self.call = call
        self.backend = backend

    def __enter__(self) -> Call:
        self.backend.acquire()
        return self.call

    def __exit__(self, kind: object, error: BaseException | None, tb: object) -> None:
        self.backend.release()
        self.gate.ended(self.call, error)


class JudgedStream(ChunkStream):
    """Passes chunks through, telling the call how the stream ended for the breaker."""

    def __init__(self, chunks: ChunkStream, call: Call, scrubber: SecretScrubber) -> None:
        self._chunks = chunks
        self._call = call
        self._scrubber = scrubber

    async def __anext__(self) -> StreamItem:
        try:
            return await self._chunks.__anext__()
        except StopAsyncIteration:
            self._call.outcome = Outcome.SUCCESS
            raise
        except GatewayError as exc:
            self._call.judge(exc)
            self._scrubber.scrub_error(exc)  # an in-stream error event is upstream text
            raise


class CallGate:
    """One provider's circuit breaker and call counts: admits calls, records how each ended."""

    def __init__(
        self,
        config: ProviderConfig,
        scrubber: SecretScrubber,
        on_breaker_change: Callable[[str, str], None] | None = None,
    ) -> None:
        self._name = config.name
        self._failures = config.breaker_failures
        self._cooldown_s = config.breaker_cooldown_s
        self._scrubber = scrubber
        self.breaker = CircuitBreaker(
            failures=config.breaker_failures,
            cooldown_s=config.breaker_cooldown_s,
            on_change=self._breaker_changed,
        )
        self._on_breaker_change = on_breaker_change
        self.reach = Reachability()
        self.calls = 0
        self.errors = 0

    def _breaker_changed(self, old: BreakerState, new: BreakerState) -> None:
        if new is BreakerState.OPEN:
            why = (
                "the probe call failed"
                if old is BreakerState.HALF_OPEN
                else f"{self._failures} consecutive failures"
            )
            log.warning(
                "provider=%s circuit breaker open (%s); calls refused for %g s",
                self._name,
                why,
                self._cooldown_s,
            )
        elif new is BreakerState.HALF_OPEN:
            log.info(
                "provider=%s circuit breaker half-open: one probe call goes through", self._name
            )
        else:
            log.info("provider=%s circuit breaker closed: the upstream answers again", self._name)
        if self._on_breaker_change is not None:
            # A subscriber's bug must not fail the call that happened to change the state.
            try:
                self._on_breaker_change(self._name, new.value)
            except Exception:
                log.exception("provider=%s breaker change subscriber failed", self._name)

    def admit(self, backend: Backend) -> Admission:
        """Ask the breaker, count the call, and tell the breaker its outcome at the end."""
        now = trio.current_time()
        if not self.breaker.allow(now):
            retry_after = max(1, math.ceil(self.breaker.retry_after_s(now)))
            raise UpstreamUnavailable(
                f"Provider {self._name} is failing: circuit breaker open after repeated upstream "
                f"failures; retry in {retry_after} s.",
                code="circuit_open",
                headers={"retry-after": str(retry_after)},
            )
        self.calls += 1
        # Only the probe gets through a half-open breaker, so this call is it.
        return Admission(self, Call(probe=self.breaker.state is BreakerState.HALF_OPEN), backend)

    def ended(self, call: Call, error: BaseException | None) -> None:
        """Count and scrub the error a call ended with, and tell the breaker what it found."""
        if isinstance(error, GatewayError):
            # Where every call's error leaves the actor: its text may quote the upstream.
            self._scrubber.scrub_error(error)
            if error.status >= 500:
                self.errors += 1
        if call.outcome is Outcome.SUCCESS:
            now = trio.current_time()
            self.breaker.record_success(now)
            reach = self.reach
            if reach.call_ok:
                reach.answered_again(now)
            else:
                reach.answered(now)
        elif call.outcome is Outcome.FAILURE:
            now = trio.current_time()
            self.breaker.record_failure(now)
            self.reach.failed(now, call.error or error)
        else:
            if call.probe:
                self.breaker.record_neutral()
            answer = call.error
            if answer is not None and answer.upstream_status is not None:
                # A 4xx the upstream gave (400, 429): it answers, whatever it thought of the call.
                self.reach.refused(trio.current_time(), answer)
