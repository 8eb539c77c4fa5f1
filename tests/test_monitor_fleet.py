"""``llm-proxy monitor`` on a fleet: once calls of a second instance arrive, every line names the
instance that served it (a single process's lines stay as they were)."""

from __future__ import annotations

from proxy.monitor.call_line import format_header, format_request, layout
from proxy.monitor.feed_view import FeedView
from tests.test_monitor import REQUEST


def test_one_instance_shows_no_instance_column() -> None:
    view = FeedView(120)
    view.on_frame({"type": "hello", "user": "admin", "role": "admin"})
    lines = view.on_frame({**REQUEST, "instance": "web-1:4242"})
    assert lines == [format_request(REQUEST, 120)]
    assert "instance" not in format_header(120)
    assert not view.fleet


def test_a_second_instance_brings_the_column_and_a_header() -> None:
    view = FeedView(120)
    view.on_frame({"type": "hello", "user": "admin", "role": "admin"})
    view.on_frame({**REQUEST, "instance": "web-1:4242"})
    lines = view.on_frame({**REQUEST, "request_id": "req-2", "instance": "web-2:77"})
    assert lines[0] == "-- calls from more than one instance: each line names its instance"
    assert lines[1].split()[:4] == ["time", "client", "model", "provider"]
    assert "instance" in lines[1].split()
    assert "web-2:77" in lines[2].split()
    assert view.fleet
    # From then on, every line names its instance (also the first one's calls), no new header.
    again = view.on_frame({**REQUEST, "request_id": "req-3", "instance": "web-1:4242"})
    assert len(again) == 1
    assert "web-1:4242" in again[0].split()


def test_the_instance_column_goes_before_the_client_in_a_narrow_terminal() -> None:
    wide = [column.name for column, _ in layout(120, instances=True)]
    assert "instance" in wide
    narrow = [column.name for column, _ in layout(60, instances=True)]
    assert "instance" not in narrow
    assert "model" in narrow
    for width in (38, 60, 80, 120):
        line = format_request(
            {**REQUEST, "instance": "a-very-long-instance-name:1"}, width, instances=True
        )
        assert len(line) <= width
