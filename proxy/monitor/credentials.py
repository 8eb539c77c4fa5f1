"""Where the monitor's session token comes from: a token given, or a sign-in with a password.

Sessions live in the server's memory, so after a server restart the old token is refused: with
``--user`` the monitor signs in again with the password it asked for once; with ``--token`` it
says so and exits. The password is prompted for, never taken from argv, and neither it nor the
token is ever printed, not even in a ``repr``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Final, Protocol

import httpx

from proxy.monitor.errors import MonitorError, Unavailable, error_message
from proxy.monitor.urls import login_url

# Password hashing on the server plus its sign-in throttle can take a while.
LOGIN_TIMEOUT_S: Final = 30.0


class Credentials(Protocol):
    """Where the session token comes from."""

    async def token(self, *, renew: bool) -> str:
        """The token; ``renew``: the last one was refused, get another or raise MonitorError."""
        ...


class StaticToken:
    """A token given on the command line or in ``$LLM_PROXY_TOKEN``; cannot be renewed."""

    __slots__ = ("_token",)

    def __init__(self, token: str) -> None:
        self._token = token.strip().removeprefix("Bearer ").strip()
        if not self._token:
            raise MonitorError("the session token is empty")

    def __repr__(self) -> str:
        return "StaticToken(<hidden>)"

    async def token(self, *, renew: bool) -> str:
        """The token, unless it was refused."""
        if renew:
            raise MonitorError(
                "the session token is no longer valid (signed out, expired, or the server "
                "restarted): sign in again, or use --user to have the monitor sign in itself"
            )
        return self._token


class PasswordLogin:
    """Signs in with a username and password (asked once), and again whenever the session is
    refused (the server restarted, the session expired)."""

    __slots__ = ("_password", "_token", "_url", "_username")

    def __init__(self, login_url: str, username: str, password: str) -> None:
        self._url = login_url
        self._username = username
        self._password = password
        self._token: str | None = None

    def __repr__(self) -> str:
        return f"PasswordLogin({self._url!r}, {self._username!r}, <hidden>)"

    async def token(self, *, renew: bool) -> str:
        """The current session's token, signing in first when there is none or it was refused."""
        if self._token is None or renew:
            self._token = None
            self._token = await self._login()
        return self._token

    async def _login(self) -> str:
        body = {"username": self._username, "password": self._password}
        try:
            # trust_env=False: the password takes the same direct route as the feed, never an
            # HTTP proxy named in the environment.
            async with httpx.AsyncClient(timeout=LOGIN_TIMEOUT_S, trust_env=False) as client:
                answer = await client.post(self._url, json=body)
        except httpx.HTTPError as exc:
            raise Unavailable(f"cannot sign in: {type(exc).__name__}: {exc}") from None
        if answer.status_code == 200:
            data = answer.json()
            user = data.get("user") or {}
            if user.get("must_change_password"):
                raise MonitorError(
                    f"{self._username} must change the password first: sign in to the dashboard"
                )
            token = data.get("token")
            if not isinstance(token, str) or not token:
                raise MonitorError(f"unexpected sign-in answer from {self._url}")
            return token
        message = error_message(answer.content) or answer.reason_phrase
        if answer.status_code == 429 or answer.status_code >= 500:
            raise Unavailable(f"cannot sign in: HTTP {answer.status_code}: {message}")
        if answer.status_code == 401:
            raise MonitorError(f"sign-in refused: {message}")
        raise MonitorError(f"sign-in at {self._url} failed: HTTP {answer.status_code}: {message}")


def credentials_from(
    *,
    url: str,
    token: str | None,
    user: str | None,
    environ: Mapping[str, str],
    ask_password: Callable[[str], str],
) -> Credentials:
    """The credentials the command line asks for: ``--user`` (password prompted, never in
    argv), else ``--token``, else ``$LLM_PROXY_TOKEN``."""
    if user is not None:
        password = ask_password(f"password for {user}: ")
        if not password:
            raise MonitorError("no password given")
        return PasswordLogin(login_url(url), user, password)
    given = token if token is not None else environ.get("LLM_PROXY_TOKEN")
    if not given:
        raise MonitorError(
            "sign in with --user USERNAME (asks for the password), or pass a dashboard session"
            " token in $LLM_PROXY_TOKEN or --token"
        )
    return StaticToken(given)
