"""The reachability record alone: transitions, reasons and ages, on trio's mock clock."""

from __future__ import annotations

import httpx
import trio

from actors.provider_reach import Reachability, failure_reason, unreached_because
from proxy.errors import UpstreamError, UpstreamTimeout
from proxy.providers.upstream_errors import map_status


async def test_each_contact_replaces_the_last_and_ages(autojump_clock: trio.abc.Clock) -> None:
    reach = Reachability()
    assert reach.snapshot().state == "unknown"
    reach.answered(trio.current_time())
    reach.answered(trio.current_time())  # the hot path's second success
    await trio.sleep(12)
    shown = reach.snapshot()
    assert (shown.state, shown.via, shown.status, shown.reason) == ("reachable", "call", 200, None)
    assert shown.age_s == 12
    reach.failed(trio.current_time(), map_status("openai", 401, "no", headers={}))
    assert reach.call_ok is False
    shown = reach.snapshot()
    assert (shown.state, shown.status, shown.reason, shown.age_s) == (
        "unreachable",
        401,
        "key refused",
        0,
    )
    reach.answered(trio.current_time(), via="probe")
    assert reach.call_ok is False  # a probe's success is not a call's: the next call says so
    reach.answered(trio.current_time())
    assert (reach.snapshot().via, reach.call_ok) == ("call", True)


def test_reasons_are_short_and_say_why() -> None:
    timeout = UpstreamTimeout("Upstream x did not answer within 5 s.")
    assert failure_reason(timeout) == "timeout"
    assert failure_reason(map_status("x", 502, "bad gateway", headers={})) == "server error"
    assert failure_reason(map_status("x", 402, "pay", headers={})) == "out of credit"
    assert failure_reason(UpstreamError("Upstream x answered garbage")) == "bad answer"
    refused = httpx.ConnectError("all attempts failed")
    refused.__cause__ = OSError("all attempts to connect failed")
    refused.__cause__.__context__ = ExceptionGroup("x", [ConnectionRefusedError(111, "refused")])
    assert unreached_because(refused) == "connection refused"
    assert unreached_because(httpx.ConnectError("nothing known")) == "connection failed"
