# Layerlens: one target per habit. `make run` and `make test` install what is missing first.
SHELL := /bin/bash
PY := .venv/bin/python

.PHONY: run test install services lint typecheck migrations-check bench clean

run:
	@scripts/run.sh

test:
	@scripts/test.sh

install:
	@scripts/bootstrap.sh

services: install
	@scripts/services.sh start

lint: install
	@.venv/bin/ruff check .
	@.venv/bin/ruff format --check .

typecheck: install
	@.venv/bin/mypy workers/registry

migrations-check: services
	@DEBUG=1 $(PY) manage.py makemigrations --check --dry-run

bench: services
	@$(PY) -m bench.scan_demo

clean:
	rm -rf var .pytest_cache .ruff_cache .mypy_cache
