"""A real ``llm-proxy serve`` process under SIGTERM and SIGKILL (issue 5, items 5 and 6).

Graceful shutdown: in-flight streams finish, new requests are refused, every record is stored,
the WAL is checkpointed and the exit status is 0. Durability: after SIGKILL every call whose
response finished more than one second earlier is in the database. A second signal during the
shutdown stops it at once, quietly, still storing every record (issue 13, item 21).

The fake upstream runs in the test's trio loop; the server is a subprocess reaching it over
loopback, so the signals are real and so is WAL recovery when the database is opened afterwards.
"""

from __future__ import annotations

import json
import random
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import trio

from tests.fakes.openai_upstream import DEFAULT_API_KEY, Echo, FakeOpenAI
from tests.process import CLIENT_KEY, ServerProcess, read_rows, serve, write_config

AUTH = {"authorization": f"Bearer {CLIENT_KEY}"}
MODEL = "gpt-4o-mini"
PROMPT = "tell me a story about a lighthouse keeper and a very patient cat"
EXPECTED = "echo: " + PROMPT  # what the fake's Echo answers, whatever the chunking
STREAMS = 10
# graceful_timeout_s where every stream fits in it; exit must then come as soon as the streams
# end, not after the whole grace period (idle keep-alive connections must not hold it).
GRACE_S = 10.0


def chat_body(*, stream: bool, prompt: str = PROMPT) -> dict[str, object]:
    return {"model": MODEL, "messages": [{"role": "user", "content": prompt}], "stream": stream}


def client_for(server: ServerProcess, *, timeout: float = 15.0) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=server.url,
        headers=AUTH,
        timeout=timeout,
        trust_env=False,
        limits=httpx.Limits(max_connections=64, max_keepalive_connections=64),
    )


@dataclass
class Streamed:
    """What a client saw of one streaming call."""

    request_id: str = ""
    status: int = 0
    content: str = ""
    done: bool = False
    errors: list[object] = field(default_factory=list)
    transport_error: str | None = None
    after_done: list[str] = field(default_factory=list)


async def stream_chat(
    client: httpx.AsyncClient, on_first_content: Callable[[], None] = lambda: None
) -> Streamed:
    """Make one streaming call and read it to the end (or until the connection breaks)."""
    seen = Streamed()
    try:
        async with client.stream("POST", "/v1/chat/completions", json=chat_body(stream=True)) as r:
            seen.status = r.status_code
            seen.request_id = r.headers.get("x-request-id", "")
            async for line in r.aiter_lines():
                if not line.startswith("data: "):
                    continue
                data = line[len("data: ") :]
                if seen.done:
                    seen.after_done.append(data)
                elif data == "[DONE]":
                    seen.done = True
                else:
                    event = json.loads(data)
                    if "error" in event:
                        seen.errors.append(event["error"])
                        continue
                    for choice in event.get("choices", []):
                        piece = choice.get("delta", {}).get("content") or ""
                        if piece and not seen.content:
                            on_first_content()
                        seen.content += piece
    except httpx.TransportError as exc:
        seen.transport_error = repr(exc)
    return seen


@dataclass(frozen=True)
class Finished:
    """A call whose whole response reached the client, and when (trio clock)."""

    request_id: str
    stream: bool
    at: float


async def complete_call(client: httpx.AsyncClient, *, stream: bool) -> Finished:
    """One call read to its last byte; fails the test unless it succeeded."""
    if stream:
        seen = await stream_chat(client)
        assert seen.status == 200, seen
        assert seen.done, seen
        assert seen.content == EXPECTED, seen
        request_id = seen.request_id
    else:
        response = await client.post("/v1/chat/completions", json=chat_body(stream=False))
        assert response.status_code == 200, response.text
        assert response.json()["choices"][0]["message"]["content"] == EXPECTED
        request_id = response.headers["x-request-id"]
    assert request_id
    return Finished(request_id, stream, trio.current_time())


def assert_clean_log(server: ServerProcess) -> None:
    """The server's stderr shows a complete shutdown with nothing lost and no traceback."""
    stderr = server.stderr
    assert "shutdown complete" in stderr, stderr
    assert "Traceback" not in stderr, stderr
    assert "not stored" not in stderr, stderr


def assert_wal_checkpointed(database: Path) -> None:
    wal = Path(f"{database}-wal")
    assert not wal.exists() or wal.stat().st_size == 0, f"WAL left with {wal.stat().st_size} bytes"


def assert_logged_ok(rows: dict[str, dict[str, object]], request_id: str) -> None:
    assert request_id in rows, f"request {request_id} is not in the database"
    row = rows[request_id]
    assert row["status"] == "ok", row
    for column in ("prompt_tokens", "completion_tokens", "total_tokens"):
        value = row[column]
        assert isinstance(value, int), row
        assert value > 0, row


