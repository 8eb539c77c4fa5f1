"""The fakes' deterministic embedding vectors: seeded Gaussian directions, float32 components."""

from __future__ import annotations

import hashlib
import math
import random
import struct
from collections.abc import Sequence

__all__ = ["float32", "gaussians", "normalised"]


def gaussians(seed: str, size: int) -> list[float]:
    """`size` standard normal values drawn from a generator seeded by SHA-256 of `seed`: the same
    seed gives the same values on every machine and Python version, and normalised they point in
    a uniformly random direction (so distinct texts give nearly orthogonal vectors)."""
    rng = random.Random(hashlib.sha256(seed.encode()).digest())
    return [rng.gauss(0.0, 1.0) for _ in range(size)]


def normalised(values: Sequence[float]) -> list[float]:
    """`values` scaled to unit length and rounded to float32, as embedding APIs send them."""
    length = math.sqrt(sum(x * x for x in values)) or 1.0
    return float32([x / length for x in values])


def float32(values: Sequence[float]) -> list[float]:
    """Each value rounded to the nearest float32."""
    return list(struct.unpack(f"<{len(values)}f", struct.pack(f"<{len(values)}f", *values)))
