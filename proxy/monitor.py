"""``llm-proxy monitor``: the gateway's live feed of calls in a terminal, over the WebSocket.

One line per call (time, client, model, provider, status, tokens in/out, cost, latency), running
totals every few calls, and a line on each reconnect. Part of the command line, like
``proxy/cli.py``: only the CLI imports it. The frame-to-text part (:class:`FeedView` and the
``format_*`` functions) is pure; :func:`watch` is the trio loop around it.

The session token travels only in the ``Authorization`` header (the feed refuses one in the URL)
and is never printed. Sessions live in the server's memory, so after a server restart the old
token is refused: with ``--user`` the monitor signs in again with the password it asked for once;
with ``--token`` it says so and exits.
"""

from __future__ import annotations

import dataclasses
import json
import math
import signal
import sys
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Final, Protocol

import httpx
import trio
from trio_websocket import ConnectionClosed, ConnectionRejected, HandshakeError, open_websocket_url

DEFAULT_URL: Final = "ws://127.0.0.1:8080/api/ws"
TOTALS_EVERY: Final = 10
BACKOFF_FIRST_S: Final = 0.5
BACKOFF_MAX_S: Final = 30.0
CONNECT_TIMEOUT_S: Final = 10.0
DISCONNECT_TIMEOUT_S: Final = 2.0
# Password hashing on the server plus its sign-in throttle can take a while.
LOGIN_TIMEOUT_S: Final = 30.0
DEFAULT_WIDTH: Final = 120

SESSION_ENDED: Final = 4401
PASSWORD_CHANGE: Final = 4403
LOOPBACK_HOSTS: Final = frozenset({"127.0.0.1", "localhost", "::1"})

Frame = Mapping[str, object]
Emit = Callable[[str], Awaitable[None]]


class MonitorError(Exception):
    """The monitor cannot go on (refused credentials, a bad URL); the message says why."""


class _Unavailable(Exception):
    """The server cannot be reached right now: retried after a pause."""


# --- formatting (pure) --------------------------------------------------------------------------


def printable(text: object) -> str:
    """``text`` with control characters replaced: model and client names come from API callers,
    and an escape sequence printed as is would drive the terminal."""
    value = str(text)
    if value.isprintable():
        return value
    return "".join(char if char.isprintable() else "?" for char in value)


