# bessmon — two commands: `make up` runs the whole local stack, `make test` runs every test.
# Both install what is missing first (a .venv from pyproject.toml, Debian packages).

SHELL := /bin/bash
# Python keeps the compiled modules (__pycache__/, ignored by git) even where the environment
# says not to: the tests start hundreds of Python processes, each compiling every module again
# otherwise (about 0.6 s of CPU each), and pytest rewrites every test file again on each pass.
unexport PYTHONDONTWRITEBYTECODE
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)
PYTEST_ARGS ?=
# The dashboard (web/): built again only when its sources or lock file change.
WEB_SOURCES := $(shell find web/src -type f 2>/dev/null) web/index.html web/vite.config.ts \
	web/tsconfig.json web/package.json
WEB_INSTALLED := web/node_modules/.installed-$(shell sha1sum web/package-lock.json | cut -c1-12)
WEB_BUILT := web/dist/.built
# The dashboard's types, generated from the server's models (infra/gen_types.py); committed,
# made again when a model may have changed.
WEB_TYPES := web/src/generated/api.ts
WEB_TYPE_SOURCES := infra/gen_types.py $(wildcard contracts/*.py) $(shell find api -name '*.py' 2>/dev/null)

.PHONY: up test lint install native system-deps test-deps web web-test node clean

up: install native system-deps web
	@$(PY) -m infra.cli up $(ARGS)

# The files with `solo` tests: the second pass collects only them (collecting all of tests/
# takes half a minute).
SOLO_FILES = $(shell grep -rl --include='test_*.py' 'mark.solo' tests)
# Two workers (tests/conftest.py says which tests share one), then the `solo` tests alone;
# `make test PYTEST_ARGS=tests/api` runs a part (exit 5 = nothing of it is `solo`).
test: install native system-deps test-deps lint web web-test
	$(PY) -m pytest -n 2 -m "not solo" $(PYTEST_ARGS)
	$(PY) -m pytest -m solo $(or $(PYTEST_ARGS),$(SOLO_FILES)) || [ $$? -eq 5 ]

web: $(WEB_BUILT)

web-test: $(WEB_INSTALLED)
	cd web && npm test --silent

node:
	@infra/install-system-deps.sh node:nodejs npm:npm
	@node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 19) ? 0 : 1)' \
		|| { echo "the dashboard needs Node.js 20.19 or newer; node is $$(node --version)" >&2; exit 1; }

$(WEB_INSTALLED): web/package-lock.json web/package.json | node
	cd web && npm ci --no-audit --no-fund --loglevel=error
	@rm -f web/node_modules/.installed-* && touch $@

$(WEB_TYPES): $(WEB_TYPE_SOURCES) $(WEB_INSTALLED) | install
	$(PY) -m infra.gen_types
	@touch $@

$(WEB_BUILT): $(WEB_INSTALLED) $(WEB_TYPES) $(WEB_SOURCES)
	cd web && npm run build --silent
	@touch $@

# The contract engine's hot modules compiled with mypyc (contracts/native.py): built again
# only when they no longer match their sources; without a C compiler they run as Python.
native: install
	@$(PY) -m infra.native || echo "(the contract engine runs as Python: the same results, slower)"

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

install: $(STAMP)

$(STAMP): pyproject.toml
	@python3 -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else \
		"bessmon needs Python 3.11 or newer; python3 is " + sys.version.split()[0])'
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@rm -f $(VENV)/.installed-* && touch $@

system-deps:
	@infra/install-system-deps.sh redis-server:redis-server

test-deps:
	@infra/install-system-deps.sh chromium:chromium

clean:
	rm -rf $(VENV) .build .run .pytest_cache .mypy_cache .ruff_cache web/node_modules web/dist
