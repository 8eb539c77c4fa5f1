"""One ``/v1`` call of any client protocol: read, authenticate, limit, route, call, answer, log
(design §3).

A :class:`V1Call` follows a request from its first byte to its log record, so every exit —
success, an error before or after the first byte, a client that went away — logs exactly once.
What differs between protocols (chat completions, the Responses API) is a subclass: how the body
is decoded, how one route is called and its answer written, and how an error is told to a client
whose answer has already begun.
"""

from __future__ import annotations

import abc
import logging
import random
import secrets
import time
from functools import partial
from time import perf_counter
from typing import ClassVar, Generic, TypeVar

import msgspec
import trio

from actors.budget_tally import Hold
from actors.provider import ProviderActor
from actors.provider_backend import CallTiming, ChunkStream
from actors.request_logger import priced_record
from proxy.chat import Usage
from proxy.client_request import ClientRequest
from proxy.errors import (
    GatewayError,
    InternalError,
    RateLimited,
    UpstreamTimeout,
    UpstreamUnavailable,
    shutting_down,
)
from proxy.log_format import REQUEST_ID
from proxy.providers.base import StreamItem
from proxy.rate_limit import TokenReservation
from proxy.records import Endpoint, RequestRecord, Status
from proxy.routing import Route
from proxy.token_estimate import answer_tokens_asked, estimate_prompt_tokens, tokens_to_reserve
from web.asgi import (
    JSON_TYPE,
    ClientGone,
    Headers,
    Receive,
    Scope,
    Send,
    read_body,
    send_body,
    send_error,
)
from web.auth import Caller, request_key
from web.limits import rate_limit_headers, rate_limited
from web.v1_deps import V1Deps

log = logging.getLogger("llm_proxy.v1")

_encode = msgspec.json.Encoder().encode
CLIENT_CLOSED = 499  # nginx's status for "client closed the request": never sent, only logged
RECORD_WAIT_S = 30.0


_ids = random.Random(secrets.randbits(128))

RequestT = TypeVar("RequestT", bound=ClientRequest)


def new_request_id() -> str:
    """A unique id for one call, returned as ``x-request-id`` and stored with its record.

    96 random bits from a generator seeded once from the OS: unique without a system call per
    request, and an id is no secret (it names a call in logs, it grants nothing)."""
    return f"req_{_ids.getrandbits(96):024x}"


