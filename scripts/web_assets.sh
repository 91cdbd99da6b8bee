#!/usr/bin/env bash
# The pages' charting library (Apache ECharts, pinned in web/package-lock.json) from the npm registry into
# analytics/static/web/vendor/, where WhiteNoise serves it: nothing is fetched from a CDN at run time.
# Runs `npm ci` only when the lock file's hash differs from the stamp next to the copied file.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENDOR="$ROOT/analytics/static/web/vendor"
STAMP="$VENDOR/.package-lock.sha256"
want="$(sha256sum "$ROOT/web/package-lock.json" | cut -d' ' -f1)"
if [ -f "$VENDOR/echarts.min.js" ] && [ "$(cat "$STAMP" 2>/dev/null || true)" = "$want" ]; then
    exit 0
fi
npm ci --prefix "$ROOT/web" --no-audit --no-fund --silent
mkdir -p "$VENDOR"
cp "$ROOT/web/node_modules/echarts/dist/echarts.min.js" "$ROOT/web/node_modules/echarts/LICENSE" "$VENDOR/"
echo "$want" >"$STAMP"
