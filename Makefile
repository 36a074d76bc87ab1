# hilapp — two commands on a fresh machine:
#   make run    set up, migrate, create demo accounts, launch a demo batch, serve on :8000
#   make test   set up and run the test suite
# Everything installs into .venv; re-running skips what is already done.

PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
ADDR ?= 127.0.0.1:8000
DEMO_CHARACTERS ?= 12
PYTEST_ARGS ?=

.PHONY: run test install install-dev chromium lint migrate clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# The stamps depend on pyproject.toml: a changed dependency list reinstalls.
$(VENV)/.installed: pyproject.toml | $(PY)
	$(PIP) install --quiet -e .
	touch $@

# torch is pinned to the CPU build this machine's pip finds locally before the gpu extra asks
# for any torch (otherwise pip would pull a multi-GB CUDA build for the tiny CPU tests).
$(VENV)/.installed-dev: pyproject.toml | $(PY)
	$(PIP) install --quiet "torch==2.13.0"
	$(PIP) install --quiet -e ".[dev,gpu,s3]"
	touch $(VENV)/.installed $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

# Browser tests drive Debian's Chromium (never a downloaded browser).
chromium:
	@if [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "Install Debian's chromium package (/usr/bin/chromium) for the browser tests." >&2; exit 1; fi; \
	fi

migrate: install
	$(PY) manage.py migrate --noinput

run: migrate
	$(PY) manage.py seed_demo
	$(PY) manage.py launch_batch characters --count $(DEMO_CHARACTERS) --seed 1
	$(PY) manage.py rundev --addr $(ADDR)

test: install-dev chromium
	$(PY) -m pytest $(PYTEST_ARGS)

lint: install-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy .

clean:
	rm -rf var/broker var/*.sqlite3* var/media var/test-media
