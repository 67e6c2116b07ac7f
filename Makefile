# bessmon — two commands: `make up` runs the whole local stack, `make test` runs every test.
# Both install what is missing first (a .venv from pyproject.toml, Debian packages).

SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)
PYTEST_ARGS ?=

.PHONY: up test lint install system-deps test-deps clean

up: install system-deps
	@$(PY) -m infra.cli up $(ARGS)

test: install system-deps test-deps lint
	$(PY) -m pytest $(PYTEST_ARGS)

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
	rm -rf $(VENV) .run .pytest_cache .mypy_cache .ruff_cache
