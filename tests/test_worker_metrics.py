"""``GET /metrics`` of ``[server] workers = 2``: whichever worker a scrape reaches answers for
both, each sample labelled ``worker="<n>"`` (issue 18).

A real ``llm-proxy serve`` supervisor with two workers on one port, one database and one Redis;
the calls are spread by the kernel, and one scrape counts every one of them, by worker. A
worker stopped with SIGSTOP (its loop frozen) is left out of the scrapes its sibling answers,
after the sibling's 1 s deadline, and counted; once it runs again it is back.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import httpx
import trio

from tests.fakes.openai_upstream import FakeOpenAI
from tests.process import serve
from tests.test_metrics import Sample, check_histograms, parse, value
from tests.test_sd_notify import path_manager
from tests.test_workers import (
    _LOGGED,
    CALLS,
    call_on_new_connections,
    config_for,
    redis_url,  # noqa: F401 - the fixture
    wait_all_listening,
    worker_pids,
)
from web.metrics import CONTENT_TYPE

# A long systemd watchdog, so that the supervisor gives a frozen worker minutes before it kills
# it (the test needs it frozen, not replaced).
LONG_WATCHDOG = {"WATCHDOG_USEC": "120000000"}


async def scrape(url: str, *, timeout_s: float = 30) -> tuple[dict[str, str], list[Sample]]:
    """One scrape on a connection of its own, its every line checked against the text format."""
    async with httpx.AsyncClient(timeout=timeout_s, trust_env=False) as client:
        answer = await client.get(url + "/metrics")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == CONTENT_TYPE
    return parse(answer.text)  # a family twice (HELP or TYPE) fails here


def calls_by_worker(samples: list[Sample]) -> dict[str, float]:
    counted: dict[str, float] = {}
    for sample in samples:
        if sample.name == "llm_proxy_requests_total":
            worker = sample.labels["worker"]
            counted[worker] = counted.get(worker, 0) + sample.value
    return counted


async def test_one_scrape_counts_every_workers_calls_by_worker(
    fake_openai: FakeOpenAI,
    tmp_path: Path,
    redis_url: str,  # noqa: F811
) -> None:
    config = config_for(tmp_path, fake_openai, redis_url, grace_s=10)
    async with serve(config, tmp_path / "gateway.db", tmp_path) as server:
        await wait_all_listening(server)
        await call_on_new_connections(server.url, CALLS)
        # The loggers account their calls on their own tasks: scrape until every call shows.
        with trio.fail_after(30):
            while True:
                types, samples = await scrape(server.url)
                counted = calls_by_worker(samples)
                if sum(counted.values()) >= CALLS:
                    break
                await trio.sleep(0.1)
        server.send_signal(signal.SIGTERM)
        with trio.fail_after(30):
            assert await server.wait() == 0, server.stderr
            await server.stderr_closed.wait()
    assert sum(counted.values()) == CALLS
    # Each worker's own count, as it said at shutdown: the scrape labelled them rightly.
    logged = {w: int(n) for w, n in _LOGGED.findall(server.stderr)}
    assert counted == logged, (counted, logged)
    assert set(counted) == {"1", "2"}, counted
    assert all(counted.values()), counted
    assert value(samples, "llm_proxy_workers") == 2
    assert value(samples, "llm_proxy_workers_reporting") == 2
    assert types["llm_proxy_workers_reporting"] == "gauge"
    assert types["llm_proxy_requests_total"] == "counter"
    # Every other sample names its worker; both workers' histograms are whole.
    unlabelled = {s.name for s in samples if "worker" not in s.labels}
    assert unlabelled == {"llm_proxy_workers", "llm_proxy_workers_reporting"}
    assert check_histograms(types, samples) >= 4  # duration and ttft, per worker
    assert value(samples, "llm_proxy_build_info", worker="1", version=_version(samples)) == 1
    assert value(samples, "llm_proxy_build_info", worker="2", version=_version(samples)) == 1


def _version(samples: list[Sample]) -> str:
    return next(s.labels["version"] for s in samples if s.name == "llm_proxy_build_info")


async def test_a_frozen_worker_is_skipped_and_counted_and_back_once_it_runs(
    fake_openai: FakeOpenAI,
    tmp_path: Path,
    redis_url: str,  # noqa: F811
) -> None:
    config = config_for(tmp_path, fake_openai, redis_url, grace_s=10)
    async with (
        path_manager(tmp_path) as manager,
        serve(
            config,
            tmp_path / "gateway.db",
            tmp_path,
            env={"NOTIFY_SOCKET": manager.notify_socket, **LONG_WATCHDOG},
        ) as server,
    ):
        await wait_all_listening(server)
        (frozen,) = worker_pids(server)[2]
        os.kill(frozen, signal.SIGSTOP)
        try:
            # A scrape the kernel gives the frozen worker itself never answers: try again on a
            # new connection until worker 1 has one (the kernel picks at random per connection).
            answered = None
            with trio.fail_after(90):
                while answered is None:
                    with trio.move_on_after(8):
                        answered = await scrape(server.url)
            _, samples = answered
            assert value(samples, "llm_proxy_workers") == 2
            assert value(samples, "llm_proxy_workers_reporting") == 1
            assert {s.labels.get("worker") for s in samples} == {"1", None}
            missed = value(
                samples, "llm_proxy_worker_scrapes_missed_total", worker="1", sibling="2"
            )
            assert missed >= 1
            assert (
                "metrics: worker 2 left out of the scrape (no answer within 1.0 s" in server.stderr
            )
        finally:
            os.kill(frozen, signal.SIGCONT)
        # Running again: every scrape has both workers. Only worker 1 says its sibling answers
        # again, and the kernel may give any number of scrapes in a row to worker 2: scrape until
        # worker 1 has had one.
        back = "metrics: worker 2 answers again"
        scrapes = 0
        with trio.fail_after(60):
            while scrapes < 4 or back not in server.stderr:
                _, samples = await scrape(server.url)
                scrapes += 1
                assert value(samples, "llm_proxy_workers_reporting") == 2
                assert {s.labels.get("worker") for s in samples} == {"1", "2", None}
        assert worker_pids(server)[2] == [frozen]  # never killed: the same worker all along
        server.send_signal(signal.SIGTERM)
        with trio.fail_after(30):
            assert await server.wait() == 0, server.stderr


async def counted_when(url: str, calls: int) -> dict[str, float]:
    """Calls counted by worker once both workers report and ``calls`` have been accounted (the
    loggers account on their own tasks)."""
    with trio.fail_after(30):
        while True:
            _, samples = await scrape(url)
            counted = calls_by_worker(samples)
            if (
                value(samples, "llm_proxy_workers_reporting") == 2
                and sum(counted.values()) >= calls
            ):
                return counted
            await trio.sleep(0.1)


async def test_a_restarted_worker_continues_its_series_under_the_same_number(
    fake_openai: FakeOpenAI,
    tmp_path: Path,
    redis_url: str,  # noqa: F811
) -> None:
    config = config_for(tmp_path, fake_openai, redis_url, grace_s=10)
    async with serve(config, tmp_path / "gateway.db", tmp_path) as server:
        await wait_all_listening(server)
        await call_on_new_connections(server.url, 10)
        before = await counted_when(server.url, 10)
        (victim,) = worker_pids(server)[2]
        os.kill(victim, signal.SIGKILL)  # its socket file stays behind, nobody listening
        with trio.fail_after(30):
            await server.wait_for_line("is serving again")
        await call_on_new_connections(server.url, CALLS)
        # Worker 1 keeps what it had; worker 2's series starts again from its successor's.
        after = await counted_when(server.url, before.get("1", 0) + CALLS)
        server.send_signal(signal.SIGTERM)
        with trio.fail_after(30):
            assert await server.wait() == 0, server.stderr
            await server.stderr_closed.wait()
    assert worker_pids(server)[2][1] != victim
    assert sum(after.values()) == before.get("1", 0) + CALLS
    logged = {w: int(n) for w, n in _LOGGED.findall(server.stderr)}
    assert after == logged, (after, logged)  # worker 2's count: its successor's calls
