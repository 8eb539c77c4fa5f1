"""``llm-proxy clients … --budget-*`` and ``llm-proxy budgets``, run as real processes."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from storage.audit import list_audit
from storage.batch import write_batch
from storage.budgets import get_client_budget, scope_budgets
from tests.factories import make_record
from tests.storage_backends import connect
from tests.test_cli import clean_env, run_cli
from tests.test_cli_clients import Cli


def budgets_cli(database: str, *args: str) -> subprocess.CompletedProcess[str]:
    if database.startswith("postgresql://"):
        return run_cli("budgets", *args, env=clean_env(LLM_PROXY_STORAGE_URL=database))
    return run_cli("budgets", *args, "--database", database, env=clean_env())


@pytest.fixture
def cli(database_url: str) -> Cli:
    return Cli(database_url)


def _client_id(stderr: str) -> str:
    return stderr.split()[2]


def test_client_budgets_from_create_and_update(cli: Cli, database_url: str) -> None:
    _key, said = cli.new_key("create", "acme", "--budget-day", "2.5", "--budget-warn", "90")
    client_id = _client_id(said)
    assert "budget_day=2.5 budget_month=none budget_warn=90%" in said
    lines = cli.ok("update", client_id, "--budget-month", "40", "--budget-day", "0")
    assert "budget_day=none budget_month=40 budget_warn=90%" in lines[0]
    (listed,) = cli.ok("list")
    assert "budget_day=none budget_month=40 budget_warn=90%" in listed
    assert "--budget-day must not be negative" in cli.fails(
        "update", client_id, "--budget-day", "-1"
    )
    assert "--budget-month must be a finite number" in cli.fails(
        "update", client_id, "--budget-month", "nan"
    )
    assert "--budget-warn must be a whole number from 1 to 100" in cli.fails(
        "update", client_id, "--budget-warn", "150"
    )
    assert "--budget-day must be a number of USD" in cli.fails(
        "update", client_id, "--budget-day", "lots"
    )
    conn = connect(database_url)
    try:
        budget = get_client_budget(conn, client_id)
        audits = [row.action for row in list_audit(conn) if row.username == "cli"]
    finally:
        conn.close()
    assert (budget.day_usd, budget.month_usd, budget.warn_percent) == (None, 40.0, 90)
    assert audits.count("client.budget") == 2


def test_budgets_set_and_show(database_url: str, tmp_path: Path) -> None:
    assert budgets_cli(database_url, "show").stdout == "no budgets\n"
    done = budgets_cli(database_url, "set-global", "--day", "10", "--month", "200")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "global budget: day=10 month=200 warn=80%\n"
    done = budgets_cli(database_url, "set-global", "--warn", "75")
    assert done.stdout == "global budget: day=10 month=200 warn=75%\n"
    done = budgets_cli(database_url, "set-provider", "openai", "--month", "50")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "provider openai budget: month=50 warn=80%\n"
    for args, says in (
        (("set-global", "--day", "-1"), "--day must not be negative"),
        (("set-global", "--month", "2e9"), "--month must be at most"),
        (("set-global", "--warn", "0"), "--warn must be a whole number from 1 to 100"),
        (("set-provider", "nope", "--month", "5"), "no provider named 'nope'"),
        (("set-global",), "nothing to change"),
    ):
        refused = budgets_cli(database_url, *args)
        assert refused.returncode == 2, (args, refused.stdout, refused.stderr)
        assert says in refused.stderr, refused.stderr
    conn = connect(database_url)
    try:
        write_batch(conn, [make_record(1, ts_ms=_now_ms(), cost_usd=12.5, provider="openai")])
        stored = {(b.scope, b.name): b for b in scope_budgets(conn)}
        audits = [row.target for row in list_audit(conn) if row.action == "budget.update"]
    finally:
        conn.close()
    assert stored["global", ""].warn_percent == 75
    assert sorted(audits) == ["global", "global", "provider:openai"]
    shown = budgets_cli(database_url, "show").stdout.splitlines()
    assert shown[0].startswith("global day: limit=10 spent=12.5 (125%) unpriced_calls=0")
    assert "state=exceeded" in shown[0]
    assert shown[1].startswith("global month: limit=200 spent=12.5 (6%)")
    assert shown[2].startswith("provider openai month: limit=50 spent=12.5 (25%)")
    assert "state=ok resets=" in shown[2]


def _now_ms() -> int:
    import time

    return int(time.time() * 1000)
