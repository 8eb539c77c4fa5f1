"""The supervisor of ``[server] workers`` with stand-in workers: a worker that cannot start stops
the whole service with its status (the end-to-end behaviour with real workers is in
``tests/test_workers.py``)."""

from __future__ import annotations

import dataclasses
import logging
import sys
from pathlib import Path

import pytest
import trio

from proxy.config import Config, load_config, with_overrides
from proxy.sd_notify import Notifier
from proxy.worker_place import WorkerPlace
from proxy.worker_process import WorkerOrder, decode_order, encode_order, worker_config
from proxy.worker_slot import describe_status, worker_environment
from proxy.workers import Supervisor

# A stand-in worker: reads its order like a real one; worker 1 fails as a StartupError would
# (its line, then status 1), the others wait for SIGTERM and stop cleanly.
FAILING_FIRST = """
import signal, sys, time
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
from proxy.worker_process import decode_order
order = decode_order(sys.stdin.buffer.read())
if order.number == 1:
    print("cannot start: cannot open database: it is broken", file=sys.stderr, flush=True)
    sys.exit(1)
while True:
    time.sleep(1)
"""


def fleet_config(tmp_path: Path) -> Config:
    """Two workers on port 0 (no Redis is reached: the stand-ins never connect)."""
    config = load_config(environ={"LLM_PROXY_REDIS_URL": "redis://127.0.0.1:1/0"})
    config = with_overrides(config, port=0, database=str(tmp_path / "gateway.db"))
    return dataclasses.replace(config, server=dataclasses.replace(config.server, workers=2))


async def test_a_worker_that_cannot_start_stops_the_service_with_its_status(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="llm_proxy.workers")
    supervisor = Supervisor(
        fleet_config(tmp_path),
        notifier=Notifier(None),
        worker_command=(sys.executable, "-c", FAILING_FIRST),
    )
    with trio.fail_after(60):
        status = await supervisor.run()
    assert status == 1
    messages = [record.getMessage() for record in caplog.records]
    assert "worker 1 could not start (status 1): stopping" in messages, messages
    assert not any("restarting" in message for message in messages), messages
    # The other worker was stopped, not left running.
    assert not any("worker 2 exited" in message for message in messages), messages


def test_each_worker_gets_the_reserved_port_and_its_own_instance_name(tmp_path: Path) -> None:
    config = fleet_config(tmp_path)
    named = dataclasses.replace(
        config, cluster=dataclasses.replace(config.cluster, instance_name="gw-a")
    )
    second = worker_config(named, 2, 41234)
    assert second.server.port == 41234
    assert second.cluster.instance_name == "gw-a/2"
    # Unnamed: each keeps the default "<hostname>:<pid>", which is its own already.
    assert worker_config(config, 2, 41234).cluster.instance_name == ""


def test_the_order_crosses_the_pipe_whole(tmp_path: Path) -> None:
    config = worker_config(fleet_config(tmp_path), 1, 41234)
    order = decode_order(encode_order(WorkerOrder(config, 1, 4242)))
    assert order == WorkerOrder(config, 1, 4242)
    assert order.config.cluster.redis_url == "redis://127.0.0.1:1/0"


def test_a_workers_environment_names_its_notify_socket_not_systemds() -> None:
    environ = {
        "PATH": "/bin",
        "NOTIFY_SOCKET": "/run/systemd/notify",
        "WATCHDOG_USEC": "30000000",
        "WATCHDOG_PID": "1",
    }
    env = worker_environment(environ, "/tmp/x/worker-1.sock", 10.0)
    assert env == {
        "PATH": "/bin",
        "NOTIFY_SOCKET": "/tmp/x/worker-1.sock",
        "WATCHDOG_USEC": "10000000",
    }
    assert describe_status(-9) == "signal SIGKILL"
    assert describe_status(3) == "status 3"


def test_the_order_says_where_the_worker_stands_for_its_metrics(tmp_path: Path) -> None:
    config = worker_config(fleet_config(tmp_path), 2, 41234)
    order = decode_order(
        encode_order(WorkerOrder(config, 2, 4242, metrics_dir=str(tmp_path), workers=3))
    )
    place = order.place()
    assert place == WorkerPlace(2, 3, str(tmp_path))
    assert place.own_socket == str(tmp_path / "metrics-2.sock")
    assert place.siblings == [1, 3]
    assert WorkerOrder(config, 1, 4242).place() is None  # no directory: a worker alone
