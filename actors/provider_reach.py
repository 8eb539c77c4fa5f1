"""A provider's reachability: what its last contact (a real call or a probe) said, and when.

"Enabled, breaker closed" says nothing about an upstream nobody called yet (an Ollama with
nothing listening looked healthy). This keeps the last outcome of the provider's own traffic,
set where every call ends (:meth:`actors.provider_admission.CallGate.ended`), and of the cheap
probe the actor sends to its model list when the provider has been idle
(:meth:`actors.provider.ProviderActor.probe`). Recording a success assigns four fields and
allocates nothing; only a failure builds its short reason.

The judgment follows the circuit breaker's: an answer is "reachable" (a 200, or a 4xx about the
request such as 400 or 429: the upstream works); a 5xx-class failure is "unreachable" — no
connection, a timeout, a cut stream, a 5xx, and credentials the upstream refuses (401/403: the
gateway cannot use it). A call that says nothing about the upstream (the client left, no free
slot, an image that could not be fetched) leaves the state as it was.
"""

from __future__ import annotations

import dataclasses
import socket
import time
from typing import Literal

import trio

from proxy.errors import GatewayError

ReachState = Literal["reachable", "unreachable", "unknown"]
Via = Literal["call", "probe"]


@dataclasses.dataclass(frozen=True, slots=True)
class ReachSnapshot:
    """A provider's reachability for health, metrics and the dashboard."""

    state: ReachState
    via: Via | None  # what found it out: a real call or the idle probe
    status: int | None  # the upstream's HTTP status, when it answered one
    reason: str | None  # short: "connection refused", "timeout", "key refused"
    age_s: float | None  # seconds since
    checked_at: float | None  # Unix seconds


UNKNOWN = ReachSnapshot("unknown", None, None, None, None, None)


class Reachability:
    """The last contact with one upstream; written on every call's end, read on demand."""

    __slots__ = ("at", "call_ok", "reachable", "reason", "status", "via")

    def __init__(self) -> None:
        self.at: float | None = None  # trio time of the last contact
        self.reachable = False
        self.status: int | None = None
        self.reason: str | None = None
        self.via: Via = "call"
        # The last contact was a successful call: the next one only moves ``at`` (the hot path).
        self.call_ok = False

    def answered(self, now: float, via: Via = "call") -> None:
        """The upstream answered with success (a 200)."""
        # One statement each: a five-name unpacking would build a tuple.
        self.at = now
        self.reachable = True
        self.status = 200
        self.reason = None
        self.via = via
        self.call_ok = via == "call"

    def refused(self, now: float, error: GatewayError, via: Via = "call") -> None:
        """The upstream answered with an error about the request (a 4xx): it is reachable."""
        self.at, self.reachable, self.via, self.call_ok = now, True, via, False
        self.status, self.reason = error.upstream_status, _answer_reason(error)

    def failed(
        self, now: float, error: BaseException | None, via: Via = "call", reason: str = "failed"
    ) -> None:
        """The upstream could not be reached or used (``error``: why, when known; else
        ``reason``)."""
        self.at, self.reachable, self.via, self.call_ok = now, False, via, False
        if isinstance(error, GatewayError):
            self.status, self.reason = error.upstream_status, failure_reason(error)
        else:
            self.status, self.reason = None, reason

    def answered_again(self, now: float) -> None:
        """Another successful call after a successful call: only its time moves (hot path)."""
        self.at = now

    def idle_for(self, now: float, since: float) -> float:
        """Seconds since the last contact, or since ``since`` (the actor's start) if none."""
        return now - (self.at if self.at is not None else since)

    def snapshot(self) -> ReachSnapshot:
        """The state now, with its age."""
        at = self.at
        if at is None:
            return UNKNOWN
        age = max(0.0, trio.current_time() - at)
        return ReachSnapshot(
            "reachable" if self.reachable else "unreachable",
            self.via,
            self.status,
            self.reason,
            round(age, 3),
            round(time.time() - age, 3),
        )


def failure_reason(error: GatewayError) -> str:
    """The short why of a failed call: the upstream's status and what it means, or why it could
    not be reached."""
    if error.unreached_because is not None:
        return error.unreached_because
    status = error.upstream_status
    if status in (401, 403):
        return "key refused"
    if status == 402:
        return "out of credit"
    if error.code == "upstream_overloaded":
        return "overloaded"
    if status is not None:
        return "server error" if status >= 500 else f"error {status}"
    if error.status == 504:
        return "timeout"
    if error.code == "base_url_not_allowed":
        return "base URL not allowed for the key"
    return "bad answer" if error.status == 502 else error.error_type.replace("_", " ")


def _answer_reason(error: GatewayError) -> str | None:
    if error.upstream_status == 429:
        return "rate limited"
    return None


def unreached_because(exc: BaseException) -> str:
    """The short why of a connection that failed, from the transport's exception chain."""
    seen: set[int] = set()
    pending: list[BaseException] = [exc]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, ConnectionRefusedError):
            return "connection refused"
        if isinstance(current, socket.gaierror):
            return "name not resolved"
        if isinstance(current, ConnectionResetError):
            return "connection reset"
        if isinstance(current, OSError) and "unreachable" in str(current).lower():
            return "network unreachable"
        if isinstance(current, BaseExceptionGroup):
            pending.extend(current.exceptions)
        for linked in (current.__cause__, current.__context__):
            if linked is not None:
                pending.append(linked)
    return "connection failed"
