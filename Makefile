# snaplayers: `make testbed` (a live testbed and one verified backup) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Debian packages the tests need on the host; installed when missing and running as root.
HOST_PACKAGES := sudo python3-venv
PYTEST_ARGS ?=

.PHONY: deps venv test unit dist bench-startup clean

deps:
	@missing=""; for p in $(HOST_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "deps: apt-get install$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else echo "deps: please install:$$missing (as root: apt-get install$$missing)"; exit 1; fi; \
	fi

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml | deps
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test,testbed]'
	touch $@

unit: venv
	$(BIN)/pytest -q -m "not integration and not e2e" $(PYTEST_ARGS)

test: venv
	$(BIN)/pytest -q $(PYTEST_ARGS)

# The plugin as one standalone file, as Amanda's application directory wants it.
dist: venv
	mkdir -p dist
	$(BIN)/python -c 'from snaplayers.cli import build_zipapp; build_zipapp("dist/script-snaplayers")'
	@echo "dist/script-snaplayers: $$(stat -c %s dist/script-snaplayers) bytes"

bench-startup: venv dist
	$(BIN)/python tests/bench/startup.py $(BIN)/script-snaplayers dist/script-snaplayers

clean:
	rm -rf $(VENV) dist .pytest_cache .hypothesis
