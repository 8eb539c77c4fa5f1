# Two commands do everything: `make run` and `make test`. Both set up .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Reinstall when the dependency list changes.
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: run test lint types pytest chromium systemd bench setup clean

run: $(STAMP)
	$(BIN)/llm-proxy serve

test: $(STAMP) lint types pytest

lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

types: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP) chromium systemd
	$(BIN)/pytest -q

# The dashboard tests drive Debian's Chromium through Playwright (never `playwright install`).
chromium:
	@command -v chromium >/dev/null 2>&1 || apt-get install -y -qq chromium \
		|| { apt-get update -qq && apt-get install -y -qq chromium; }

# tests/test_deploy.py checks deploy/llm-proxy.service with systemd-analyze, which works without
# a running systemd (Debian's systemd package); those tests fail, never skip, without it.
systemd:
	@command -v systemd-analyze >/dev/null 2>&1 || apt-get install -y -qq systemd \
		|| { apt-get update -qq && apt-get install -y -qq systemd; }

# Benchmarks print their figures against a baseline measured in the same run.
bench: $(STAMP)
	@command -v wrk >/dev/null 2>&1 || apt-get install -y -qq wrk >/dev/null 2>&1 \
		|| { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; } \
		|| echo "wrk could not be installed: bench_throughput falls back to a Python load generator"
	$(BIN)/python -m tests.bench

setup: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "llm-proxy needs Python 3.11 or newer"'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $@

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache *.egg-info
