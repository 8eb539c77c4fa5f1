"""hypercorn's trio worker still has the faults ``web/http_connection.py`` works around.

Each script here is a self-contained reproduction against plain hypercorn, its docstring the
report for upstream. They exit 1 while the fault is there. When one of these tests fails, a
hypercorn upgrade has fixed that fault: check the script's output, then simplify the matching
override in ``web/http_connection.py`` (its tests in ``tests/test_connections.py`` and
``tests/test_early_answers.py`` must keep passing) and delete the script.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import trio

HERE = Path(__file__).resolve().parent


@pytest.mark.parametrize(
    "script", ["hypercorn_cancelled_send.py", "hypercorn_idle_timer_after_eof.py"]
)
async def test_the_fault_is_still_there(script: str) -> None:
    run = await trio.run_process(
        [sys.executable, str(HERE / script)], capture_stdout=True, capture_stderr=True, check=False
    )
    output = run.stdout.decode()
    assert run.returncode == 1, f"hypercorn may have fixed this:\n{output}{run.stderr.decode()}"
    assert "BUG PRESENT" in output
