"""The command line, run as a real process: version, check-config, and serve until SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import apsw
import httpx

CLI = [sys.executable, "-m", "proxy.cli"]
ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=60, cwd=ROOT, env=env, check=False
    )


def clean_env(**extra: str) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    keep.pop("LLM_PROXY_CONFIG", None)
    return {**keep, **extra}


def test_version() -> None:
    result = run_cli("version")
    assert result.returncode == 0
    assert result.stdout.startswith("llm-proxy ")


def test_check_config_masks_every_secret(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[auth]\ntokens = ["sk-client-plain-secret-1234"]\n')
    result = run_cli(
        "check-config",
        "--config",
        str(config),
        env=clean_env(OPENAI_API_KEY="sk-proj-verysecretkey9876"),
    )
    assert result.returncode == 0, result.stderr
    assert "verysecret" not in result.stdout
    assert "plain-secret" not in result.stdout
    assert "9876" in result.stdout  # the masked form keeps the last four characters


def test_check_config_names_the_bad_key_and_file(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[server]\nprot = 8080\n")
    result = run_cli("check-config", "--config", str(config), env=clean_env())
    assert result.returncode == 2
    assert str(config) in result.stderr
    assert "server.prot" in result.stderr


def test_serve_answers_then_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    database = tmp_path / "served.db"
    process = subprocess.Popen(
        [*CLI, "serve", "--port", "0", "--database", str(database)],
        cwd=tmp_path,
        env=clean_env(),
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        url = None
        deadline = time.monotonic() + 30
        lines: list[str] = []
        while url is None and time.monotonic() < deadline:
            line = process.stderr.readline()
            lines.append(line)
            match = re.search(r"listening on (http://\S+)", line)
            url = match.group(1) if match else None
        assert url, "".join(lines)
        assert any("mock provider is on" in line for line in lines)
        response = httpx.post(
            f"{url}/v1/chat/completions",
            json={"model": "mock", "messages": [{"role": "user", "content": "hi"}]},
            timeout=10,
        )
        assert response.status_code == 200
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
    connection = apsw.Connection(str(database))
    assert connection.execute("select count(*) from llm_requests").fetchone() == (1,)
    # The WAL was checkpointed and truncated at shutdown.
    wal = Path(f"{database}-wal")
    assert not wal.exists() or wal.stat().st_size == 0
