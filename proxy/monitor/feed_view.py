"""The feed's frames as the lines the terminal shows, with the running totals of the calls seen.

Pure, like ``call_line``: :class:`FeedView` turns each frame into lines and keeps the totals;
``watch`` is the trio loop around it and prints what it returns.
"""

from __future__ import annotations

import dataclasses
from typing import Final

from proxy.monitor.call_line import Frame, format_cost, format_header, format_request
from proxy.monitor.money import usd
from proxy.monitor.text import clip, printable

DEFAULT_WIDTH: Final = 120
TOTALS_EVERY: Final = 10
# The feed sends metrics right after calls as well as every 5 s: totals printed on a metrics
# frame at most this often, or a slow trickle of calls would print a totals line after each.
TOTALS_ON_METRICS_MS: Final = 4_500


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
    cost = usd(totals.cost_usd)
    if totals.unpriced:
        cost += f" (+{totals.unpriced} unpriced)"
    parts.append(cost)
    return clip("-- totals: " + ", ".join(parts), width)


class FeedView:
    """Turns feed frames into terminal lines, keeping the running totals.

    Totals are shown after every ``totals_every`` calls, and on a ``metrics`` frame when calls
    arrived since they were last shown and a few seconds have passed since a metrics frame last
    showed them, so a short burst is summed up too.
    """

    def __init__(
        self, width: int = DEFAULT_WIDTH, *, totals_every: int = TOTALS_EVERY, colour: bool = False
    ) -> None:
        self.width = width
        self._colour = colour  # ANSI colours: only for a terminal (``colour.use_colour``)
        self.totals = Totals()
        self._totals_every = totals_every
        self._since_totals = 0
        self._metrics_totals_ms: int | None = (
            None  # ts_ms of the metrics frame that last showed them
        )
        self._dropped = 0
        self._header_shown = False
        # The instances whose calls arrived; from the second one on, lines name the instance.
        self._instances: set[str] = set()

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
                    lines.append(format_header(width, colour=self._colour))
                return [clip(line, width) for line in lines]
            case "request":
                self.totals.add(frame)
                self._since_totals += 1
                lines = self._new_instance(frame, width)
                lines.append(
                    format_request(frame, width, instances=self.fleet, colour=self._colour)
                )
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
                if self._since_totals and self._totals_due(frame.get("ts_ms")):
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

    @property
    def fleet(self) -> bool:
        """Whether calls of more than one instance have been seen (lines name the instance)."""
        return len(self._instances) > 1

    def _new_instance(self, frame: Frame, width: int) -> list[str]:
        """The header again, now with the instance column, when a second instance shows up."""
        instance = frame.get("instance")
        if not isinstance(instance, str) or instance in self._instances:
            return []
        self._instances.add(instance)
        if len(self._instances) != 2:
            return []
        return [
            clip("-- calls from more than one instance: each line names its instance", width),
            format_header(width, instances=True, colour=self._colour),
        ]

    def _totals_due(self, ts_ms: object) -> bool:
        if not isinstance(ts_ms, int):
            return True
        last = self._metrics_totals_ms
        if last is not None and ts_ms - last < TOTALS_ON_METRICS_MS:
            return False
        self._metrics_totals_ms = ts_ms
        return True

    def totals_line(self) -> str:
        """The totals now (and restart the every-N count)."""
        self._since_totals = 0
        return format_totals(self.totals, max(self.width, 20))