class V1Call(abc.ABC, Generic[RequestT]):
    """The state of one call, from which its headers and its record are made."""

    #: The client API the call came through, as the request log names it.
    ENDPOINT: ClassVar[Endpoint]

    def __init__(self, deps: V1Deps, scope: Scope, receive: Receive, send: Send) -> None:
        self.deps = deps
        self.scope = scope
        self.receive = receive
        self.send = send
        self.request_id = new_request_id()
        self.started = perf_counter()
        self.ts_ms = int(time.time() * 1000)
        self.timing = CallTiming()
        self.client_id: str | None = None
        self.request: RequestT | None = None
        self.route: Route | None = None
        self.body: bytes = b""
        self.usage: Usage | None = None
        self.ttft_s: float | None = None
        self.status: Status = "ok"
        self.http_status = 200
        self.error: GatewayError | None = None
        self.response_started = False
        self.response_text: str | None = None
        self.client_gone = False
        self._done = False
        self.caller: Caller | None = None
        self.reservation: TokenReservation | None = None
        self.rate_headers: Headers = []
        self.failed_attempts: list[dict[str, object]] = []
        self.budget_hold: Hold | None = None

    # -- entry point -------------------------------------------------------------------------

    async def handle(self) -> None:
        """Answer the call and log it, whatever happens; every line logged meanwhile (here, in
        the provider actor, in worker threads) carries the request id."""
        token = REQUEST_ID.set(self.request_id)
        try:
            await self._handle()
        finally:
            REQUEST_ID.reset(token)

    async def _handle(self) -> None:
        try:
            await self._serve()
        except ClientGone:
            self._cancelled()
        except GatewayError as exc:
            await self._fail(exc)
        except Exception:
            log.exception("unexpected error")
            await self._fail(
                InternalError(f"The gateway hit an internal error (request id {self.request_id}).")
            )
        except BaseException:
            # Cancelled from outside: the grace period of a shutdown ran out. The answer was
            # cut by us, not abandoned by the client, so it is an error the client is told of.
            if not self._done:
                await self._cut_at_shutdown()
            raise
        finally:
            await self._log()

    async def _serve(self) -> None:
        deps = self.deps
        if deps.readiness.draining:
            raise shutting_down()
        # The body is read before anything is answered: answering while the client is still
        # sending races hypercorn's own error answer for an incomplete body (bad for both).
        server = deps.config.server
        self.body = await read_body(
            self.scope, self.receive, server.max_body_bytes, server.body_timeout_s
        )
        caller = deps.auth.authenticate(request_key(self.scope))
        self.client_id = caller.client_id
        # Decoded before the limits are asked: what the call may cost in tokens is reserved
        # at admission, and that needs its max_tokens.
        self.request = request = self._decode(self.body)
        tokens = self._tokens_to_reserve(request, caller)
        # A denial never waits; fleet-wide limits cost one batched round trip to Redis.
        decision = await deps.limiter.reserve(caller.bucket, caller.limits, tokens)
        self.rate_headers = rate_limit_headers(decision)
        if not decision.allowed:
            raise rate_limited(decision, caller.bucket, tokens)
        self.caller = caller
        self.reservation = decision.reservation
        chain = deps.router.resolve_chain(request.model)
        self.route = chain[0]
        if deps.budgets is not None:
            # After the rate limit: a call refused there reserves nothing here.
            # With no budget set anywhere the estimate is skipped: it walks the request's parts.
            estimate = self._estimated_cost(chain[0]) if deps.budgets.enforcing else 0.0
            self.budget_hold = await deps.budgets.admit(caller.bucket, estimate)
        # A client that hangs up cancels the call, so an abandoned request stops costing
        # upstream tokens at once.
        with (
            trio.CancelScope() as scope,
            deps.hangups.watch(self.receive, partial(self._hung_up, scope), at_once=request.stream),
        ):
            try:
                await self._call_chain(request, chain)
            except GatewayError as exc:
                await self._fail(exc)
        if self.client_gone and not self._done:
            self._cancelled()

    async def _call_chain(self, request: RequestT, chain: list[Route]) -> None:
        """Call the route, then its fallbacks while failures happen before the first byte."""
        last = len(chain) - 1
        for index, route in enumerate(chain):
            self.route = route
            actor = self.deps.providers[route.provider]
            try:
                if self.budget_hold is not None and self.deps.budgets is not None:
                    # A provider past its monthly budget refuses with a 429: the next route tries.
                    await self.deps.budgets.admit_provider(self.budget_hold, route.provider)
                await self._call_route(actor, request, route)
                return
            except GatewayError as exc:
                if self.response_started or index == last or not _worth_a_fallback(exc):
                    raise
                self.failed_attempts.append(
                    {
                        "provider": route.provider,
                        "model": route.upstream_model,
                        "status": exc.status,
                        "error": exc.message,
                    }
                )
                following = chain[index + 1]
                log.info(
                    "%s/%s failed (%d %s); falling back to %s/%s",
                    route.provider,
                    route.upstream_model,
                    exc.status,
                    exc.code or exc.error_type,
                    following.provider,
                    following.upstream_model,
                )

    # -- what each protocol does its own way ---------------------------------------------------

    @abc.abstractmethod
    def _decode(self, body: bytes) -> RequestT:
        """The request in the body; an InvalidRequest naming what is wrong with it."""

    @abc.abstractmethod
    async def _call_route(self, actor: ProviderActor, request: RequestT, route: Route) -> None:
        """Call one route and answer the client (before the first byte, a GatewayError lets the
        next route try)."""

    @abc.abstractmethod
    async def _send_error_after_start(self, error: GatewayError) -> None:
        """Tell a client whose answer has begun that it failed, and end the answer."""

    def _answered(self, usage: Usage | None, body: bytes | None) -> None:
        """A whole answer is in: its usage, the time it took, and ``body`` for the log when
        bodies are stored (None: nothing worth keeping)."""
        self.usage = usage
        self.ttft_s = perf_counter() - self.started
        if body is not None and self.deps.config.logging.store_bodies:
            self.response_text = body.decode(errors="replace")

    async def _send_whole(self, payload: bytes) -> None:
        """Send a whole JSON answer; the call is done."""
        self._done = True
        await send_body(self.send, 200, payload, [JSON_TYPE, *self._headers()])

    async def _send_error_before_start(self, error: GatewayError) -> None:
        """Answer ``error`` with its status, in the protocol's error shape (OpenAI's here)."""
        await send_error(self.send, error, self._headers())

    def _client_bucket(self) -> str:
        """Who shares the gateway's image budget with whom: the caller's rate-limit bucket."""
        return self.caller.bucket if self.caller is not None else ""

    def _hung_up(self, scope: trio.CancelScope) -> None:
        if self._done:
            # The answer is complete: this is hypercorn closing the connection after it (HTTP/1.0,
            # "Connection: close"), not the client leaving. Cancelling now would cut that close.
            return
        self.client_gone = True
        scope.cancel()

    # -- answers -----------------------------------------------------------------------------

    def _headers(self) -> Headers:
        provider = self.route.provider if self.route else "none"
        overhead_ms = (perf_counter() - self.started - self.timing.upstream_s) * 1000
        return [
            (b"x-request-id", self.request_id.encode()),
            (b"x-llm-proxy-provider", provider.encode()),
            (b"x-llm-proxy-overhead-ms", f"{overhead_ms:.2f}".encode()),
            *self.rate_headers,
        ]

    async def _fail(self, error: GatewayError) -> None:
        if error.status >= 500:
            log.warning("status=%d %s", error.status, error.message)
        await self._answer_error(error)

    async def _cut_at_shutdown(self) -> None:
        error = UpstreamUnavailable(
            "The gateway shut down before the answer was complete.", code="shutting_down"
        )
        # Shielded and brief: the connection may already be gone.
        with trio.move_on_after(0.5, shield=True):
            await self._answer_error(error)

    async def _answer_error(self, error: GatewayError) -> None:
        """Record ``error`` as the outcome and tell the client, before or after the first byte."""
        # Without its traceback: the frames it holds would keep this call alive until a GC cycle.
        self.error = error.with_traceback(None)
        self.status = "error"
        self.http_status = error.status
        self._done = True
        if self.response_started:
            await self._send_error_after_start(error)
        else:
            self.response_started = True
            await self._send_error_before_start(error)

    def _cancelled(self) -> None:
        self.status = "cancelled"
        self.http_status = CLIENT_CLOSED
        self._done = True

    # -- the record --------------------------------------------------------------------------

    def record(self) -> RequestRecord:
        """The log record of this call as it ended."""
        elapsed = perf_counter() - self.started
        request, route, usage, error = self.request, self.route, self.usage, self.error
        store = self.deps.config.logging.store_bodies
        return RequestRecord(
            request_id=self.request_id,
            ts_ms=self.ts_ms,
            endpoint=self.ENDPOINT,
            client_id=self.client_id,
            provider=route.provider if route else None,
            model=request.model if request else "",
            upstream_model=route.upstream_model if route else None,
            stream=request.stream if request else False,
            status=self.status,
            http_status=self.http_status,
            error_type=error.error_type if error else None,
            error_message=error.message if error else None,
            prompt_tokens=usage.prompt_tokens if usage else None,
            completion_tokens=usage.completion_tokens if usage else None,
            reasoning_tokens=usage.reasoning_tokens if usage else None,
            cached_tokens=usage.cached_tokens if usage else None,
            cache_write_tokens=usage.cache_write_tokens if usage else None,
            total_tokens=usage.total_tokens if usage else None,
            has_images=request.has_images if request else False,
            latency_ms=elapsed * 1000,
            ttft_ms=self.ttft_s * 1000 if self.ttft_s is not None else None,
            overhead_ms=max(elapsed - self.timing.upstream_s, 0.0) * 1000,
            request_body=self.body.decode(errors="replace") if store and self.body else None,
            response_body=self.response_text if store else None,
            attempts=len(self.failed_attempts) + 1,
            failed_attempts=_encode(self.failed_attempts).decode()
            if self.failed_attempts
            else None,
        )

    def _tokens_to_reserve(self, request: RequestT, caller: Caller) -> int:
        """What this call reserves from its client's tokens-per-minute budget (0: no limit)."""
        per_minute = caller.limits.tokens_per_minute
        if not per_minute:
            return 0
        return tokens_to_reserve(
            request,
            len(self.body),
            default_completion=self.deps.config.limits.default_reserved_completion_tokens,
            tokens_per_minute=per_minute,
        )

    def _tokens_used(self) -> int | None:
        """What the call cost its client's token budget: the usage reported; 0 when the upstream
        produced nothing it bills; None (the reservation stands) when it may have billed tokens
        nobody reported (an answer without usage, a stream cut, a timeout, a client gone)."""
        if self.usage is not None:
            return self.usage.total_tokens
        if self.status == "error" and self.ttft_s is None:
            # Refused here or by the upstream before any output; a timeout may still be billed.
            return None if isinstance(self.error, UpstreamTimeout) else 0
        return None

    def _settle_tokens(self) -> None:
        if self.reservation is not None:
            self.deps.limiter.settle(self.reservation, self._tokens_used())

    def _estimated_cost(self, route: Route) -> float:
        """What the call may cost at ``route``'s prices: its prompt estimate and the most it may
        answer (or ``default_reserved_completion_tokens``); 0 when the model has no price."""
        pricer, request = self.deps.pricer, self.request
        if pricer is None or request is None:
            return 0.0
        rates = pricer.rates(
            provider=route.provider, upstream_model=route.upstream_model, alias=route.alias
        )
        if rates is None:
            return 0.0
        prompt = estimate_prompt_tokens(request, len(self.body))
        answer = answer_tokens_asked(request)
        if answer is None:
            answer = self.deps.config.limits.default_reserved_completion_tokens
        return (
            prompt * (rates.input_per_mtok or 0.0) + answer * (rates.output_per_mtok or 0.0)
        ) / 1e6

    def _settle_budget(self, record: RequestRecord) -> None:
        """Release the call's estimate and count its real cost (or that it had none)."""
        hold, budgets = self.budget_hold, self.deps.budgets
        if hold is None or budgets is None or self.caller is None:
            return
        self.budget_hold = None
        budgets.settle(
            hold,
            client_id=self.caller.bucket,
            provider=record.provider,
            cost_usd=record.cost_usd,
            unpriced=record.cost_usd is None and record.has_usage,
        )

    async def _log(self) -> None:
        self._settle_tokens()
        record = self.record()
        alias = self.route.alias if self.route else None
        if self.deps.pricer is not None:
            # Priced here, once: the budget settles with the cost the logger then stores.
            record = priced_record(self.deps.pricer, record, alias)
        self._settle_budget(record)
        logger = self.deps.logger
        try:
            logger.record_nowait(record, alias=alias)
            return
        except trio.WouldBlock:
            pass
        # The logger is backed up: wait for it (shielded, since a cancelled request must still
        # be logged), but not forever.
        with trio.move_on_after(RECORD_WAIT_S, shield=True):
            await logger.record(record, alias=alias)
            return
        log.error("the request log stayed full for %gs", RECORD_WAIT_S)


async def next_or_none(items: ChunkStream) -> StreamItem | None:
    """The next item of a call's stream; None at its clean end."""
    try:
        return await items.__anext__()
    except StopAsyncIteration:
        return None


def _worth_a_fallback(error: GatewayError) -> bool:
    """Upstream trouble another provider may not have: 5xx, timeouts, open breaker, 429."""
    return error.status >= 500 or isinstance(error, RateLimited)
