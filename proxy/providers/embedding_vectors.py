"""The checks every translated embeddings answer passes before a client sees its vectors.

A retrieval application stores what it is given: a vector missing, of another length than asked,
or one answer's vectors of different lengths would corrupt its index without an error. So an
answer is used only when it has one non-empty vector per text, all of one length, and that length
is the ``dimensions`` asked for; anything else is the upstream's failure (502), said precisely.
"""

from __future__ import annotations

import math

from proxy.errors import UpstreamError
from proxy.providers.base import malformed

__all__ = ["checked_vectors", "unit_length"]


def checked_vectors(
    vectors: list[list[float]], *, provider: str, count: int, dimensions: int | None
) -> list[list[float]]:
    """``vectors`` when they are ``count`` non-empty vectors of one length (``dimensions`` when
    given); UpstreamError otherwise."""
    if len(vectors) != count:
        raise malformed(provider, "embeddings answer", f"{len(vectors)} vectors for {count} inputs")
    if not vectors:
        return vectors
    length = len(vectors[0])
    for index, vector in enumerate(vectors):
        if not vector:
            raise malformed(provider, "embeddings answer", f"vector {index} is empty")
        if len(vector) != length:
            raise malformed(
                provider,
                "embeddings answer",
                f"vector {index} has {len(vector)} values where vector 0 has {length}",
            )
    if dimensions is not None and length != dimensions:
        # An upstream (or model) that ignores the setting: the client's index expects the size
        # it asked for, so the vectors are refused rather than stored at the wrong size.
        raise UpstreamError(
            f"Upstream {provider} answered vectors of {length} dimensions where {dimensions} "
            "were asked; this model may not support 'dimensions'.",
            code="upstream_dimensions_mismatch",
        )
    return vectors


def unit_length(vector: list[float]) -> list[float]:
    """``vector`` scaled to length 1 (as OpenAI's are); a zero vector is returned as it is."""
    norm = math.sqrt(math.fsum(value * value for value in vector))
    if norm == 0.0 or not math.isfinite(norm):
        return vector
    return [value / norm for value in vector]