# --- graceful shutdown ------------------------------------------------------------------------


async def new_request_after_sigterm(client: httpx.AsyncClient) -> tuple[str, str | None]:
    """A call made once shutdown has begun: ("refused" | "reset" | "HTTP <status>", request id)."""
    try:
        with trio.fail_after(5):  # a hang fails here
            response = await client.post("/v1/chat/completions", json=chat_body(stream=False))
    except httpx.ConnectError:
        return "refused", None
    except (httpx.RemoteProtocolError, httpx.ReadError):
        return "reset", None  # the connection closed before any response: nothing was served
    return f"HTTP {response.status_code}", response.headers.get("x-request-id")


async def test_sigterm_lets_streams_finish_and_refuses_new_calls(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    config = write_config(
        tmp_path / "config.toml",
        upstream_url=fake_openai.base_url,
        upstream_key=DEFAULT_API_KEY,
        graceful_timeout_s=GRACE_S,
    )
    database = tmp_path / "gateway.db"
    fake_openai.enqueue(*[Echo(chunks=20, chunk_interval_s=0.1)] * STREAMS)  # ≈ 2 s each
    results: list[Streamed] = []
    started = 0
    all_started = trio.Event()

    def first_content() -> None:
        nonlocal started
        started += 1
        if started == STREAMS:
            all_started.set()

    async def one_stream(client: httpx.AsyncClient) -> None:
        results.append(await stream_chat(client, first_content))

    async with serve(config, database, tmp_path) as server:
        async with client_for(server) as client, client_for(server) as fresh:
            with trio.fail_after(20):
                async with trio.open_nursery() as nursery:
                    for _ in range(STREAMS):
                        nursery.start_soon(one_stream, client)
                    with trio.fail_after(10):
                        await all_started.wait()
                    server.send_signal(signal.SIGTERM)
                    signalled = trio.current_time()
                    with trio.fail_after(5):
                        await server.wait_for_line("received SIGTERM")
                    await trio.sleep(0.1)  # the drain has begun; the streams have ≈ 1.5 s left
                    # A new call on a new connection, while the streams are still running.
                    late, _ = await new_request_after_sigterm(fresh)
                    assert late in ("refused", "HTTP 503"), late
                    assert not results, "a stream ended before the late call was answered"
            # The client's keep-alive connections are still open and idle here.
            with trio.fail_after(GRACE_S + 5):
                status = await server.wait()
            exited_after = trio.current_time() - signalled
        assert status == 0, server.stderr

    assert len(results) == STREAMS
    for seen in results:
        assert seen.status == 200, seen
        assert seen.transport_error is None, seen
        assert not seen.errors, seen
        assert seen.content == EXPECTED, seen
        assert seen.done, seen
        assert not seen.after_done, seen
    # The streams had about 2 s left; idle keep-alive connections must not stretch that to the
    # whole grace period.
    assert exited_after < GRACE_S - 2, f"exit took {exited_after:.1f} s after SIGTERM"
    assert_clean_log(server)
    assert_wal_checkpointed(database)  # before opening: a reader could recreate the file
    rows = read_rows(database)
    for seen in results:
        assert_logged_ok(rows, seen.request_id)
        assert rows[seen.request_id]["stream"] == 1
    # One row per call made: the streams, plus the late call only if it was answered.
    assert len(rows) == STREAMS + (late == "HTTP 503"), rows


@dataclass
class KeepAliveOutcome:
    before: Finished  # the call that left an idle keep-alive connection behind
    streamed: Streamed  # the stream in flight across SIGTERM
    late: str  # the call made on the idle connection after SIGTERM
    late_request_id: str | None
    status: int
    rows: dict[str, dict[str, object]]
    server: ServerProcess


async def sigterm_then_reuse_idle_connection(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> KeepAliveOutcome:
    """A client makes a call, keeps its connection; SIGTERM comes while another stream runs;
    the client then sends a new call on its idle keep-alive connection."""
    config = write_config(
        tmp_path / "config.toml",
        upstream_url=fake_openai.base_url,
        upstream_key=DEFAULT_API_KEY,
        graceful_timeout_s=GRACE_S,
    )
    database = tmp_path / "gateway.db"
    holder: list[Streamed] = []
    async with (
        serve(config, database, tmp_path) as server,
        client_for(server) as streamer,
        client_for(server) as idle,
    ):
        before = await complete_call(idle, stream=False)  # leaves an idle keep-alive socket
        fake_openai.enqueue(Echo(chunks=20, chunk_interval_s=0.1))  # ≈ 2 s
        first = trio.Event()

        async def keep_streaming() -> None:
            holder.append(await stream_chat(streamer, first.set))

        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(keep_streaming)
                with trio.fail_after(10):
                    await first.wait()
                server.send_signal(signal.SIGTERM)
                with trio.fail_after(5):
                    await server.wait_for_line("received SIGTERM")
                await trio.sleep(0.2)  # well inside the drain: the stream has ≈ 1.5 s left
                late, late_request_id = await new_request_after_sigterm(idle)
                assert not holder, "the stream ended before the late call was answered"
        with trio.fail_after(GRACE_S + 5):
            status = await server.wait()
    assert_wal_checkpointed(database)  # before opening: a reader could recreate the file
    return KeepAliveOutcome(
        before, holder[0], late, late_request_id, status, read_rows(database), server
    )


async def test_sigterm_new_call_on_a_kept_alive_connection_gets_503_and_nothing_is_lost(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    outcome = await sigterm_then_reuse_idle_connection(fake_openai, tmp_path)
    assert outcome.status == 0, outcome.server.stderr
    assert outcome.late in ("refused", "reset", "HTTP 503"), outcome.late
    seen = outcome.streamed
    assert seen.done, seen
    assert seen.content == EXPECTED, seen
    assert not seen.errors, seen
    assert_clean_log(outcome.server)
    rows = outcome.rows
    assert_logged_ok(rows, outcome.before.request_id)
    assert_logged_ok(rows, seen.request_id)
    # A refused call that reached the gateway is logged too, as the error it got.
    assert len(rows) == 2 + outcome.late.startswith("HTTP"), rows


async def test_sigterm_past_the_grace_period_cuts_the_stream_and_logs_it(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    grace_s = 1.0
    config = write_config(
        tmp_path / "config.toml",
        upstream_url=fake_openai.base_url,
        upstream_key=DEFAULT_API_KEY,
        graceful_timeout_s=grace_s,
    )
    database = tmp_path / "gateway.db"
    fake_openai.enqueue(Echo(chunks=40, chunk_interval_s=0.1))  # ≈ 4 s, well past the grace
    first = trio.Event()
    async with serve(config, database, tmp_path) as server:
        async with client_for(server) as client:
            with trio.fail_after(20):
                async with trio.open_nursery() as nursery:
                    holder: list[Streamed] = []

                    async def long_stream() -> None:
                        holder.append(await stream_chat(client, first.set))

                    nursery.start_soon(long_stream)
                    with trio.fail_after(10):
                        await first.wait()
                    server.send_signal(signal.SIGTERM)
                    signalled = trio.current_time()
            cut_after = trio.current_time() - signalled
            with trio.fail_after(grace_s + 5):
                status = await server.wait()
            exited_after = trio.current_time() - signalled
        assert status == 0, server.stderr

    (seen,) = holder
    assert seen.status == 200, seen
    assert seen.request_id, seen
    assert not seen.done, f"the stream was not cut: {seen}"
    assert seen.content, seen
    assert seen.content != EXPECTED, seen
    assert EXPECTED.startswith(seen.content), seen
    assert cut_after < grace_s + 2, f"the stream was cut {cut_after:.1f} s after SIGTERM"
    assert exited_after < grace_s + 5
    assert "grace period over" in server.stderr, server.stderr
    assert "shutdown complete" in server.stderr, server.stderr
    assert "not stored" not in server.stderr, server.stderr
    assert_wal_checkpointed(database)
    rows = read_rows(database)
    assert set(rows) == {seen.request_id}, rows
    assert rows[seen.request_id]["status"] in ("cancelled", "error"), rows


# --- durability after SIGKILL -----------------------------------------------------------------


async def test_sigkill_keeps_every_call_finished_a_second_earlier(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    config = write_config(
        tmp_path / "config.toml",
        upstream_url=fake_openai.base_url,
        upstream_key=DEFAULT_API_KEY,
        graceful_timeout_s=GRACE_S,
    )
    database = tmp_path / "gateway.db"
    calls = 50
    finished: list[Finished] = []
    async with serve(config, database, tmp_path) as server:
        async with client_for(server) as client:
            limiter = trio.CapacityLimiter(8)

            async def one(i: int) -> None:
                async with limiter:
                    finished.append(await complete_call(client, stream=i % 2 == 0))

            with trio.fail_after(20):
                async with trio.open_nursery() as nursery:
                    for i in range(calls):
                        nursery.start_soon(one, i)
            last = max(call.at for call in finished)
            await trio.sleep_until(last + 1.0)
            server.send_signal(signal.SIGKILL)
            with trio.fail_after(5):
                status = await server.wait()
        assert status == -signal.SIGKILL

    assert len(finished) == calls
    rows = read_rows(database)  # WAL recovery happens here
    missing = [call.request_id for call in finished if call.request_id not in rows]
    assert not missing, f"{len(missing)} of {calls} calls lost after SIGKILL: {missing}"
    for call in finished:
        assert_logged_ok(rows, call.request_id)
        assert rows[call.request_id]["stream"] == int(call.stream)
    assert len(rows) == calls


async def test_sigkill_under_load_keeps_every_call_finished_a_second_before(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    config = write_config(
        tmp_path / "config.toml",
        upstream_url=fake_openai.base_url,
        upstream_key=DEFAULT_API_KEY,
        graceful_timeout_s=GRACE_S,
    )
    database = tmp_path / "gateway.db"
    seed = random.randrange(1 << 32)
    rng = random.Random(seed)
    kill_after = rng.uniform(1.5, 3.0)
    workers = 8
    finished: list[Finished] = []
    attempted = 0
    killed_at: float | None = None
    async with serve(config, database, tmp_path) as server, client_for(server, timeout=5) as client:

        async def worker(number: int) -> None:
            nonlocal attempted
            stream = number % 2 == 0
            while True:
                attempted += 1
                try:
                    finished.append(await complete_call(client, stream=stream))
                except (httpx.TransportError, AssertionError):
                    if killed_at is None:
                        raise  # a failure before the kill is a failure
                    return  # the server was killed under this call
                stream = not stream

        with trio.fail_after(15):
            async with trio.open_nursery() as nursery:
                for number in range(workers):
                    nursery.start_soon(worker, number)
                await trio.sleep(kill_after)
                killed_at = trio.current_time()  # before the kill: "≥ 1 s before" stays exact
                server.send_signal(signal.SIGKILL)
                status = await server.wait()
                # Workers end on their own as their connections break.
        assert status == -signal.SIGKILL

    context = f"seed={seed} kill_after={kill_after:.2f}s finished={len(finished)}"
    durable = [call for call in finished if call.at <= killed_at - 1.0]
    assert len(durable) >= 20, f"too little load to mean anything ({context})"
    rows = read_rows(database)
    missing = [call.request_id for call in durable if call.request_id not in rows]
    assert not missing, f"{len(missing)} of {len(durable)} durable calls lost ({context})"
    for call in durable:
        assert_logged_ok(rows, call.request_id)
    assert len(rows) <= attempted, context


# --- a second signal during the shutdown --------------------------------------------------------


def slow_mock_config(path: Path) -> Path:
    """The mock provider answering after a minute, and a grace period that would wait for it."""
    path.write_text(
        f"""\
[server]
graceful_timeout_s = 60

[auth]
tokens = ["{CLIENT_KEY}"]

[providers.ollama]
enabled = false

[providers.mock]
latency_ms = 60000
"""
    )
    return path


async def wait_for_mock_call_in_flight(client: httpx.AsyncClient) -> None:
    """Poll /metrics until the mock provider has one call in flight."""
    with trio.fail_after(10):
        while True:
            metrics = (await client.get("/metrics")).text
            if 'llm_proxy_provider_in_flight{provider="mock"} 1' in metrics:
                return
            await trio.sleep(0.05)


@pytest.mark.parametrize(("signum", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
async def test_a_second_signal_stops_at_once_quietly_and_keeps_the_record(
    tmp_path: Path, signum: signal.Signals, status: int
) -> None:
    config = slow_mock_config(tmp_path / "config.toml")
    database = tmp_path / "gateway.db"
    outcome: list[str] = []
    async with (
        serve(config, database, tmp_path) as server,
        client_for(server, timeout=30) as client,
    ):

        async def slow_call() -> None:
            try:
                response = await client.post(
                    "/v1/chat/completions",
                    json={"model": "mock", "messages": [{"role": "user", "content": "hi"}]},
                )
                outcome.append(f"HTTP {response.status_code}")
            except httpx.TransportError as exc:
                outcome.append(type(exc).__name__)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(slow_call)
            await wait_for_mock_call_in_flight(client)
            server.send_signal(signum)
            with trio.fail_after(5):
                await server.wait_for_line(f"received {signum.name}")
            # The call holds the graceful shutdown (a minute of grace): the second signal ends it.
            assert server.running()
            server.send_signal(signum)
            with trio.fail_after(10):
                exit_status = await server.wait()
    assert exit_status == status, server.stderr
    stderr = server.stderr
    assert f"second signal ({signum.name}): stopping now" in stderr, stderr
    assert "Traceback" not in stderr, stderr
    assert "KeyboardInterrupt" not in stderr, stderr
    assert "not stored" not in stderr, stderr
    assert "shutdown complete" in stderr, stderr
    # The call is cut as when the grace period runs out: told so if the connection still
    # takes it, and logged either way (it was accepted: it must not be lost).
    assert outcome in (["HTTP 503"], ["RemoteProtocolError"], ["ReadError"]), outcome
    rows = read_rows(database)
    assert len(rows) == 1, rows
    (row,) = rows.values()
    assert row["status"] in ("cancelled", "error"), row
