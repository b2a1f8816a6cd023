# erpath — every target does its own set-up, so each works on a fresh clone.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# Debian packages the lab and the tests use (installed when running as root).
DEB_PACKAGES := iproute2 nftables traceroute scamper dnsutils openssl procps systemd \
                prometheus prometheus-alertmanager prometheus-pushgateway time postgresql haproxy
PYTEST_ARGS ?=

.PHONY: test demo demo-down lab-up lab-down venv debs lint

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test]'
	touch $@

venv: $(VENV)/.installed

# Only as root, and only what is missing: a developer's machine is left alone.
debs:
	@if [ "$$(id -u)" = 0 ]; then \
	  missing=$$(for p in $(DEB_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	  if [ -n "$$missing" ]; then \
	    echo "installing Debian packages: $$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  fi; \
	else echo "not root: skipping Debian packages (lab tests will be skipped)"; fi

test: venv debs
	$(PY) -m pytest $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

demo: venv debs
	$(PY) -m tests.lab demo

demo-down: venv
	$(PY) -m tests.lab demo-down

lab-up: venv debs
	$(PY) -m tests.lab up $(SCENARIO)

lab-down: venv
	$(PY) -m tests.lab down
