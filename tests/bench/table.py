"""One table for every benchmark: each figure beside the baseline measured in the same run."""

from __future__ import annotations

import dataclasses
import os
import platform
from collections.abc import Iterable


@dataclasses.dataclass(frozen=True, slots=True)
class Figure:
    """One measured figure: the gateway's, its baseline's, how they compare, and the target."""

    section: str
    metric: str
    gateway: str
    baseline: str = ""  # what was measured alongside, e.g. "0.41 (direct)"
    compare: str = ""  # the ratio or difference the target is about
    target: str = ""
    met: bool | None = None  # None: no target, or not judged

    @property
    def verdict(self) -> str:
        """ "ok", "MISSED" or blank."""
        if self.met is None:
            return ""
        return "ok" if self.met else "MISSED"


_COLUMNS = (
    ("metric", 44),
    ("gateway", 14),
    ("baseline", 24),
    ("compare", 22),
    ("target", 18),
    ("", 6),
)


def machine() -> str:
    """The machine the figures come from, for the table's header."""
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{os.cpu_count()} cores ({model}), Python {platform.python_version()}"


def render(figures: Iterable[Figure]) -> str:
    """The figures as a fixed-width table, grouped by section in the order given."""
    lines = ["".join(f"{title:<{width}}" for title, width in _COLUMNS).rstrip()]
    section = None
    for figure in figures:
        if figure.section != section:
            section = figure.section
            lines.append(
                f"-- {section} " + "-" * max(0, sum(w for _, w in _COLUMNS) - 4 - len(section))
            )
        cells = (
            figure.metric,
            figure.gateway,
            figure.baseline,
            figure.compare,
            figure.target,
            figure.verdict,
        )
        lines.append(
            "".join(
                f"{cell:<{width}}" for cell, (_, width) in zip(cells, _COLUMNS, strict=True)
            ).rstrip()
        )
    return "\n".join(lines)
