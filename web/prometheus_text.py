"""Prometheus' text exposition format 0.0.4: families, samples, histograms, escaping; the
families encoded for another worker, and several workers' merged under a ``worker`` label."""

from __future__ import annotations

import bisect
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Final

import msgspec

__all__ = [
    "BUCKETS_S",
    "KINDS",
    "Exposition",
    "Family",
    "Histogram",
    "Labels",
    "Sample",
    "escape_label",
    "format_value",
    "merge_workers",
]

BUCKETS_S: Final = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0)
"""Histogram bounds for LLM calls: a cached short answer to a long reasoning stream."""

KINDS: Final = frozenset({"counter", "gauge", "histogram", "summary", "untyped"})

Labels = Sequence[tuple[str, str]]

_NAME: Final = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME: Final = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


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


class Sample(msgspec.Struct, frozen=True, array_like=True):
    """One ``name{labels} value`` line."""

    name: str
    labels: tuple[tuple[str, str], ...]
    value: int | float


class Family(msgspec.Struct, array_like=True):
    """A metric family: its name, kind and help, then its samples in order."""

    name: str
    kind: str
    help: str
    samples: list[Sample] = msgspec.field(default_factory=list)


class Exposition:
    """Families and their samples, kept as such: written out as text format 0.0.4 (``# HELP``
    and ``# TYPE`` once per family, then its samples), or encoded whole for another worker."""

    def __init__(self, families: Iterable[Family] = ()) -> None:
        self._families = list(families)

    @property
    def families(self) -> Sequence[Family]:
        """The families in the order they were started."""
        return self._families

    def family(self, name: str, kind: str, help_text: str) -> None:
        """Start a family; its samples must follow."""
        self._families.append(Family(name, kind, help_text))

    def sample(self, name: str, labels: Labels, value: float) -> None:
        """One ``name{labels} value`` line, in the family started last."""
        if not self._families:
            raise ValueError(f"sample {name} before any family")
        self._families[-1].samples.append(Sample(name, tuple(labels), value))

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
        lines: list[str] = []
        for family in self._families:
            escaped = family.help.replace("\\", "\\\\").replace("\n", "\\n")
            lines.append(f"# HELP {family.name} {escaped}")
            lines.append(f"# TYPE {family.name} {family.kind}")
            for sample in family.samples:
                lines.append(_sample_line(sample))
        return "\n".join(lines) + "\n"

    def encode(self) -> bytes:
        """The families and samples as msgpack, for a sibling worker to merge (ints stay ints,
        +Inf and NaN survive, which JSON would not give)."""
        return _ENCODER.encode(self._families)

    @classmethod
    def decode(cls, data: bytes) -> Exposition:
        """What :meth:`encode` made; ``ValueError`` for anything else, or a family or label
        name the text format would not take."""
        try:
            families = _DECODER.decode(data)
        except msgspec.DecodeError as exc:
            raise ValueError(f"not an encoded exposition: {exc}") from exc
        for family in families:
            if not _NAME.fullmatch(family.name) or family.kind not in KINDS:
                raise ValueError(f"bad family {family.name!r} of kind {family.kind!r}")
            for sample in family.samples:
                if not _NAME.fullmatch(sample.name) or not all(
                    _LABEL_NAME.fullmatch(key) for key, _ in sample.labels
                ):
                    raise ValueError(f"bad sample {sample.name!r} {sample.labels!r}")
        return cls(families)


def merge_workers(by_worker: Mapping[int, Exposition], *, label: str = "worker") -> Exposition:
    """Several workers' expositions as one: each family once (HELP and TYPE from the first
    worker that has it), every sample labelled ``worker="<n>"``, workers in number order.

    A family a later worker reports with another kind (a worker still running older code) is
    left out for that worker: one family can only have one type.
    """
    merged: dict[str, Family] = {}
    for number, exposition in sorted(by_worker.items()):
        worker = (label, str(number))
        for family in exposition.families:
            into = merged.get(family.name)
            if into is None:
                into = merged[family.name] = Family(family.name, family.kind, family.help)
            elif into.kind != family.kind:
                continue
            into.samples.extend(
                Sample(
                    sample.name,
                    (worker, *(pair for pair in sample.labels if pair[0] != label)),
                    sample.value,
                )
                for sample in family.samples
            )
    return Exposition(merged.values())


def _sample_line(sample: Sample) -> str:
    if sample.labels:
        inner = ",".join(f'{key}="{escape_label(text)}"' for key, text in sample.labels)
        return f"{sample.name}{{{inner}}} {format_value(sample.value)}"
    return f"{sample.name} {format_value(sample.value)}"


_ENCODER: Final = msgspec.msgpack.Encoder()
_DECODER: Final = msgspec.msgpack.Decoder(list[Family])


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
