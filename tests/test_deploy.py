"""Deployment files (issue 9, item 2): the systemd unit, the install script, the example config.

The unit is checked with systemd's own tools, which work without a running systemd: ``make test``
installs Debian's systemd package when ``systemd-analyze`` is missing, so these tests fail (never
skip) without it. The install script runs into a sandbox under tmp_path, for real (a venv with
the package from this checkout), twice, then uninstalls.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from proxy.config import KEYED_PROVIDERS, PROVIDER_NAMES, load_config
from tests.config_docs import toml_sections, undocumented_keys

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
UNIT = DEPLOY / "llm-proxy.service"
INSTALL = DEPLOY / "install.sh"
EXAMPLE = DEPLOY / "config.example.toml"
EXEC_START = "/opt/llm-proxy/venv/bin/llm-proxy"
MAX_EXPOSURE = 2.0
INSTALL_TIMEOUT_S = 900  # a fresh venv downloads the dependencies


def systemd_analyze() -> str:
    """The ``systemd-analyze`` binary, or a failure saying how to get it (never a skip)."""
    path = shutil.which("systemd-analyze")
    if path is None:
        pytest.fail(
            "systemd-analyze is missing: the deployment tests check the unit with it. Run "
            "`make test` (it installs it) or `apt-get install -y systemd` (systemd need not run)."
        )
    return path


def run(*args: str | Path, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        **kwargs,  # type: ignore[arg-type]
    )


def unit_directives() -> dict[str, list[str]]:
    """Every ``Key=value`` of the unit, in order, keys repeated (LoadCredential=)."""
    directives: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            directives.setdefault(key.strip(), []).append(value.strip())
    return directives


# --- the unit -----------------------------------------------------------------------------------


def unit_root(tmp_path: Path, *, with_binary: bool = True) -> Path:
    """A file system root for ``verify --root``: the distribution's units, ours, a stub binary."""
    root = tmp_path / "root"
    system_units = next(
        p for p in (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system")) if p.is_dir()
    )
    shutil.copytree(system_units, root / "usr/lib/systemd/system", symlinks=True)
    (root / "etc/systemd/system").mkdir(parents=True)
    shutil.copy(UNIT, root / "etc/systemd/system" / UNIT.name)
    if with_binary:
        binary = root / EXEC_START.lstrip("/")
        binary.parent.mkdir(parents=True)
        binary.write_text("#!/bin/sh\nexit 0\n")
        binary.chmod(0o755)
    return root


def test_unit_verifies_cleanly(tmp_path: Path) -> None:
    # `verify` checks that ExecStart= exists, so it runs against a root where it does (a stub);
    # it prints unknown or invalid settings as warnings and still exits 0: the output must be
    # empty.
    analyze = systemd_analyze()
    result = run(analyze, "verify", f"--root={unit_root(tmp_path)}", UNIT.name)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_verify_in_that_root_does_check_the_binary(tmp_path: Path) -> None:
    analyze = systemd_analyze()
    result = run(analyze, "verify", f"--root={unit_root(tmp_path, with_binary=False)}", UNIT.name)
    assert result.returncode != 0
    assert f"{EXEC_START} is not executable" in result.stderr


def test_unit_security_exposure_is_ok() -> None:
    analyze = systemd_analyze()
    result = run(analyze, "security", "--offline=true", "--no-pager", UNIT)
    assert result.returncode == 0, result.stderr
    match = re.search(r"Overall exposure level for [^:]+: (\d+(?:\.\d+)?)", result.stdout)
    assert match, result.stdout + result.stderr
    exposure = float(match.group(1))
    assert exposure <= MAX_EXPOSURE, result.stdout


def test_unit_settings() -> None:
    d = unit_directives()
    assert d["Type"] == ["notify"]
    assert d["DynamicUser"] == ["yes"]
    assert d["StateDirectory"] == ["llm-proxy"]
    assert d["ConfigurationDirectory"] == ["llm-proxy"]
    assert d["ExecStart"] == [f"{EXEC_START} serve --config /etc/llm-proxy/config.toml"]
    assert int(d["WatchdogSec"][0]) > 0
    # A credential per keyed provider, named as proxy/config/provider_keys.py reads it, the
    # fleet's Redis URL and the PostgreSQL URL.
    assert sorted(d["LoadCredential"]) == sorted(
        [
            *(
                f"{name}_api_key:/etc/llm-proxy/credentials/{name}_api_key"
                for name in KEYED_PROVIDERS
            ),
            "redis_url:/etc/llm-proxy/credentials/redis_url",
            "storage_url:/etc/llm-proxy/credentials/storage_url",
        ]
    )
    # systemd must wait out the grace period (and the actors' drain) before SIGKILL.
    default_grace = load_config(environ={}).server.graceful_timeout_s
    assert int(d["TimeoutStopSec"][0]) > default_grace
    # The notify socket is AF_UNIX.
    assert "AF_UNIX" in d["RestrictAddressFamilies"][0].split()


# --- the install script -------------------------------------------------------------------------


def test_install_script_lints() -> None:
    result = run("bash", "-n", INSTALL)
    assert result.returncode == 0, result.stderr
    assert os.access(INSTALL, os.X_OK)
    shellcheck = shutil.which("shellcheck")
    if shellcheck is not None:
        result = run(shellcheck, INSTALL)
        assert result.returncode == 0, result.stdout


def sandbox(base: Path) -> dict[str, str]:
    """The install script's paths, all under ``base``, and no systemctl."""
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env.pop("LLM_PROXY_CONFIG", None)
    return env | {
        "LLM_PROXY_PREFIX": str(base / "opt/llm-proxy"),
        "ETC_DIR": str(base / "etc/llm-proxy"),
        "SYSTEMD_DIR": str(base / "etc/systemd/system"),
        "STATE_DIR": str(base / "var/lib/llm-proxy"),
        "PYTHON": sys.executable,
        "SKIP_SYSTEMCTL": "1",
    }


def install(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [str(INSTALL), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT_S,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_install_twice_then_uninstall(tmp_path: Path) -> None:
    env = sandbox(tmp_path)
    prefix, etc = Path(env["LLM_PROXY_PREFIX"]), Path(env["ETC_DIR"])
    unit = Path(env["SYSTEMD_DIR"]) / "llm-proxy.service"
    credentials = etc / "credentials"

    out = install(env)
    assert "systemctl daemon-reload && systemctl enable --now llm-proxy.service" in out
    assert (etc / "config.toml").read_text() == EXAMPLE.read_text()
    assert mode(credentials) == 0o700
    # LoadCredential= fails the unit on a missing file
    for name in [f"{provider}_api_key" for provider in KEYED_PROVIDERS] + [
        "redis_url",
        "storage_url",
    ]:
        assert (credentials / name).read_text() == ""
        assert mode(credentials / name) == 0o600
    installed_unit = unit.read_text()
    assert f"ExecStart={prefix}/venv/bin/llm-proxy serve --config {etc}/config.toml" in (
        installed_unit
    )
    assert f"LoadCredential=openai_api_key:{credentials}/openai_api_key" in installed_unit

    # The operator edits the config and adds a key; a second run (an upgrade) keeps both.
    edited = (etc / "config.toml").read_text() + "\n# edited by the operator\n"
    (etc / "config.toml").write_text(edited)
    (credentials / "openai_api_key").write_text("sk-from-the-credential-0123456789\n")
    out = install(env)
    assert "keeping" in out
    assert (etc / "config.toml").read_text() == edited
    assert (credentials / "openai_api_key").read_text().startswith("sk-from-the-credential")
    assert unit.read_text() == installed_unit

    llm_proxy = prefix / "venv/bin/llm-proxy"
    assert run(llm_proxy, "version").stdout.startswith("llm-proxy ")
    # The installed program reads the key the unit hands over, and never prints it.
    checked = run(
        llm_proxy,
        "check-config",
        "--config",
        etc / "config.toml",
        env={"CREDENTIALS_DIRECTORY": str(credentials), "PATH": os.environ["PATH"]},
    )
    assert checked.returncode == 0, checked.stderr
    assert "# from credential openai_api_key" in checked.stdout
    assert "sk-from-the-credential" not in checked.stdout
    # The dashboard's static files must be part of the installed package, not only of the
    # checkout (asserted at the end, so that uninstalling is tested either way).
    dashboard = run(
        prefix / "venv/bin/python",
        "-c",
        "import web.ui; print((web.ui.STATIC / 'index.html').is_file())",
        cwd="/",
    )

    state = Path(env["STATE_DIR"])
    state.mkdir(parents=True)
    (state / "llm-proxy.db").write_bytes(b"")
    out = install(env, "--uninstall")
    assert not prefix.exists()
    assert not unit.exists()
    assert (etc / "config.toml").read_text() == edited  # kept
    assert (state / "llm-proxy.db").exists()  # kept
    install(env, "--uninstall")  # nothing left to remove: still fine

    install(env, "--uninstall", "--purge")
    assert not etc.exists()
    assert not state.exists()

    assert dashboard.stdout.strip() == "True", (
        "web/static is not installed with the package (pyproject.toml package-data)\n"
        + dashboard.stdout
        + dashboard.stderr
    )


def test_uninstall_purge_removes_dynamic_user_state(tmp_path: Path) -> None:
    env = sandbox(tmp_path)
    # DynamicUser= keeps the state in /var/lib/private/llm-proxy behind /var/lib/llm-proxy.
    private = tmp_path / "var/lib/private/llm-proxy"
    private.mkdir(parents=True)
    (private / "llm-proxy.db").write_bytes(b"")
    Path(env["STATE_DIR"]).symlink_to(private)
    dropins = Path(env["SYSTEMD_DIR"]) / "llm-proxy.service.d"
    dropins.mkdir(parents=True)
    (dropins / "override.conf").write_text("[Service]\n")
    install(env, "--uninstall", "--purge")
    assert not private.exists()
    assert not Path(env["STATE_DIR"]).is_symlink()
    assert not dropins.exists()


def test_install_refuses_relative_paths_and_unknown_arguments(tmp_path: Path) -> None:
    env = sandbox(tmp_path) | {"LLM_PROXY_PREFIX": "relative/dir"}
    result = run(INSTALL, "--uninstall", env=env)
    assert result.returncode != 0
    assert "must be absolute" in result.stderr
    result = run(INSTALL, "--frobnicate", env=sandbox(tmp_path))
    assert result.returncode != 0
    assert "unknown argument" in result.stderr


# --- the example config -------------------------------------------------------------------------


def test_example_config_shows_the_defaults() -> None:
    example = load_config(EXAMPLE, environ={})
    defaults = load_config(environ={})
    assert dataclasses.replace(example, source="") == dataclasses.replace(defaults, source="")


def test_example_config_documents_every_key() -> None:
    sections = toml_sections(EXAMPLE.read_text())
    assert undocumented_keys(sections, PROVIDER_NAMES) == []


def test_example_config_holds_no_secret_and_reads_credentials(tmp_path: Path) -> None:
    text = EXAMPLE.read_text()
    assert re.search(r"^api_key\s*=", text, re.MULTILINE) is None  # only commented out
    assert "LoadCredential" in text or "credentials/<provider>_api_key" in text
    # What install.sh sets up: empty credential files (no key), then one filled in.
    for name in KEYED_PROVIDERS:
        (tmp_path / f"{name}_api_key").write_text("")
    config = load_config(EXAMPLE, environ={"CREDENTIALS_DIRECTORY": str(tmp_path)})
    assert not any(config.providers[name].enabled for name in KEYED_PROVIDERS)
    (tmp_path / "gemini_api_key").write_text("gem-key-from-credential-0123\n")
    config = load_config(
        EXAMPLE, environ={"CREDENTIALS_DIRECTORY": str(tmp_path), "STATE_DIRECTORY": "/srv/x"}
    )
    gemini = config.providers["gemini"]
    assert (gemini.enabled, gemini.api_key) == (True, "gem-key-from-credential-0123")
    assert gemini.api_key_source == "credential gemini_api_key"
    assert config.server.database == "/srv/x/llm-proxy.db"


def test_unit_signals_only_the_supervisor_of_several_workers() -> None:
    # With [server] workers > 1 the main process forwards SIGTERM to its workers: systemd must
    # not signal them too (a second SIGTERM cuts their grace period short), yet must SIGKILL
    # every one of them when TimeoutStopSec runs out. Workers notify the supervisor's own
    # socket, never systemd's.
    d = unit_directives()
    assert d["KillMode"] == ["mixed"]
    assert d["NotifyAccess"] == ["main"]
