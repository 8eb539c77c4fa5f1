"""``[server] workers = 2``: a real ``llm-proxy serve`` supervisor and its two worker processes on
one port, one database and one Redis (issue 18).

Both workers serve (each says how many calls it logged); one SIGTERM stops them all gracefully
(a stream in flight finishes, every call is stored, exit 0); a second cuts them short (143); a
killed or hung worker is restarted; systemd hears READY once, watchdog pings and STOPPING.
"""

from __future__ import annotations

import os
import re
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import trio

from tests.fakes.openai_upstream import DEFAULT_API_KEY, Echo, FakeOpenAI
from tests.process import CLI, ServerProcess, clean_env, read_rows, serve, write_config
from tests.redis_server import running_redis
from tests.test_process_lifecycle import (
    AUTH,
    EXPECTED,
    assert_clean_log,
    assert_wal_checkpointed,
    chat_body,
    stream_chat,
)
from tests.test_sd_notify import path_manager, wait_ready

WORKERS = 2
CALLS = 40
_STARTED = re.compile(r"worker (\d+) started \(pid (\d+)\)")
_LOGGED = re.compile(r"worker=(\d+) calls logged since start: (\d+)")


@pytest.fixture
def redis_url() -> Iterator[str]:
    with running_redis() as url:
        yield url


def config_for(tmp_path: Path, fake: FakeOpenAI, redis_url: str, *, grace_s: float) -> Path:
    return write_config(
        tmp_path / "config.toml",
        upstream_url=fake.base_url,
        upstream_key=DEFAULT_API_KEY,
        graceful_timeout_s=grace_s,
        workers=WORKERS,
        redis_url=redis_url,
    )


async def stopped(pid: int) -> None:
    """Until ``pid`` is stopped: SIGSTOP takes effect on its way back to user space, and a signal
    sent before that would be taken then, not left pending."""
    stat = Path(f"/proc/{pid}/stat")
    # The state follows the parenthesised command name, which may itself hold spaces.
    while stat.read_text().rpartition(")")[2].split()[0] != "T":
        await trio.sleep(0.01)


def worker_pids(server: ServerProcess) -> dict[int, list[int]]:
    """Each worker number's pids, in the order the supervisor started them."""
    pids: dict[int, list[int]] = {}
    for match in _STARTED.finditer(server.stderr):
        pids.setdefault(int(match.group(1)), []).append(int(match.group(2)))
    return pids


async def wait_all_listening(server: ServerProcess) -> None:
    with trio.fail_after(60):
        await server.wait_for_line(f"{WORKERS} workers listening on http://")


async def call_on_new_connections(url: str, count: int) -> list[str]:
    """``count`` calls, each on a connection of its own (the kernel picks the worker per
    connection); their request ids."""
    ids: list[str] = []
    async with httpx.AsyncClient(
        base_url=url,
        headers=AUTH,
        timeout=15,
        trust_env=False,
        limits=httpx.Limits(max_keepalive_connections=0),
    ) as client:
        for _ in range(count):
            response = await client.post("/v1/chat/completions", json=chat_body(stream=False))
            assert response.status_code == 200, response.text
            assert response.json()["choices"][0]["message"]["content"] == EXPECTED
            ids.append(response.headers["x-request-id"])
    return ids


async def test_two_workers_share_the_calls_and_stop_together_on_one_sigterm(
    fake_openai: FakeOpenAI, tmp_path: Path, redis_url: str
) -> None:
    config = config_for(tmp_path, fake_openai, redis_url, grace_s=15)
    database = tmp_path / "gateway.db"
    async with serve(config, database, tmp_path) as server:
        await wait_all_listening(server)
        ids = await call_on_new_connections(server.url, CALLS)
        fake_openai.enqueue(Echo(chunks=20, chunk_interval_s=0.1))  # ≈ 2 s
        first = trio.Event()
        streamed = []
        async with (
            httpx.AsyncClient(base_url=server.url, headers=AUTH, timeout=15) as client,
            trio.open_nursery() as nursery,
        ):

            async def one_stream() -> None:
                streamed.append(await stream_chat(client, first.set))

            nursery.start_soon(one_stream)
            with trio.fail_after(10):
                await first.wait()
            server.send_signal(signal.SIGTERM)
        with trio.fail_after(30):
            status = await server.wait()
            await server.stderr_closed.wait()
    assert status == 0, server.stderr
    (seen,) = streamed
    assert seen.status == 200, seen
    assert seen.done, seen
    assert seen.content == EXPECTED, seen
    assert_clean_log(server)
    assert_wal_checkpointed(database)
    pids = worker_pids(server)
    assert sorted(pids) == [1, 2], server.stderr
    assert len({pid for started in pids.values() for pid in started}) == WORKERS
    logged = {int(w): int(n) for w, n in _LOGGED.findall(server.stderr)}
    # Both processes served; together, every call once.
    assert set(logged) == {1, 2}, server.stderr
    assert all(count > 0 for count in logged.values()), logged
    assert sum(logged.values()) == CALLS + 1
    rows = read_rows(database)
    assert set(rows) == {*ids, seen.request_id}
    assert server.stderr.count("first start: created user 'admin'") == 1
    assert server.stderr.count("database migrated to schema version 1\n") == 1


