#!/usr/bin/env bash
# `make run`: install what is missing, start PostgreSQL/Redis if needed, then the demo stack.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
scripts/services.sh start
exec .venv/bin/python scripts/run_demo.py "$@"
