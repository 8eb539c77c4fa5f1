"""The ASGI guard in front of every route: a request naming a ``Host`` not allowed gets a 400.

It wraps the whole application, so ``/v1``, ``/api``, the WebSocket feed, the dashboard's files
and the health endpoints are covered alike, before any of them reads the request. What is
allowed, and why, is :mod:`proxy.hosts`.
"""

from __future__ import annotations

import json
import logging
from typing import Final

from proxy.config import ServerConfig
from proxy.errors import InvalidRequest
from proxy.hosts import CONFIG_KEY, HostPolicy, host_policy
from web.asgi import CLOSE_HEADERS, JSON_TYPE, ASGIApp, Receive, Scope, Send, send_error

log = logging.getLogger("llm_proxy.web")

# Refusals are logged once per distinct Host, up to this many: enough to spot a name that should
# be allowed, and a flood of made-up names cannot fill the log.
_LOGGED_HOSTS: Final = 20


def policy_for(server: ServerConfig) -> HostPolicy | None:
    """The ``Host`` policy of these settings; None when every ``Host`` is accepted."""
    return host_policy(
        allowed_hosts=server.allowed_hosts,
        bind_host=server.host,
        proxy_hops=server.trusted_proxy_hops,
    )


def guard_hosts(app: ASGIApp, server: ServerConfig) -> ASGIApp:
    """``app`` behind the ``Host`` check of ``server``; ``app`` itself when nothing is checked."""
    policy = policy_for(server)
    if policy is None:
        if not server.allowed_hosts:
            log.warning("%s", _unchecked_reason(server))
        return app
    logged: set[str] = set()

    async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            refused = policy.refused_host(scope["headers"])
            if refused is not None:
                if len(logged) < _LOGGED_HOSTS and refused not in logged:
                    logged.add(refused)
                    log.warning(
                        "refused a request for Host %s: not in %s (a DNS-rebinding page, or a "
                        "name clients use that should be added)",
                        _quoted(refused),
                        CONFIG_KEY,
                    )
                await _refuse(scope, send, refused)
                return
        await app(scope, receive, send)

    return guarded


def _unchecked_reason(server: ServerConfig) -> str:
    if server.trusted_proxy_hops:
        where = (
            f"behind server.trusted_proxy_hops = {server.trusted_proxy_hops} any Host the proxy "
            "forwards is accepted"
        )
    else:
        where = f"listening on {server.host}, requests naming any Host are accepted"
    return (
        f"{CONFIG_KEY} is not set: {where}; set it to the names clients use (for example "
        f'["llm.example.com"]) so that web pages on other names cannot reach the gateway '
        f'through DNS rebinding, or to ["*"] to accept every name'
    )


def _quoted(host: str) -> str:
    """The refused value as a JSON string, shortened: it comes from the client."""
    return json.dumps(host if len(host) <= 100 else host[:100] + "…")


def host_not_allowed(host: str) -> InvalidRequest:
    """The 400 for a refused ``Host``, which ends the connection: the request body is not read,
    and on HTTP/1 an unread body would be taken for the next request (HTTP/2 drops the header)."""
    return InvalidRequest(
        f"Host {_quoted(host)} is not a name this gateway answers to; if clients use it, add it "
        f"to {CONFIG_KEY} in the gateway's configuration.",
        code="host_not_allowed",
        headers=CLOSE_HEADERS,
    )


async def _refuse(scope: Scope, send: Send, host: str) -> None:
    error = host_not_allowed(host)
    if scope["type"] == "websocket":
        if "websocket.http.response" not in scope.get("extensions", {}):
            await send({"type": "websocket.close", "code": 1008})  # the server answers 403
            return
        body = error.to_body()
        framing = [JSON_TYPE, (b"content-length", str(len(body)).encode())]
        await send({"type": "websocket.http.response.start", "status": 400, "headers": framing})
        await send({"type": "websocket.http.response.body", "body": body, "more_body": False})
        return
    await send_error(send, error, [])
