# Wicket — everything a fresh machine needs comes from here.
#   make run    create .venv, install, launch the desktop app
#   make test   lint, type-check, import contracts and the whole test suite
#   make bench  benchmarks (ratios against anchors measured in the same run)
#   make dist   wheel, sdist, standalone bundle (+ tarball) and .deb into dist/
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
NODE_PEERS := tests/interop/node_modules/.installed-stamp
PYTEST_TIMEOUT ?= 1500

.PHONY: all venv run test lint unit test-deps bench dist clean

all: test

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade 'pip>=24' 2>&1 | grep -v '^WARNING: Location' || true
	$(BIN)/python -m pip install --quiet -e '.[test]' 2>&1 | grep -v '^WARNING: Location' || true
	$(BIN)/python -c 'import core, gui, PySide6, qasync, h11, hypothesis'
	touch $@

venv: $(STAMP)

$(NODE_PEERS): tests/interop/package.json tests/interop/package-lock.json
	cd tests/interop && npm ci --no-audit --no-fund --loglevel=error
	touch $@

test-deps: $(STAMP) $(NODE_PEERS)
	./scripts/install-kubectl.sh >/dev/null
	./scripts/install-system-test-deps.sh
	$(BIN)/python -m core.compiled build --if-compiler

run: $(STAMP)
	$(BIN)/wicket

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

unit: $(STAMP)
	timeout $(PYTEST_TIMEOUT) $(BIN)/pytest -m 'not slow and not interop'

# The desktop app's tests run in a process of their own: Qt keeps process-wide state
# (the QApplication, its threads) that must not outlive them into the other suites.
test: test-deps lint
	timeout $(PYTEST_TIMEOUT) $(BIN)/pytest --ignore=tests/gui
	timeout $(PYTEST_TIMEOUT) $(BIN)/pytest tests/gui

bench: test-deps
	./scripts/install-bench-deps.sh
	$(BIN)/python -m tests.bench.mux_bench
	$(BIN)/python -m tests.bench.tunnel_bench
	$(BIN)/python -m tests.bench.inspect_bench
	$(BIN)/python -m tests.bench.gui_bench
	$(BIN)/python -m tests.bench.scale_bench

# packaging/README.md says what each artifact holds; the bundle and the .deb are rebuilt
# only when their inputs changed (stamps in dist/).
dist: $(STAMP)
	./scripts/install-system-test-deps.sh
	rm -f dist/kubewicket-*
	$(BIN)/python -m build --outdir dist .
	PYTHON=$(BIN)/python packaging/build-bundle.sh
	PYTHON=$(BIN)/python packaging/build-deb.sh
	packaging/bundle-tarball.sh

clean:
	rm -rf $(VENV) tests/interop/node_modules .mypy_cache .ruff_cache
