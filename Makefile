# snaplayers: `make testbed` (a live testbed and one verified backup) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The package's build (`make deb`, and the testbed: its nodes install the plugin from the .deb).
DEB_BUILD := debhelper dpkg-dev build-essential
# Debian packages the tests need on the host; installed when missing and running as root.
# (qemu and friends: the VM engine; sudo: visudo checks the generated sudoers; man-db: the
# man pages render without warnings; rpm: the unit tier builds and checks the RPM.)
HOST_PACKAGES := sudo python3-venv qemu-system-x86 mmdebstrap busybox-static cpio kmod man-db \
                 openssh-client e2fsprogs xz-utils ca-certificates rpm $(DEB_BUILD)
PYTEST_ARGS ?=
# `make deb`'s: the build, and lintian to check it.
DEB_PACKAGES := $(DEB_BUILD) lintian python3
# `make rpm`'s: the build and its check (cpio unpacks the payload; rpm brings rpm2cpio); its
# recipe adds python3-pytest where no pytest imports.
RPM_PACKAGES := rpm cpio python3
VERSION := $(shell sed -n 's/^__version__ = "\(.*\)"$$/\1/p' snaplayers/__init__.py)

# Shell: sets $$missing to those of the Debian packages $(1) not installed.
missing_packages = missing=""; for p in $(1); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done
# Shell: installs $$missing with apt-get as root; otherwise names them and fails.
INSTALL_MISSING = if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "$@: apt-get install$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else echo "$@: please install:$$missing (as root: apt-get install$$missing)"; exit 1; fi; \
	fi

.PHONY: deps venv test unit dist deb rpm bench bench-startup clean testbed testbed-down matrix

# A live testbed and one verified backup; it stays up for exploring (make testbed-down).
testbed: venv
	$(BIN)/testbed up
	$(BIN)/testbed backup

testbed-down: venv
	$(BIN)/testbed down
	$(BIN)/testbed engine down

deps:
	@$(call missing_packages,$(HOST_PACKAGES)); \
	command -v docker >/dev/null || missing="$$missing docker.io"; \
	$(INSTALL_MISSING)

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml | deps
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q --no-cache-dir -e '.[test,testbed]'  # a cached editable wheel points at another tree
	touch $@

unit: venv
	$(BIN)/pytest -q -m "not integration and not e2e" $(PYTEST_ARGS)

# Unit, integration and end-to-end tiers. The engine is stopped afterwards unless it was
# already running (a developer's `make testbed`) or TESTBED_KEEP is set.
test: venv
	@was_up=$$($(BIN)/testbed engine status >/dev/null 2>&1 && echo yes); \
	$(BIN)/pytest -q -p no:cacheprovider $(PYTEST_ARGS); rc=$$?; \
	if [ -z "$$was_up" ] && [ -z "$$TESTBED_KEEP" ]; then \
	  $(BIN)/testbed engine down || rc=1; \
	  if pgrep -f "$${XDG_CACHE_HOME:-$$HOME/.cache}/snaplayers-testbed/run/vm-" >/dev/null; then \
	    echo "FAIL: qemu left running after engine down"; rc=1; fi; \
	fi; exit $$rc

# The end-to-end tier once per cell: Debian suite of the nodes x guest kernel (tests/matrix/).
# MATRIX_CELLS="bookworm/6.1 trixie/6.12 bookworm/6.12/zmanda" picks cells; cells of one kernel
# run one after the other (their checks are kernel-wide), the kernels side by side.
MATRIX_JOBS ?= 2
matrix: venv
	@$(BIN)/pytest -p no:cacheprovider -n $(MATRIX_JOBS) --dist loadscope tests/matrix/cells.py $(PYTEST_ARGS); rc=$$?; \
	if [ -z "$$TESTBED_KEEP" ]; then for k in 6.1 6.12; do $(BIN)/testbed --kernel $$k engine down || rc=1; done; fi; \
	exit $$rc

# The plugin as one standalone file, as Amanda's application directory wants it.
dist: venv
	mkdir -p dist
	$(BIN)/python -c 'from snaplayers.cli import build_zipapp; build_zipapp("dist/script-snaplayers")'
	@echo "dist/script-snaplayers: $$(stat -c %s dist/script-snaplayers) bytes"

# The Debian package and lintian's verdict on it: dist/snaplayers_<version>_all.deb (with its
# .changes and .buildinfo), built by debian/build-deb.
deb:
	@$(call missing_packages,$(DEB_PACKAGES)); $(INSTALL_MISSING)
	debian/build-deb dist
	lintian --fail-on error,warning --display-info dist/snaplayers_$(VERSION)_*.changes

# The RPM in Zmanda's layout: dist/snaplayers-<version>-1.noarch.rpm, built by rpm/build; then its
# files, dependencies, payload and scriptlets checked by tests/unit/test_rpm.py (a build of its own).
rpm:
	@$(call missing_packages,$(RPM_PACKAGES)); \
	$(PYTHON) -c 'import pytest' 2>/dev/null || missing="$$missing python3-pytest"; \
	$(INSTALL_MISSING)
	rpm/build dist
	PYTHONPATH=$(CURDIR) $(PYTHON) -m pytest -q -p no:cacheprovider tests/unit/test_rpm.py

# Benchmarks: plugin start-up, and testbed timings against their targets (tests/bench/results.json).
# Every figure of the performance section (about 30 min under TCG); BENCH_COLD=0 skips the cold engine.
bench: venv dist
	$(BIN)/python tests/bench/bench.py

bench-startup: venv dist
	$(BIN)/python tests/bench/startup.py $(BIN)/script-snaplayers dist/script-snaplayers

clean:
	rm -rf $(VENV) dist .pytest_cache .hypothesis