async def test_a_second_sigterm_cuts_the_workers_short(
    fake_openai: FakeOpenAI, tmp_path: Path, redis_url: str
) -> None:
    config = config_for(tmp_path, fake_openai, redis_url, grace_s=60)
    database = tmp_path / "gateway.db"
    # 300 one-character chunks a tenth of a second apart: 30 s, longer than the supervisor's own
    # hard stop (10 s), so only the workers cutting the call themselves gets it logged.
    fake_openai.enqueue(Echo(text="x" * 300, chunks=300, chunk_interval_s=0.1))
    async with serve(config, database, tmp_path) as server:
        await wait_all_listening(server)
        workers = [pid for pids in worker_pids(server).values() for pid in pids]
        first = trio.Event()
        streamed = []
        async with (
            httpx.AsyncClient(base_url=server.url, headers=AUTH, timeout=60) as client,
            trio.open_nursery() as nursery,
        ):

            async def one_stream() -> None:
                streamed.append(await stream_chat(client, first.set))

            nursery.start_soon(one_stream)
            with trio.fail_after(10):
                await first.wait()
            # Both of the supervisor's signals reach the workers before either runs (as when a
            # loaded worker is slow to handle the first): the second must still count as one.
            for pid in workers:
                os.kill(pid, signal.SIGSTOP)
            with trio.fail_after(10):
                for pid in workers:
                    await stopped(pid)
            server.send_signal(signal.SIGTERM)
            with trio.fail_after(10):
                await server.wait_for_line("stopping 2 workers")
            server.send_signal(signal.SIGTERM)
            with trio.fail_after(10):
                await server.wait_for_line("second signal (SIGTERM)")
            for pid in workers:
                os.kill(pid, signal.SIGCONT)
            with trio.fail_after(20):
                status = await server.wait()
    assert status == 128 + signal.SIGTERM, server.stderr
    (seen,) = streamed
    assert not seen.done, seen  # cut, not finished
    rows = read_rows(database)
    assert seen.request_id in rows  # cut by its worker, and still logged
    assert "exiting without waiting any longer" not in server.stderr, server.stderr
    assert "Traceback" not in server.stderr, server.stderr


async def test_a_killed_worker_is_restarted(
    fake_openai: FakeOpenAI, tmp_path: Path, redis_url: str
) -> None:
    config = config_for(tmp_path, fake_openai, redis_url, grace_s=10)
    database = tmp_path / "gateway.db"
    async with serve(config, database, tmp_path) as server:
        await wait_all_listening(server)
        (victim,) = worker_pids(server)[2]
        os.kill(victim, signal.SIGKILL)
        with trio.fail_after(30):
            await server.wait_for_line(
                f"worker 2 (pid {victim}) exited with signal SIGKILL; restarting it in 1 s"
            )
            await server.wait_for_line("worker 2 (pid")  # its successor says it serves
            await server.wait_for_line("is serving again")
        assert len(worker_pids(server)[2]) == 2
        ids = await call_on_new_connections(server.url, 10)
        server.send_signal(signal.SIGTERM)
        with trio.fail_after(30):
            assert await server.wait() == 0, server.stderr
    assert set(ids) <= set(read_rows(database))


async def test_a_taken_port_is_the_only_thing_said(
    fake_openai: FakeOpenAI, tmp_path: Path, redis_url: str
) -> None:
    config = config_for(tmp_path, fake_openai, redis_url, grace_s=5)
    database = tmp_path / "gateway.db"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = await trio.run_process(
            [
                *CLI,
                "serve",
                "--config",
                str(config),
                "--port",
                str(port),
                "--database",
                str(database),
            ],
            cwd=tmp_path,
            env=clean_env(),
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    stderr = process.stderr.decode()
    assert process.returncode == 1, stderr
    assert f"cannot start: cannot listen on 127.0.0.1:{port}" in stderr
    assert "worker" not in stderr, stderr  # nothing started
    assert not database.exists()


async def test_systemd_hears_ready_once_pings_and_stopping_and_a_hung_worker_is_restarted(
    fake_openai: FakeOpenAI, tmp_path: Path, redis_url: str
) -> None:
    config = config_for(tmp_path, fake_openai, redis_url, grace_s=5)
    database = tmp_path / "gateway.db"
    async with path_manager(tmp_path) as manager:
        env = {"NOTIFY_SOCKET": manager.notify_socket, "WATCHDOG_USEC": "6000000"}
        async with serve(config, database, tmp_path, env=env) as server:
            ready = await wait_ready(manager, server)
            assert ready["READY"] == "1"
            assert ready["STATUS"] == f"2 workers listening on {server.url}", ready
            with trio.fail_after(30):
                await manager.wait_for("WATCHDOG", count=2)
            # A worker whose loop hangs stops pinging: it is killed and replaced.
            (hung,) = worker_pids(server)[1]
            os.kill(hung, signal.SIGSTOP)
            with trio.fail_after(30):
                await server.wait_for_line(f"worker 1 (pid {hung}) sent no watchdog ping")
                await server.wait_for_line(f"worker 1 (pid {hung}) exited with signal SIGKILL")
                await server.wait_for_line("is serving again")
                # systemctl status said so meanwhile, and says all serve again.
                await manager.wait_for("STATUS", count=3)
            statuses = [m["STATUS"] for m in manager.messages if "STATUS" in m]
            assert statuses[1:3] == [
                f"1 of 2 workers listening on {server.url}",
                f"2 workers listening on {server.url}",
            ], statuses
            pings = manager.count("WATCHDOG")
            with trio.fail_after(30):
                await manager.wait_for("WATCHDOG", count=pings + 2)
            server.send_signal(signal.SIGTERM)
            with trio.fail_after(30):
                stopping = await manager.wait_for("STOPPING")
                assert await server.wait() == 0, server.stderr
    assert stopping == {"STOPPING": "1", "STATUS": "shutting down"}
    assert manager.count("READY") == 1  # the supervisor's, once; never a worker's
