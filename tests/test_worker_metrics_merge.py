"""The pieces of one scrape for every worker: an exposition encoded for a sibling, several
merged under a ``worker`` label, and the siblings' sockets asked with a deadline."""

from __future__ import annotations

import math
import os
import socket
import stat
from pathlib import Path

import msgspec
import pytest
import trio

from proxy.errors import StartupError
from proxy.worker_place import WorkerPlace
from tests.test_metrics import check_histograms, parse, value
from web.metrics_socket import MetricsSocket, MetricsSocketStatistics
from web.prometheus_text import Exposition, Histogram, merge_workers
from web.sibling_metrics import SiblingMetrics


def calls(count: int, *, latency_s: float = 0.2) -> Exposition:
    out = Exposition()
    out.counter(
        "llm_proxy_requests_total",
        'Calls "logged".\nBy provider.',
        [((("provider", "openai"), ("status", "ok")), count)],
    )
    histogram = Histogram()
    for _ in range(count):
        histogram.observe(latency_s)
    out.histogram("llm_proxy_request_duration_seconds", "Durations.", {"openai": histogram})
    out.gauge("llm_proxy_uptime_seconds", "Seconds up.", [((), 12.5)])
    return out


def test_an_encoded_exposition_decodes_to_the_same_text() -> None:
    out = calls(3)
    out.gauge("odd_values", "Infinities and NaN survive.", [((), math.inf), ((("a", "b"),), -0.5)])
    out.gauge("not_a_number", "NaN.", [((), math.nan)])
    again = Exposition.decode(out.encode())
    assert again.text() == out.text()
    assert 'llm_proxy_requests_total{provider="openai",status="ok"} 3\n' in again.text()
    assert "odd_values +Inf\n" in again.text()
    assert "not_a_number NaN\n" in again.text()


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"garbage",
        msgspec.msgpack.encode([["bad name", "gauge", "h", []]]),
        msgspec.msgpack.encode([["ok", "nonsense", "h", []]]),
        msgspec.msgpack.encode([["ok", "gauge", "h", [["ok", [["bad-label", "v"]], 1]]]]),
        msgspec.msgpack.encode([["ok", "gauge", "h", [["ok", [], "1"]]]]),
    ],
)
def test_anything_else_is_refused_as_a_value_error(data: bytes) -> None:
    with pytest.raises(ValueError, match=r"^(not an encoded exposition|bad family|bad sample)"):
        Exposition.decode(data)


def test_merged_workers_have_each_family_once_and_every_sample_labelled() -> None:
    one, two = calls(3), calls(5, latency_s=3.0)
    two.gauge("llm_proxy_only_on_two", "A family one worker has.", [((), 1)])
    merged = merge_workers({2: two, 1: one}).text()
    types, samples = parse(merged)  # HELP/TYPE once per family, each family contiguous
    assert types == {
        "llm_proxy_requests_total": "counter",
        "llm_proxy_request_duration_seconds": "histogram",
        "llm_proxy_uptime_seconds": "gauge",
        "llm_proxy_only_on_two": "gauge",
    }
    assert check_histograms(types, samples) == 2  # one series per worker
    assert all(sample.labels["worker"] in {"1", "2"} for sample in samples)
    ok = {"provider": "openai", "status": "ok"}
    assert value(samples, "llm_proxy_requests_total", worker="1", **ok) == 3
    assert value(samples, "llm_proxy_requests_total", worker="2", **ok) == 5
    assert value(samples, "llm_proxy_only_on_two", worker="2") == 1
    assert (
        value(
            samples,
            "llm_proxy_request_duration_seconds_bucket",
            worker="2",
            provider="openai",
            le="2.5",
        )
        == 0
    )
    # Worker 1's samples first, each series' lines together; HELP escaped as before.
    assert merged.index('worker="1"') < merged.index('worker="2"')
    assert '# HELP llm_proxy_requests_total Calls "logged".\\nBy provider.\n' in merged


def test_a_family_of_another_kind_is_left_out_for_that_worker() -> None:
    one, two = Exposition(), Exposition()
    one.gauge("llm_proxy_thing", "A gauge here.", [((), 1)])
    two.counter("llm_proxy_thing", "A counter there.", [((), 7)])
    types, samples = parse(merge_workers({1: one, 2: two}).text())
    assert types == {"llm_proxy_thing": "gauge"}
    assert [(s.labels, s.value) for s in samples] == [({"worker": "1"}, 1)]


def test_a_worker_label_already_there_is_replaced_not_doubled() -> None:
    one = Exposition()
    one.gauge("llm_proxy_thing", "Odd.", [((("worker", "x"), ("a", "b")), 1)])
    _, samples = parse(merge_workers({1: one}).text())
    assert [s.labels for s in samples] == [{"worker": "1", "a": "b"}]


async def serving(
    nursery: trio.Nursery, place: WorkerPlace, number: int, exposition: Exposition
) -> MetricsSocket:
    async def render() -> Exposition:
        return exposition

    server = MetricsSocket(place.socket_path(number), render)
    await nursery.start(server.run)
    return server


