"""``llm-proxy monitor`` on a fleet: once calls of a second instance arrive, every line names the
instance that served it (a single process's lines stay as they were)."""

from __future__ import annotations

import trio

from proxy.monitor.call_line import format_header, format_request, layout
from proxy.monitor.credentials import StaticToken
from proxy.monitor.feed_view import FeedView
from proxy.monitor.watch import watch
from proxy.service import RunningService
from tests.conftest import signed_in
from tests.test_fleet_feed import ask, fleet, fleet_feed_of, until  # noqa: F401 - a fixture
from tests.test_monitor import REQUEST, Lines, ws_url


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


async def test_the_monitor_on_one_instance_shows_the_others_calls(
    fleet: list[RunningService],  # noqa: F811 - the fixture imported above
) -> None:
    a, b = fleet
    out = Lines()
    async with signed_in(a) as client:
        token = client.headers["authorization"].removeprefix("Bearer ")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch, ws_url(a), StaticToken(token), out.emit, FeedView(120))
            await out.wait_for(lambda lines: any("connected as admin" in x for x in lines))
            await until(lambda: fleet_feed_of(b).statistics().audience)
            await ask(a, "served by a")
            await ask(b, "served by b")
            await out.wait_for(lambda lines: any(" b " in x and " mock " in x for x in lines))
            nursery.cancel_scope.cancel()
    assert out.matching("-- calls from more than one instance")
    calls = [line for line in out.lines if " mock " in line]
    assert len(calls) == 2
    assert " a " not in calls[0]  # the first line came before a second instance was seen
    assert " b " in calls[1]
