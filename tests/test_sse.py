"""The SSE codec: every framing an upstream uses, split at every byte boundary."""

from __future__ import annotations

import pytest

from proxy.sse import DONE, Event, SSEDecoder, SSEError, encode_event

OPENAI = b'data: {"a":1}\n\ndata: {"b":2}\n\ndata: [DONE]\n\n'
GEMINI = b'data: {"a":1}\r\n\r\ndata: {"b":2}\r\n\r\n'
DEEPSEEK = b': keep-alive\n\n\n\ndata: {"a":1}\n\n: keep-alive\n\ndata: {"b":2}\n\n'


def decode_in_pieces(raw: bytes, size: int) -> list[Event]:
    decoder = SSEDecoder()
    events: list[Event] = []
    for start in range(0, len(raw), size):
        events.extend(decoder.feed(raw[start : start + size]))
    assert decoder.close()
    return events


@pytest.mark.parametrize("raw", [OPENAI, GEMINI, DEEPSEEK])
def test_same_events_whatever_the_read_sizes(raw: bytes) -> None:
    whole = decode_in_pieces(raw, len(raw))
    assert [event.data for event in whole][:2] == ['{"a":1}', '{"b":2}']
    for size in range(1, 12):
        assert decode_in_pieces(raw, size) == whole


def test_crlf_split_across_reads_is_one_line_end() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: x\r") == []
    assert decoder.feed(b"\n\r\n") == [Event("x")]


def test_multiline_data_and_event_name() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"event: error\ndata: a\ndata:b\n\n") == [Event("a\nb", "error")]


def test_comments_and_padding_produce_no_events() -> None:
    assert SSEDecoder().feed(b": keep-alive\n\n\n\n:\n\n") == []


def test_unterminated_event_is_not_a_clean_end() -> None:
    decoder = SSEDecoder()
    decoder.feed(b"data: half")
    assert not decoder.close()


def test_endless_line_is_refused() -> None:
    decoder = SSEDecoder(max_line_bytes=1000)
    for _ in range(10):
        decoder.feed(b"x" * 100)
    with pytest.raises(SSEError):
        decoder.feed(b"x" * 100)


def test_invalid_utf8_is_refused() -> None:
    with pytest.raises(SSEError):
        SSEDecoder().feed(b"data: \xff\xfe\n\n")


@pytest.mark.parametrize("bad", [b"data: \xff\xfe\n\n", b"x" * 2000])
def test_events_before_a_bad_line_in_the_same_read_are_returned_first(bad: bytes) -> None:
    # The error is held, not lost: the decoder keeps it in ``failure`` and raises it next time.
    decoder = SSEDecoder(max_line_bytes=1000)
    events = decoder.feed(b"data: one\n\ndata: two\n\n" + bad)
    assert [e.data for e in events] == ["one", "two"]
    assert isinstance(decoder.failure, SSEError)
    with pytest.raises(SSEError):
        decoder.feed(b"data: three\n\n")


def test_encoder() -> None:
    assert encode_event(b'{"a":1}') == b'data: {"a":1}\n\n'
    assert DONE == b"data: [DONE]\n\n"


@pytest.mark.parametrize(
    "chunk",
    [
        b'data: {"a":1}\n\n',
        b'data:{"a":1}\n\n',
        b"data: \n\n",
        b"data: [DONE]\n\n",
        b'data: {"a":1}\n\ndata: {"b":2}\n\n',  # two events: not single
        b'data: {"a":1}\r\n\r\n',  # CRLF: not single
        b'event: x\ndata: {"a":1}\n\n',
        b": keep-alive\n\n",
        b'data: {"a":1}\n',  # unterminated
        b'data: "\xff"\n\n',  # not UTF-8: feed() refuses it
    ],
)
def test_the_single_event_shortcut_agrees_with_feed(chunk: bytes) -> None:
    single = SSEDecoder().single_data_event(chunk)
    try:
        fed = SSEDecoder().feed(chunk)
    except SSEError:
        assert single is None
        return
    if single is not None:
        assert fed == [Event(single.decode())]


def test_the_single_event_shortcut_waits_for_a_pending_line() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: {") == []
    assert decoder.single_data_event(b'data: {"a":1}\n\n') is None
