"""Gemini's errors: Google RPC statuses (answered bodies and in-stream events) as gateway errors."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import msgspec

from proxy.errors import GatewayError
from proxy.providers.base import UNREADABLE
from proxy.providers.upstream_errors import map_status, retry_headers


class RpcStatus(msgspec.Struct):
    """A Google RPC status: the ``error`` of an error body or of an in-stream error event."""

    code: int = 500
    message: str = ""
    status: str = ""
    details: list[dict[str, Any]] = []


def map_error(provider: str, status: int, headers: Mapping[str, str], body: bytes) -> GatewayError:
    """A Google RPC error body (or anything else) mapped per reference §2.5."""
    rpc = rpc_status(body)
    if rpc is None:
        text = body[:500].decode(errors="replace").strip() or f"HTTP {status}"
        return map_status(provider, status, text, headers=headers)
    return rpc_error(provider, status, rpc, headers)


def rpc_error(
    provider: str, status: int, rpc: RpcStatus, headers: Mapping[str, str]
) -> GatewayError:
    """The gateway error for a Google RPC status answered with HTTP ``status``."""
    message = rpc.message or rpc.status or f"HTTP {status}"
    if status == 400 and _is_bad_key(rpc):
        # Gemini answers a bad key with 400; it is the gateway's key, never the client's.
        return map_status(provider, 401, message, headers=headers)
    if status == 429:
        headers = {**retry_headers(headers), **_retry_after(rpc)}
    # Google's status name ("FAILED_PRECONDITION") tells a client more than the bare 400.
    code = rpc.status.lower() if status == 400 and rpc.status else None
    return map_status(provider, status, message, headers=headers, code=code)


def rpc_status(body: bytes) -> RpcStatus | None:
    """The ``error`` of ``{"error": …}`` (or of ``[{"error": …}]``), None when it is not one."""
    try:
        parsed = msgspec.json.decode(body)
    except UNREADABLE:
        return None
    if isinstance(parsed, list) and len(parsed) == 1:
        parsed = parsed[0]
    error = parsed.get("error") if isinstance(parsed, dict) else None
    if not isinstance(error, dict):
        return None
    try:
        return msgspec.convert(error, RpcStatus)
    except msgspec.ValidationError:
        return None


def _details(rpc: RpcStatus, kind: str) -> list[dict[str, Any]]:
    suffix = "google.rpc." + kind
    return [
        d for d in rpc.details if isinstance(d, dict) and str(d.get("@type", "")).endswith(suffix)
    ]


def _is_bad_key(rpc: RpcStatus) -> bool:
    if any(d.get("reason") == "API_KEY_INVALID" for d in _details(rpc, "ErrorInfo")):
        return True
    text = rpc.message.lower()
    return "api key not valid" in text or "invalid api key" in text


def _retry_after(rpc: RpcStatus) -> dict[str, str]:
    """``retry-after`` in whole seconds (rounded up) from ``RetryInfo.retryDelay`` ("37s")."""
    for detail in _details(rpc, "RetryInfo"):
        delay = detail.get("retryDelay")
        if isinstance(delay, str) and delay.endswith("s"):
            try:
                seconds = float(delay[:-1])
            except ValueError:
                continue
            if not math.isfinite(seconds):
                continue
            # A day is already longer than any client waits; a larger hint is noise.
            return {"retry-after": str(min(max(math.ceil(seconds), 0), 86_400))}
    return {}