def clip(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters, the cut marked with ``~``."""
    if len(text) <= width:
        return text
    if width <= 1:
        return text[:width]
    return text[: width - 1] + "~"


def compact_int(value: object) -> str:
    """A token count in at most five characters: ``987``, ``9876``, ``98k``, ``1.2M``."""
    if not isinstance(value, int) or isinstance(value, bool):
        return "-"
    if value < 10_000:
        return str(value)
    if value < 1_000_000:
        return f"{value // 1000}k"
    if value < 10_000_000:
        return f"{value / 1_000_000:.1f}M"
    return f"{value // 1_000_000}M"


def format_cost(cost: object) -> str:
    """USD with the precision a single call needs; ``-`` for an unpriced call."""
    if not isinstance(cost, int | float) or isinstance(cost, bool) or not math.isfinite(cost):
        return "-"
    if cost == 0:
        return "$0"
    if cost < 0.01:
        return f"${cost:.4f}"
    if cost < 1000:
        return f"${cost:.2f}"
    return f"${cost:.0f}"


def format_latency(latency_ms: object) -> str:
    """``850ms``, ``1.25s``, ``12.5s``, ``95s``."""
    if not isinstance(latency_ms, int | float) or isinstance(latency_ms, bool):
        return "-"
    if latency_ms < 1000:
        return f"{latency_ms:.0f}ms"
    seconds = latency_ms / 1000
    if seconds < 10:
        return f"{seconds:.2f}s"
    if seconds < 60:
        return f"{seconds:.1f}s"
    return f"{seconds:.0f}s"


def format_status(frame: Frame) -> str:
    """``ok``, ``cancel``, or ``err`` with the HTTP status answered."""
    status = frame.get("status")
    if status == "ok":
        return "ok"
    if status == "cancelled":
        return "cancel"
    http_status = frame.get("http_status")
    return f"err {http_status}" if isinstance(http_status, int) else "err"


def format_clock(ts_ms: object) -> str:
    """Local wall-clock time of a call, to the second."""
    if not isinstance(ts_ms, int | float) or isinstance(ts_ms, bool):
        return "--:--:--"
    return time.strftime("%H:%M:%S", time.localtime(ts_ms / 1000))


@dataclasses.dataclass(frozen=True, slots=True)
class Column:
    """One column of the call lines: its title, width bounds and alignment."""

    name: str
    title: str
    min_width: int
    max_width: int
    right: bool = False


COLUMNS: Final = (
    Column("time", "time", 8, 8),
    Column("client", "client", 6, 12),
    Column("model", "model", 12, 30),
    Column("provider", "provider", 6, 8),
    Column("status", "status", 7, 7),
    Column("tokens", "in/out", 9, 11, right=True),
    Column("cost", "cost", 8, 8, right=True),
    Column("latency", "latency", 7, 7, right=True),
)
# Narrow terminals lose these first, in this order (the model names the provider well enough);
# what is left fits in 38 columns.
_DROP_ORDER: Final = ("provider", "client", "time", "cost")
# Spare width goes to these, in this order, each up to its maximum.
_GROW_ORDER: Final = ("model", "client", "provider")


def layout(width: int) -> tuple[tuple[Column, int], ...]:
    """The columns shown at terminal ``width``, each with its width."""
    shown = list(COLUMNS)

    def total(widths: Mapping[str, int]) -> int:
        return sum(widths[c.name] for c in shown) + len(shown) - 1

    widths = {column.name: column.min_width for column in COLUMNS}
    for name in _DROP_ORDER:
        if total(widths) <= width:
            break
        shown = [column for column in shown if column.name != name]
    spare = width - total(widths)
    for name in _GROW_ORDER:
        column = next((c for c in shown if c.name == name), None)
        if column is None or spare <= 0:
            continue
        extra = min(spare, column.max_width - column.min_width)
        widths[name] += extra
        spare -= extra
    return tuple((column, widths[column.name]) for column in shown)


def _cells(frame: Frame) -> dict[str, str]:
    model = frame.get("alias") or frame.get("model") or "?"
    return {
        "time": format_clock(frame.get("ts_ms")),
        "client": printable(frame.get("client_id") or "-"),
        "model": printable(model),
        "provider": printable(frame.get("provider") or "-"),
        "status": format_status(frame),
        "tokens": f"{compact_int(frame.get('prompt_tokens'))}/"
        f"{compact_int(frame.get('completion_tokens'))}",
        "cost": format_cost(frame.get("cost_usd")),
        "latency": format_latency(frame.get("latency_ms")),
    }


def _row(cells: Mapping[str, str], width: int) -> str:
    parts = []
    for column, column_width in layout(width):
        text = clip(cells[column.name], column_width)
        parts.append(text.rjust(column_width) if column.right else text.ljust(column_width))
    return " ".join(parts)


def format_header(width: int) -> str:
    """The column titles, laid out as the call lines are."""
    return _row({column.name: column.title for column in COLUMNS}, width).rstrip()


def format_request(frame: Frame, width: int) -> str:
    """One call as one line of at most ``width`` characters; a failed call's reason follows when
    there is room."""
    line = _row(_cells(frame), width).rstrip()
    if frame.get("status") == "error":
        reason = frame.get("error_type") or frame.get("error_message")
        room = width - len(line) - 1
        if reason and room >= 8:
            line += " " + clip(printable(reason), room)
    return clip(line, width)


@dataclasses.dataclass(slots=True)
class Totals:
    """The calls seen since the monitor started."""

    calls: int = 0
    errors: int = 0
    cancelled: int = 0
    tokens: int = 0
    cost_usd: float = 0.0
    unpriced: int = 0

    def add(self, frame: Frame) -> None:
        """Count one ``request`` frame."""
        self.calls += 1
        status = frame.get("status")
        self.errors += status == "error"
        self.cancelled += status == "cancelled"
        total = frame.get("total_tokens")
        if not isinstance(total, int):
            total = sum(
                value
                for value in (frame.get("prompt_tokens"), frame.get("completion_tokens"))
                if isinstance(value, int)
            )
        self.tokens += total
        cost = frame.get("cost_usd")
        if isinstance(cost, int | float) and not isinstance(cost, bool):
            self.cost_usd += cost
        elif status == "ok":
            self.unpriced += 1


def format_totals(totals: Totals, width: int) -> str:
    """The running totals as one line."""
    parts = [
        f"{totals.calls} call{'' if totals.calls == 1 else 's'}",
        f"{totals.errors} error{'' if totals.errors == 1 else 's'}",
    ]
    if totals.cancelled:
        parts.append(f"{totals.cancelled} cancelled")
    parts.append(f"{totals.tokens:,} tokens")
    cost = f"${totals.cost_usd:.4f}" if totals.cost_usd < 100 else f"${totals.cost_usd:,.2f}"
    if totals.unpriced:
        cost += f" (+{totals.unpriced} unpriced)"
    parts.append(cost)
    return clip("-- totals: " + ", ".join(parts), width)


class FeedView:
    """Turns feed frames into terminal lines, keeping the running totals.

    Totals are shown after every ``totals_every`` calls, and on a ``metrics`` frame (every few
    seconds) when calls arrived since they were last shown, so a short burst is summed up too.
    """

    def __init__(self, width: int = DEFAULT_WIDTH, *, totals_every: int = TOTALS_EVERY) -> None:
        self.width = width
        self.totals = Totals()
        self._totals_every = totals_every
        self._since_totals = 0
        self._dropped = 0
        self._header_shown = False

    def on_frame(self, frame: Frame) -> list[str]:
        """The lines to print for ``frame`` (often none)."""
        width = max(self.width, 20)
        match frame.get("type"):
            case "hello":
                user, role = printable(frame.get("user")), printable(frame.get("role"))
                lines = [f"-- connected as {user} ({role})"]
                self._dropped = 0  # the server counts per socket
                if not self._header_shown:
                    self._header_shown = True
                    lines.append(format_header(width))
                return [clip(line, width) for line in lines]
            case "request":
                self.totals.add(frame)
                self._since_totals += 1
                lines = [format_request(frame, width)]
                if self._since_totals >= self._totals_every:
                    lines.append(self.totals_line())
                return lines
            case "metrics":
                lines = []
                dropped = frame.get("dropped")
                if isinstance(dropped, int) and dropped > self._dropped:
                    lines.append(
                        clip(
                            f"-- {dropped - self._dropped} events lost: this terminal fell behind",
                            width,
                        )
                    )
                    self._dropped = dropped
                if self._since_totals:
                    lines.append(self.totals_line())
                return lines
            case "provider":
                name, state = printable(frame.get("name")), printable(frame.get("state"))
                return [clip(f"-- provider {name}: circuit breaker {state}", width)]
            case "credit":
                name = printable(frame.get("provider"))
                balance = format_cost(frame.get("balance_usd"))
                threshold = format_cost(frame.get("threshold_usd"))
                return [clip(f"-- credit: {name} balance {balance}, below {threshold}", width)]
            case _:
                return []  # ping, and frame types newer than this monitor

    def totals_line(self) -> str:
        """The totals now (and restart the every-N count)."""
        self._since_totals = 0
        return format_totals(self.totals, max(self.width, 20))


# --- URLs ---------------------------------------------------------------------------------------


def url_from_config(host: str, port: int) -> str:
    """The feed's URL on a server listening on ``host``:``port`` (a wildcard address means this
    machine)."""
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"ws://{host}:{port}/api/ws"


def check_url(url: str) -> str:
    """``url`` if it is a ws:// or wss:// URL without secrets in it; MonitorError otherwise."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise MonitorError(f"--url must be ws://HOST:PORT/api/ws or wss://…, got {shown_url(url)}")
    if parts.query or parts.username or parts.password:
        raise MonitorError(
            "--url must not carry credentials or a query: the token goes in a header"
            " (--token, $LLM_PROXY_TOKEN or --user)"
        )
    return url


