#!/usr/bin/env bash
# Install what is missing, start what the tests need, then lint, check migrations and run the suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
export DEBUG=1
export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/layerlens}"
export CELERY_BROKER_URL="${CELERY_BROKER_URL:-redis://127.0.0.1:6379/15}"
# the database (the migrations check reads its history) and no test database of an interrupted run
scripts/services.sh start --create-db --fresh-test-db

echo "== lint"
.venv/bin/ruff check .
layers=$(.venv/bin/lint-imports --no-logo 2>&1) \
  || { echo "$layers"; echo "an import crosses the layers of pyproject.toml [tool.importlinter]"; exit 1; }
echo "== types"
.venv/bin/mypy workers/registry workers/engine.py
echo "== migrations"
.venv/bin/python manage.py makemigrations --check --dry-run >/dev/null \
  || { echo "models changed without a migration: run manage.py makemigrations"; exit 1; }
echo "== tests"
.venv/bin/python -m pytest "$@"