async def test_one_scrape_gathers_every_sibling_and_says_who_is_missing(tmp_path: Path) -> None:
    place = WorkerPlace(1, 3, str(tmp_path))
    async with trio.open_nursery() as nursery:
        two = await serving(nursery, place, 2, calls(5))
        mode = stat.S_IMODE(os.stat(place.socket_path(2)).st_mode)
        assert mode == 0o600
        # Worker 3 is restarting: no socket at all.
        siblings = SiblingMetrics(place, deadline_s=5)
        types, samples = parse(await siblings.page(lambda: calls(3)))
        assert types["llm_proxy_workers"] == types["llm_proxy_workers_reporting"] == "gauge"
        assert value(samples, "llm_proxy_workers") == 3
        assert value(samples, "llm_proxy_workers_reporting") == 2
        ok = {"provider": "openai", "status": "ok"}
        assert value(samples, "llm_proxy_requests_total", worker="1", **ok) == 3
        assert value(samples, "llm_proxy_requests_total", worker="2", **ok) == 5
        assert value(samples, "llm_proxy_worker_scrapes_missed_total", worker="1", sibling="3") == 1
        assert value(samples, "llm_proxy_worker_scrapes_missed_total", worker="1", sibling="2") == 0
        assert siblings.statistics().missing == {2: 0, 3: 1}
        assert two.statistics().answered == 1
        two.close()
    assert not os.path.exists(place.socket_path(2))


async def test_a_sibling_that_never_answers_is_skipped_at_the_deadline(tmp_path: Path) -> None:
    place = WorkerPlace(2, 2, str(tmp_path))
    hung = trio.Event()

    async def never() -> Exposition:
        await hung.wait()
        raise AssertionError("unreachable")

    async with trio.open_nursery() as nursery:
        await nursery.start(MetricsSocket(place.socket_path(1), never).run)
        siblings = SiblingMetrics(place, deadline_s=0.5)
        # The real clock (the merge runs in a thread): the sibling never answers, the scrape
        # is answered all the same.
        with trio.fail_after(30):
            _, samples = parse(await siblings.page(lambda: calls(4)))
        assert value(samples, "llm_proxy_workers_reporting") == 1
        assert value(samples, "llm_proxy_workers") == 2
        assert {s.labels.get("worker") for s in samples} == {"2", None}
        nursery.cancel_scope.cancel()


async def test_a_dead_workers_socket_file_is_replaced_when_it_starts_again(tmp_path: Path) -> None:
    place = WorkerPlace(1, 2, str(tmp_path))
    Path(place.socket_path(2)).write_bytes(b"")  # what a SIGKILLed predecessor leaves
    siblings = SiblingMetrics(place, deadline_s=5)
    _, samples = parse(await siblings.page(lambda: calls(1)))
    assert value(samples, "llm_proxy_workers_reporting") == 1
    async with trio.open_nursery() as nursery:
        await serving(nursery, place, 2, calls(2))
        _, samples = parse(await siblings.page(lambda: calls(1)))
        assert value(samples, "llm_proxy_workers_reporting") == 2
        nursery.cancel_scope.cancel()


async def test_the_socket_answers_a_few_at_once_and_the_rest_in_turn(tmp_path: Path) -> None:
    place = WorkerPlace(1, 2, str(tmp_path))
    gate = trio.Event()
    rendering = 0
    most = 0

    async def slow() -> Exposition:
        nonlocal rendering, most
        rendering += 1
        most = max(most, rendering)
        await gate.wait()
        rendering -= 1
        return calls(1)

    async with trio.open_nursery() as nursery:
        server = MetricsSocket(place.socket_path(2), slow)
        await nursery.start(server.run)
        results: list[int] = []

        async def scrape() -> None:
            siblings = SiblingMetrics(place, deadline_s=10)
            _, samples = parse(await siblings.page(lambda: calls(1)))
            results.append(int(value(samples, "llm_proxy_workers_reporting")))

        async with trio.open_nursery() as scrapes:
            for _ in range(10):
                scrapes.start_soon(scrape)
            with trio.fail_after(10):
                while most < 4:
                    await trio.sleep(0.01)
            await trio.sleep(0.2)  # time for a fifth, which must not come
            assert most == 4  # MAX_CONNECTIONS: the others wait in the backlog
            gate.set()
        assert results == [2] * 10
        assert server.statistics().answered == 10
        server.close()


async def test_a_sibling_answering_garbage_is_left_out_counted_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    place = WorkerPlace(1, 2, str(tmp_path))
    with trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as raw:
        await raw.bind(place.socket_path(2))
        raw.listen(1)
        listener = trio.SocketListener(raw)

        async def garbage_once() -> None:
            stream = await listener.accept()
            async with stream:
                await stream.send_all(b"\x93not an exposition")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(garbage_once)
            siblings = SiblingMetrics(place, deadline_s=5)
            _, samples = parse(await siblings.page(lambda: calls(1)))
    assert value(samples, "llm_proxy_workers_reporting") == 1
    assert value(samples, "llm_proxy_worker_scrapes_missed_total", worker="1", sibling="2") == 1
    assert any("worker 2 sent a bad answer" in r.getMessage() for r in caplog.records)


async def test_a_socket_that_cannot_be_bound_is_a_startup_error(tmp_path: Path) -> None:
    async def render() -> Exposition:
        return calls(1)

    server = MetricsSocket(str(tmp_path / "gone" / "metrics-1.sock"), render)
    with pytest.raises(StartupError, match="cannot serve this worker's metrics to the others on"):
        await server.run()


async def test_a_failing_render_is_logged_and_the_socket_serves_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    place = WorkerPlace(1, 2, str(tmp_path))
    failures = [RuntimeError("a part's statistics broke")]

    async def render() -> Exposition:
        if failures:
            raise failures.pop()
        return calls(2)

    async with trio.open_nursery() as nursery:
        server = MetricsSocket(place.socket_path(2), render)
        await nursery.start(server.run)
        siblings = SiblingMetrics(place, deadline_s=5)
        _, samples = parse(await siblings.page(lambda: calls(1)))
        assert value(samples, "llm_proxy_workers_reporting") == 1
        _, samples = parse(await siblings.page(lambda: calls(1)))
        assert value(samples, "llm_proxy_workers_reporting") == 2
        assert server.statistics() == MetricsSocketStatistics(answered=1, failed=1)
        server.close()
    assert any("could not render this worker's metrics" in r.getMessage() for r in caplog.records)
