# Layerlens: one target per habit. `make run` and `make test` install what is missing first.
SHELL := /bin/bash
PY := .venv/bin/python

.PHONY: run test install services lint typecheck migrations-check bench bench-scale clean

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
	@.venv/bin/lint-imports --no-logo

typecheck: install
	@.venv/bin/mypy workers/registry workers/engine.py

migrations-check: services
	@DEBUG=1 $(PY) manage.py makemigrations --check --dry-run

bench: services
	@$(PY) -m bench.scan_registry

# A Docker Hub-shaped database of BENCH_IMAGES images (layerlens_bench_scale), then every question's latency
# before and after ingesting 10,000 new images. See bench/README.md.
BENCH_IMAGES ?= 1000000
bench-scale: services
	@$(PY) -m bench.generate --images $(BENCH_IMAGES)
	@$(PY) -m bench.queries --runs 5 --ingest 10000

clean:
	rm -rf var .pytest_cache .ruff_cache .mypy_cache
