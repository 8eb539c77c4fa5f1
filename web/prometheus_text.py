"""Prometheus' text exposition format 0.0.4: families, samples, histograms, escaping."""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Final

__all__ = ["BUCKETS_S", "Exposition", "Histogram", "Labels", "escape_label", "format_value"]

BUCKETS_S: Final = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0)
"""Histogram bounds for LLM calls: a cached short answer to a long reasoning stream."""

Labels = Sequence[tuple[str, str]]


class Histogram:
    """Counts per bucket (not cumulative), their sum and count."""

    __slots__ = ("buckets", "count", "sum")

    def __init__(self) -> None:
        self.buckets = [0] * (len(BUCKETS_S) + 1)  # the last one is +Inf
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        """Count one value (``le`` bounds are inclusive)."""
        self.buckets[bisect.bisect_left(BUCKETS_S, value)] += 1
        self.sum += value
        self.count += 1


class Exposition:
    """Text format 0.0.4: ``# HELP``/``# TYPE`` once per family, then its samples."""

    def __init__(self) -> None:
        self._lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str) -> None:
        """Start a family; its samples must follow."""
        escaped = help_text.replace("\\", "\\\\").replace("\n", "\\n")
        self._lines.append(f"# HELP {name} {escaped}")
        self._lines.append(f"# TYPE {name} {kind}")

    def sample(self, name: str, labels: Labels, value: float) -> None:
        """One ``name{labels} value`` line."""
        if labels:
            inner = ",".join(f'{key}="{escape_label(text)}"' for key, text in labels)
            self._lines.append(f"{name}{{{inner}}} {format_value(value)}")
        else:
            self._lines.append(f"{name} {format_value(value)}")

    def gauge(self, name: str, help_text: str, samples: Iterable[tuple[Labels, float]]) -> None:
        """A gauge family."""
        self.family(name, "gauge", help_text)
        for labels, value in samples:
            self.sample(name, labels, value)

    def counter(self, name: str, help_text: str, samples: Iterable[tuple[Labels, float]]) -> None:
        """A counter family (``name`` ends in ``_total``)."""
        self.family(name, "counter", help_text)
        for labels, value in samples:
            self.sample(name, labels, value)

    def histogram(self, name: str, help_text: str, by_provider: Mapping[str, Histogram]) -> None:
        """A histogram family, one series per provider, buckets cumulative."""
        self.family(name, "histogram", help_text)
        for provider, histogram in sorted(by_provider.items()):
            running = 0
            for bound, count in zip((*BUCKETS_S, math.inf), histogram.buckets, strict=True):
                running += count
                self.sample(
                    f"{name}_bucket", (("provider", provider), ("le", format_value(bound))), running
                )
            self.sample(f"{name}_sum", (("provider", provider),), histogram.sum)
            self.sample(f"{name}_count", (("provider", provider),), histogram.count)

    def text(self) -> str:
        """The whole exposition, ending in a newline."""
        return "\n".join(self._lines) + "\n"


def escape_label(value: str) -> str:
    """A label value escaped per the text format: backslash, double quote, line feed."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def format_value(value: float) -> str:
    """A sample value: integers as such, floats in Go's ``ParseFloat`` syntax."""
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)
