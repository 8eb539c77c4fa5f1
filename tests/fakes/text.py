"""How the fake upstreams cut answers into stream pieces and count tokens (deterministically)."""

from __future__ import annotations

import re


def word_count(text: str) -> int:
    """Deterministic token count: whitespace-separated words."""
    return len(text.split())


def word_pieces(text: str) -> list[str]:
    """Split into one piece per word, each word keeping its leading whitespace (like tokens)."""
    pieces = re.findall(r"\s*\S+", text)
    tail = text[len("".join(pieces)) :]
    if tail:
        if pieces:
            pieces[-1] += tail
        else:
            pieces = [tail]
    return pieces


def split_evenly(text: str, n: int) -> list[str]:
    """Split into `n` near-equal pieces (fewer if the text is shorter); [] for empty text."""
    if not text:
        return []
    n = max(1, min(n, len(text)))
    size, extra = divmod(len(text), n)
    pieces, start = [], 0
    for i in range(n):
        end = start + size + (1 if i < extra else 0)
        pieces.append(text[start:end])
        start = end
    return pieces


def padded_echo(user_text: str, at_least: int) -> list[str]:
    """Word pieces of the echo answer, padded with " more" so there are more than `at_least`."""
    pieces = word_pieces("echo: " + user_text)
    while len(pieces) <= at_least:
        pieces.append(" more")
    return pieces
