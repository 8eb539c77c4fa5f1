"""A new user's first hour (issue 13, items 19 and 20): what `make run` installs, the package
metadata, and the README's promises about configuration.
"""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path

from packaging.licenses import canonicalize_license_expression
from packaging.requirements import Requirement

from proxy.config import PROVIDER_NAMES
from tests.config_docs import toml_sections, undocumented_keys

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"


def make_dry_run(target: str, venv: Path) -> str:
    """The commands ``make TARGET`` would run for a checkout with no virtualenv yet."""
    done = subprocess.run(
        ["make", "--dry-run", target, f"VENV={venv}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout


def pip_installs(commands: str) -> list[str]:
    return [line for line in commands.splitlines() if "pip install" in line]


def test_make_run_installs_only_what_serving_needs(tmp_path: Path) -> None:
    installs = pip_installs(make_dry_run("run", tmp_path / "venv"))
    assert any(line.rstrip().endswith("-e .") for line in installs), installs
    assert not any("dev" in line for line in installs), installs


def test_make_test_adds_the_development_tools(tmp_path: Path) -> None:
    installs = pip_installs(make_dry_run("test", tmp_path / "venv"))
    assert any("'.[dev]'" in line for line in installs), installs


def test_the_license_is_an_spdx_expression_for_a_setuptools_that_reads_it() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    license_ = pyproject["project"]["license"]
    # The table form ({text = ...}) warns on every install and is an error from 2027-02-18.
    assert isinstance(license_, str), license_
    assert canonicalize_license_expression(license_) == license_
    (setuptools,) = [
        Requirement(r) for r in pyproject["build-system"]["requires"] if r.startswith("setuptools")
    ]
    assert not setuptools.specifier.contains("76.9"), "PEP 639 strings need setuptools>=77"


def readme_config_block() -> str:
    text = README.read_text()
    section = text[text.index("## Configuration") :]
    match = re.search(r"```toml\n(.*?)```", section, re.DOTALL)
    assert match is not None, "no TOML block under ## Configuration"
    return match.group(1)


def test_readme_lists_every_config_key() -> None:
    # The providers' tables share their keys: the README shows them once, under openai.
    sections = toml_sections(readme_config_block())
    assert undocumented_keys(sections, ["openai"]) == []
    shown = {name.removeprefix("providers.") for name in sections if name.startswith("providers.")}
    assert shown <= set(PROVIDER_NAMES)


def test_readme_quick_start_covers_the_first_hour() -> None:
    text = README.read_text()
    quick = text[text.index("## Quick start") : text.index("## What it does today")]
    assert "python3-venv" in quick
    assert "http://127.0.0.1:8080/" in quick  # the dashboard
    assert "llm-proxy-initial-admin-password" in quick
    assert "check-config" in quick
    # A second server on the same port fails: the quick start stops the first one or moves.
    assert "stop `make run`" in quick
