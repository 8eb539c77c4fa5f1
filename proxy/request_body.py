"""A `/v1` request body read as one JSON object with bounded nesting, for every protocol."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec

from proxy.errors import InvalidRequest

MAX_DEPTH = 64

_json_decode = msgspec.json.Decoder().decode


def decode_object(body: bytes) -> dict[str, Any]:
    """The body as a JSON object; an InvalidRequest saying what is wrong with it otherwise."""
    try:
        raw = _json_decode(body)
    except msgspec.DecodeError as exc:
        raise InvalidRequest(f"The request body is not valid JSON: {exc}") from None
    except UnicodeDecodeError:
        raise InvalidRequest("The request body is not valid UTF-8.") from None
    except RecursionError:
        raise _too_deep() from None
    if not isinstance(raw, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    # Nesting needs a bracket per level: a body with few brackets (most) cannot be too deep.
    if body.count(b"[") + body.count(b"{") > MAX_DEPTH and json_depth(raw) > MAX_DEPTH:
        # Deeper JSON is no request of ours, and would exhaust the stack of whoever walks it next.
        raise _too_deep()
    return raw


def _too_deep() -> InvalidRequest:
    return InvalidRequest(f"The request body is nested deeper than {MAX_DEPTH} levels.")


def json_depth(value: object) -> int:
    """How deeply ``value`` nests lists and objects, counted without recursion."""
    deepest = 0
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Iterable[object] = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, depth)
        if deepest > MAX_DEPTH:
            return deepest
        stack.extend((child, depth + 1) for child in children)
    return deepest
