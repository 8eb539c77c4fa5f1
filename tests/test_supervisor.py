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
