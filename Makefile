# Two commands do everything: `make run` and `make test`. Both set up .venv on first use:
# `make run` installs only what serving needs, `make test` adds the development tools.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Reinstall when the dependency list changes.
DEPS := $(shell cksum pyproject.toml | cut -d' ' -f1)
RUN_STAMP := $(VENV)/.installed-run-$(DEPS)
DEV_STAMP := $(VENV)/.installed-dev-$(DEPS)

.PHONY: run test lint types pytest chromium systemd redis postgres bench setup clean

run: $(RUN_STAMP)
	$(BIN)/llm-proxy serve

test: $(DEV_STAMP) lint types pytest

lint: $(DEV_STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

types: $(DEV_STAMP)
	$(BIN)/mypy

pytest: $(DEV_STAMP) chromium systemd redis postgres
	$(BIN)/pytest -q

# Debian packages the tests need, installed with apt-get when missing: directly as root, through
# sudo otherwise; without either, the message says what to install. $(1): a command it provides,
# $(2): the package.
define apt_install
	@command -v $(1) >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; elif command -v sudo >/dev/null 2>&1; then SUDO=sudo; \
	  else echo "make: the tests need '$(1)': as root, run: apt-get install $(2)" >&2; exit 1; fi; \
	  echo "make: installing the Debian package $(2) (for the tests)"; \
	  $$SUDO apt-get install -y -qq $(2) >/dev/null \
	    || { $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq $(2) >/dev/null; }; }
endef

# The dashboard tests drive Debian's Chromium through Playwright (never `playwright install`).
chromium:
	$(call apt_install,chromium,chromium)

# tests/test_deploy.py checks deploy/llm-proxy.service with systemd-analyze, which works without
# a running systemd (Debian's systemd package); those tests fail, never skip, without it.
systemd:
	$(call apt_install,systemd-analyze,systemd)

# The fleet tests start real Redis servers on loopback ports (Debian's redis-server package).
redis:
	$(call apt_install,redis-server,redis-server)

# The storage tests start real PostgreSQL clusters in temporary directories (Debian's postgresql
# package; its server programs live in /usr/lib/postgresql/VERSION/bin, off the PATH, and
# pg_ctlcluster comes with them).
postgres:
	$(call apt_install,pg_ctlcluster,postgresql)

# Benchmarks print their figures against a baseline measured in the same run; the storage ones
# start a PostgreSQL of their own as the tests do (Debian's package).
bench: $(DEV_STAMP) postgres
	@command -v wrk >/dev/null 2>&1 || apt-get install -y -qq wrk >/dev/null 2>&1 \
		|| { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; } \
		|| echo "wrk could not be installed: bench_throughput falls back to a Python load generator"
	$(BIN)/python -m tests.bench

setup: $(DEV_STAMP)

$(RUN_STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "llm-proxy needs Python 3.11 or newer"'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); \
		echo "make: '$(PYTHON) -m venv' failed; on Debian or Ubuntu: sudo apt install python3-venv" >&2; \
		exit 1; }
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	rm -f $(VENV)/.installed-*
	touch $@

$(DEV_STAMP): $(RUN_STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-dev-*
	touch $@

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache *.egg-info
