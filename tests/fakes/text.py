"""How the fake upstreams cut answers into stream pieces and count tokens (deterministically)."""

from __future__ import annotations

import re
from typing import Any


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


def logprob_of(position: int) -> float:
    """The fakes' log probability of the answer's token at ``position``: the first is certain."""
    return -0.125 * position


def expected_logprobs(tokens: list[str], start: int, top: int) -> list[dict[str, Any]]:
    """OpenAI's ``logprobs.content`` for the fakes' tokens at positions ``start``… (each fake
    offers ``alt1``… as the alternatives, one log unit apart)."""
    out = []
    for i, token in enumerate(tokens, start):
        chosen = {"token": token, "logprob": logprob_of(i), "bytes": list(token.encode())}
        alternatives = [
            {"token": f"alt{j}", "logprob": logprob_of(i) - j, "bytes": list(f"alt{j}".encode())}
            for j in range(1, top)
        ]
        out.append({**chosen, "top_logprobs": [chosen, *alternatives] if top else []})
    return out
