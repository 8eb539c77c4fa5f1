"""An embeddings request's ``input`` as the texts a translating provider embeds, and their cost.

OpenAI's ``input`` is a string, a list of strings, a list of token ids or a list of token-id
lists. Only OpenAI's own models read token ids (they are its tokenizer's), so they pass through to
an OpenAI upstream untouched and every other provider refuses them with a 400 naming ``input``;
the rest is read here into a plain list of texts, each one checked and named on failure.
"""

from __future__ import annotations

from proxy.errors import InvalidRequest

__all__ = ["MAX_EMBEDDING_INPUTS", "estimate_tokens", "texts_of"]

#: OpenAI's own bound on the items of one embeddings ``input`` (its API refuses more).
MAX_EMBEDDING_INPUTS = 2048


def texts_of(input: object, *, provider: str, max_items: int) -> list[str]:
    """The texts of ``input`` in order; a 400 naming ``input`` or ``input[i]`` when it is not a
    non-empty string or a list of 1 to ``max_items`` non-empty strings."""
    if isinstance(input, str):
        if not input:
            raise InvalidRequest("'input' must not be an empty string.", param="input")
        return [input]
    if not isinstance(input, list):
        raise InvalidRequest(
            f"'input' must be a string or an array of strings, not {_kind(input)}.",
            param="input",
        )
    if not input:
        raise InvalidRequest("'input' must not be an empty array.", param="input")
    if _is_token_ids(input[0]) or (isinstance(input[0], list) and _is_token_ids_list(input[0])):
        raise InvalidRequest(
            f"'input' holds token ids: token arrays are served by openai only (they are its "
            f"tokenizer's ids); provider {provider} embeds text: send the text instead.",
            param="input",
        )
    if len(input) > max_items:
        raise InvalidRequest(
            f"'input' has {len(input)} items; at most {max_items} are allowed in one request.",
            param="input",
        )
    for index, item in enumerate(input):
        if isinstance(item, str) and item:
            continue
        param = f"input[{index}]"
        if isinstance(item, str):
            raise InvalidRequest(f"'{param}' must not be an empty string.", param=param)
        if _is_token_ids(item) or (isinstance(item, list) and _is_token_ids_list(item)):
            raise InvalidRequest(
                f"'{param}' is a token array, which is served by openai only; provider "
                f"{provider} embeds text: send the text instead.",
                param=param,
            )
        raise InvalidRequest(f"'{param}' must be a string, not {_kind(item)}.", param=param)
    return list(input)  # every item checked to be a non-empty str above; a copy, not the body


def estimate_tokens(texts: list[str]) -> int:
    """The prompt tokens of ``texts`` for a provider that reports none: a quarter of each text's
    UTF-8 length, rounded up (the rule :mod:`proxy.token_estimate` reserves by)."""
    return sum(-(-len(text.encode()) // 4) for text in texts)


def _is_token_ids(value: object) -> bool:
    """Whether ``value`` is one token id (an int, never a bool, which JSON keeps apart)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _is_token_ids_list(value: list[object]) -> bool:
    """Whether ``value`` is a non-empty list of token ids."""
    return bool(value) and all(_is_token_ids(item) for item in value)


def _kind(value: object) -> str:
    """The JSON name of ``value``'s type, for an error message."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    return type(value).__name__
