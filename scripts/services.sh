#!/usr/bin/env bash
# Start/stop the loopback PostgreSQL and Redis the project needs.
#   scripts/services.sh start [--create-db] [--fresh-test-db] [-v]   # start what is not answering
#   scripts/services.sh stop                        # stop only what `start` started
#   scripts/services.sh status
# Implementation: harness/services.py (stdlib only, also used from pytest).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="$ROOT/.venv/bin/python"
[ -x "$PY" ] || PY="$(command -v python3)"
cd "$ROOT"
exec "$PY" -m harness.services "$@"
