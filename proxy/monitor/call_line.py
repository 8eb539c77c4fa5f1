"""One call as one terminal line: the value formats, the columns and how they fit a width.

Pure functions of a feed frame (the JSON object of one event), like the rest of the frame-to-text
part (``feed_view``). A narrow terminal loses the least useful columns first and spare width goes
to the model name first, so a call line never wraps.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from typing import Final

from proxy.monitor.colour import DIM, RED, paint, status_colour
from proxy.monitor.money import usd
from proxy.monitor.text import clip, printable

Frame = Mapping[str, object]
"""One decoded frame of the feed: a JSON object with a ``type``."""


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
    """USD as the dashboard shows it (``proxy.monitor.money``); ``-`` for an unpriced call."""
    return usd(cost)


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
    Column("client", "client", 6, 14),
    Column("model", "model", 12, 30),
    Column("provider", "provider", 6, 8),
    # Shown only once calls of a second instance (a fleet sharing Redis) have been seen.
    Column("instance", "instance", 6, 14),
    Column("endpoint", "api", 4, 4),
    Column("status", "status", 7, 7),
    Column("tokens", "in/out", 9, 11, right=True),
    Column("cost", "cost", 9, 9, right=True),
    Column("latency", "latency", 7, 7, right=True),
)
# Narrow terminals lose these first, in this order (the model names the provider well enough);
# what is left fits in 38 columns.
_DROP_ORDER: Final = ("endpoint", "provider", "instance", "client", "time", "cost")
# The client API a call came through, in the four characters of its column. A frame without one
# comes from a gateway older than the other APIs: chat.
_ENDPOINT_NAMES: Final = {
    "chat": "chat",
    "responses": "resp",
    "messages": "msgs",
    "embeddings": "emb",
}
# Spare width goes to these, in this order, each up to its maximum.
_GROW_ORDER: Final = ("model", "instance", "client", "provider")


def layout(width: int, *, instances: bool = False) -> tuple[tuple[Column, int], ...]:
    """The columns shown at terminal ``width``, each with its width; the instance column only
    with ``instances`` (calls of more than one instance seen)."""
    shown = [column for column in COLUMNS if instances or column.name != "instance"]

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
        # The name, as the dashboard shows it; the id when the client has none (deleted, or a
        # gateway from before names), "static" for the configured keys.
        "client": printable(frame.get("client_name") or frame.get("client_id") or "-"),
        "model": printable(model),
        "provider": printable(frame.get("provider") or "-"),
        "instance": printable(frame.get("instance") or "-"),
        "endpoint": _ENDPOINT_NAMES.get(str(frame.get("endpoint") or "chat"), "?"),
        "status": format_status(frame),
        "tokens": f"{compact_int(frame.get('prompt_tokens'))}/"
        f"{compact_int(frame.get('completion_tokens'))}",
        "cost": format_cost(frame.get("cost_usd")),
        "latency": format_latency(frame.get("latency_ms")),
    }


def _row(cells: Mapping[str, str], width: int, instances: bool, colours: Mapping[str, str]) -> str:
    """The cells laid out; a cell named in ``colours`` is painted after it is padded, so colour
    never changes what fits."""
    parts = []
    for column, column_width in layout(width, instances=instances):
        text = clip(cells[column.name], column_width)
        text = text.rjust(column_width) if column.right else text.ljust(column_width)
        colour = colours.get(column.name)
        parts.append(text if colour is None else paint(text, colour))
    return " ".join(parts).rstrip()


def format_header(width: int, *, instances: bool = False, colour: bool = False) -> str:
    """The column titles, laid out as the call lines are (dim when ``colour``)."""
    titles = {column.name: column.title for column in COLUMNS}
    line = _row(titles, width, instances, {})
    return paint(line, DIM) if colour else line


def format_request(
    frame: Frame, width: int, *, instances: bool = False, colour: bool = False
) -> str:
    """One call as one line of at most ``width`` characters (with the instance that served it
    when ``instances``); a failed call's reason follows when there is room. With ``colour`` the
    status (and a failure's reason) are coloured with ANSI codes that take no columns."""
    status = frame.get("status")
    cells = _cells(frame)
    plain = _row(cells, width, instances, {})
    reason = frame.get("error_type") or frame.get("error_message") if status == "error" else None
    room = width - len(plain) - 1
    said = clip(printable(reason), room) if reason and room >= 8 else ""
    if len(plain) > width or not colour:
        # (Only a width below the narrowest layout cuts the line itself: uncoloured then.)
        return clip(plain + (" " + said if said else ""), width)
    line = _row(cells, width, instances, {"status": status_colour(status)})
    return line + (" " + paint(said, RED) if said else "")