def shown_url(url: str) -> str:
    """``url`` as it may be printed: no user info, no query."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def login_url(ws_url: str) -> str:
    """``POST /api/auth/login`` on the server of ``ws_url`` (same prefix, http(s))."""
    parts = urllib.parse.urlsplit(ws_url)
    scheme = "https" if parts.scheme == "wss" else "http"
    path = parts.path
    prefix = path[: -len("/api/ws")] if path.endswith("/api/ws") else ""
    return urllib.parse.urlunsplit((scheme, parts.netloc, prefix + "/api/auth/login", "", ""))


def is_plaintext_remote(url: str) -> bool:
    """Whether credentials for ``url`` would cross the network unencrypted."""
    parts = urllib.parse.urlsplit(url)
    return parts.scheme == "ws" and (parts.hostname or "") not in LOOPBACK_HOSTS


# --- credentials --------------------------------------------------------------------------------


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
            raise _Unavailable(f"cannot sign in: {type(exc).__name__}: {exc}") from None
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
        message = _error_message(answer.content) or answer.reason_phrase
        if answer.status_code == 429 or answer.status_code >= 500:
            raise _Unavailable(f"cannot sign in: HTTP {answer.status_code}: {message}")
        if answer.status_code == 401:
            raise MonitorError(f"sign-in refused: {message}")
        raise MonitorError(f"sign-in at {self._url} failed: HTTP {answer.status_code}: {message}")


def _error_message(body: bytes | None) -> str:
    """The ``error.message`` of a JSON error body, else the body's first line."""
    if not body:
        return ""
    try:
        data = json.loads(body)
        return printable(data["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return clip(printable(body.decode(errors="replace").splitlines()[0]), 200)


# --- the loop -----------------------------------------------------------------------------------


def _decode(text: str | bytes) -> Frame | None:
    try:
        frame = json.loads(text)
    except ValueError:
        return None
    return frame if isinstance(frame, dict) else None


async def watch(
    url: str,
    credentials: Credentials,
    emit: Emit,
    view: FeedView,
    *,
    width: Callable[[], int] | None = None,
    backoff_first_s: float = BACKOFF_FIRST_S,
    backoff_max_s: float = BACKOFF_MAX_S,
    connect_timeout_s: float = CONNECT_TIMEOUT_S,
) -> None:
    """Print the feed at ``url`` until cancelled, reconnecting with backoff whenever the
    connection is lost; MonitorError when it cannot go on (credentials refused, bad URL)."""
    check_url(url)
    shown = shown_url(url)
    if is_plaintext_remote(url):
        await emit(
            f"-- warning: {shown} is not encrypted: the session crosses the network in clear;"
            " use wss:// (e.g. behind a TLS reverse proxy)"
        )
    await emit(f"-- watching {shown} (Ctrl-C to stop)")
    delay = backoff_first_s
    renew = False
    while True:
        renewed, renew = renew, False
        try:
            token = await credentials.token(renew=renewed)
            headers = [(b"authorization", f"Bearer {token}".encode())]
            async with open_websocket_url(
                url,
                extra_headers=headers,
                connect_timeout=connect_timeout_s,
                disconnect_timeout=DISCONNECT_TIMEOUT_S,
            ) as socket:
                while True:
                    frame = _decode(await socket.get_message())
                    if frame is None:
                        continue
                    if frame.get("type") == "hello":
                        delay = backoff_first_s  # a working connection resets the backoff
                    if width is not None:
                        view.width = width()
                    for line in view.on_frame(frame):
                        await emit(line)
        except ConnectionRejected as rejected:
            message = _error_message(rejected.body)
            if rejected.status_code == 401 and not renewed:
                # Sessions live in the server's memory: a restarted server has forgotten it.
                renew = True
                reason = "the session was refused"
            elif rejected.status_code >= 500:
                reason = f"the server is unavailable (HTTP {rejected.status_code}: {message})"
            elif rejected.status_code == 429:
                # The session's feeds are all taken, often by this monitor's own dropped
                # connection that the server has not noticed yet: its place frees soon.
                reason = f"no place for the feed yet (HTTP 429: {message})"
            else:
                raise MonitorError(
                    f"the server refused the feed: HTTP {rejected.status_code}: {message}"
                ) from None
        except ConnectionClosed as closed:
            why = closed.reason
            code = why.code if why is not None else 1006
            text = printable(why.reason or "") if why is not None else ""
            if code == PASSWORD_CHANGE:
                raise MonitorError(f"the server ended the feed: {text}") from None
            renew = code == SESSION_ENDED
            reason = f"connection closed ({code}{': ' + text if text else ''})"
        except HandshakeError as exc:
            cause = exc.__cause__ or exc
            reason = f"cannot connect to {shown} ({type(cause).__name__}: {cause})"
        except _Unavailable as exc:
            renew = renewed  # still to do, after the pause
            reason = str(exc)
        except (OSError, trio.BrokenResourceError) as exc:
            reason = f"connection lost ({type(exc).__name__}: {exc})"
        if renew and not renewed:
            # A refused session is renewed at once (a static token raises MonitorError there).
            await emit(f"-- {reason}")
            continue
        await emit(f"-- {reason}; reconnecting in {delay:g} s")
        await trio.sleep(delay)
        delay = min(delay * 2, backoff_max_s)


# --- the command --------------------------------------------------------------------------------


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


def terminal_width() -> int:
    """The terminal's width now (or $COLUMNS, or a default when the output is not a terminal)."""
    import shutil

    return shutil.get_terminal_size((DEFAULT_WIDTH, 24)).columns


def stdout_emitter() -> Emit:
    """Write lines to stdout from a worker thread (a paused pager must not stall the loop)."""
    encoding = sys.stdout.encoding or "utf-8"
    out = trio.wrap_file(sys.stdout)

    async def emit(line: str) -> None:
        # A terminal that cannot show a character gets "?" rather than a crash.
        await out.write(line.encode(encoding, "replace").decode(encoding) + "\n")
        await out.flush()

    return emit


async def run(
    url: str,
    credentials: Credentials,
    *,
    emit: Emit | None = None,
    signals: Sequence[int] = (signal.SIGINT, signal.SIGTERM),
) -> None:
    """The ``monitor`` command: watch until Ctrl-C (or SIGTERM), then print the totals.

    Raises MonitorError when the monitor cannot go on.
    """
    emit = emit or stdout_emitter()
    view = FeedView(terminal_width())
    failure: MonitorError | None = None
    with trio.open_signal_receiver(*signals) as received:
        async with trio.open_nursery() as nursery:

            async def feed() -> None:
                nonlocal failure
                try:
                    await watch(url, credentials, emit, view, width=terminal_width)
                except MonitorError as exc:
                    failure = exc
                nursery.cancel_scope.cancel()

            async def stop_on_signal() -> None:
                async for _ in received:
                    nursery.cancel_scope.cancel()
                    return

            nursery.start_soon(feed)
            nursery.start_soon(stop_on_signal)
    if failure is not None:
        raise failure
    with trio.move_on_after(2):
        await emit(view.totals_line())
