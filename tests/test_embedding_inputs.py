"""An embeddings ``input`` read into texts for the translating providers, and its estimate."""

from __future__ import annotations

import pytest

from proxy.embedding_inputs import MAX_EMBEDDING_INPUTS, estimate_tokens, texts_of
from proxy.errors import InvalidRequest


def refused(value: object, *, max_items: int = 8) -> InvalidRequest:
    """The 400 ``texts_of`` raises for ``value``."""
    with pytest.raises(InvalidRequest) as caught:
        texts_of(value, provider="gemini", max_items=max_items)
    assert caught.value.status == 400
    return caught.value


def test_a_string_is_one_text_and_a_list_keeps_its_order() -> None:
    assert texts_of("hello", provider="gemini", max_items=8) == ["hello"]
    assert texts_of(["b", "a", " "], provider="ollama", max_items=3) == ["b", "a", " "]


def test_openai_bound_is_the_default_limit() -> None:
    assert MAX_EMBEDDING_INPUTS == 2048
    many = [f"t{i}" for i in range(MAX_EMBEDDING_INPUTS)]
    assert texts_of(many, provider="gemini", max_items=MAX_EMBEDDING_INPUTS) == many


@pytest.mark.parametrize("tokens", [[1, 2, 3], [[1, 2], [3]], [0]])
def test_token_arrays_are_openai_only(tokens: object) -> None:
    error = refused(tokens)
    assert error.param == "input"
    assert "token arrays are served by openai only" in error.message
    assert "gemini" in error.message


def test_a_token_array_among_strings_names_its_index() -> None:
    error = refused(["text", [101, 102]])
    assert error.param == "input[1]"
    assert "token array" in error.message


def test_token_arrays_are_named_before_the_count() -> None:
    # A long token array is a token array, not "too many items".
    assert "token arrays" in refused(list(range(100)), max_items=8).message


def test_empty_inputs_are_refused() -> None:
    assert refused("").param == "input"
    assert refused([]).param == "input"
    error = refused(["a", ""])
    assert (error.param, error.message) == ("input[1]", "'input[1]' must not be an empty string.")


def test_more_than_max_items_is_refused_naming_the_bound() -> None:
    error = refused(["x"] * 9, max_items=8)
    assert error.param == "input"
    assert "9 items" in error.message
    assert "at most 8" in error.message


@pytest.mark.parametrize(
    ("value", "kind"),
    [(None, "null"), (3.5, "a number"), ({"text": "x"}, "an object"), (True, "a boolean")],
)
def test_other_types_are_refused_naming_input(value: object, kind: str) -> None:
    error = refused(value)
    assert error.param == "input"
    assert kind in error.message


@pytest.mark.parametrize(
    ("item", "kind"), [(None, "null"), (True, "a boolean"), ({"a": 1}, "an object"), ([], "array")]
)
def test_a_non_string_item_is_named_by_index(item: object, kind: str) -> None:
    error = refused(["ok", "fine", item])
    assert error.param == "input[2]"
    assert kind in error.message


def test_error_shape_is_openai_s() -> None:
    body = refused(["a", 7]).to_body()
    assert b'"type":"invalid_request_error"' in body
    assert b'"param":"input[1]"' in body


def test_estimate_is_a_quarter_of_each_text_s_bytes_rounded_up() -> None:
    assert estimate_tokens(["abcd"]) == 1
    assert estimate_tokens(["abcde"]) == 2
    assert estimate_tokens(["a", "b", "c"]) == 3  # each text costs at least one token
    assert estimate_tokens(["é" * 4]) == 2  # bytes, not characters: 8 bytes
    assert estimate_tokens([]) == 0
