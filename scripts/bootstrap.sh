#!/usr/bin/env bash
# Idempotent setup for a fresh Debian 12 machine: system tools + the project's virtualenv.
#   * apt-get install (after apt-get update; scripts/apt_install.sh) only the packages that are missing:
#       docker.io docker-registry skopeo umoci postgresql redis-server wrk (the benchmark's ceiling)
#       chromium chromium-driver (the pages' browser tests) nodejs npm (the pages' charting library)
#   * .venv created with python3 (3.11), `pip install -r requirements-dev.txt` only when the
#     requirements files' hash differs from the stamp in .venv/.requirements.sha256
# Quiet unless something goes wrong (then the captured log is printed). -v for progress.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
STAMP="$VENV/.requirements.sha256"
VERBOSE=0
[ "${1:-}" = "-v" ] && VERBOSE=1

LOG="$(mktemp -t layerlens-bootstrap.XXXXXX)"
trap 'rm -f "$LOG"' EXIT
say() { [ "$VERBOSE" = 1 ] && echo "bootstrap: $*" >&2 || true; }
# Steps that take minutes are always announced, so a first run never sits silent.
announce() { echo "bootstrap: $*" >&2; }
fail() {
    echo "bootstrap: FAILED: $*" >&2
    echo "----- log -----" >&2
    tail -n 80 "$LOG" >&2 || true
    exit 1
}
quietly() { "$@" >>"$LOG" 2>&1; }

SUDO=""
if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else SUDO="__none__"; fi
fi

# package -> a program it provides (either check passing counts as installed)
declare -A PROVIDES=(
    [docker.io]=dockerd
    [docker-registry]=docker-registry
    [skopeo]=skopeo
    [umoci]=umoci
    [postgresql]=pg_ctlcluster
    [redis-server]=redis-server
    [wrk]=wrk
    [chromium-driver]=chromedriver
    [nodejs]=node
)
have_pkg() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed" && return 0
    PATH="$PATH:/usr/sbin:/sbin" command -v "${PROVIDES[$1]:-$1}" >/dev/null 2>&1
}

missing=()
for pkg in docker.io docker-registry skopeo umoci postgresql redis-server wrk chromium chromium-driver nodejs npm; do
    have_pkg "$pkg" || missing+=("$pkg")
done
PY="$(command -v python3.11 || command -v python3 || true)"
if [ -z "$PY" ]; then
    missing+=(python3 python3-venv)
elif ! "$PY" -c 'import ensurepip, venv' >/dev/null 2>&1; then
    missing+=(python3-venv)
fi

if [ "${#missing[@]}" -gt 0 ]; then
    [ "$SUDO" = "__none__" ] && fail "need root (or sudo) to install: ${missing[*]}"
    "$ROOT/scripts/apt_install.sh" "${missing[@]}" || exit 1
    PY="$(command -v python3.11 || command -v python3 || true)"
    # On a systemd machine the docker-registry package starts a registry on *:5000. Layerlens only
    # uses loopback registries it starts itself (and the demo wants 127.0.0.1:5000), so switch off
    # the service this install just started.
    if [[ " ${missing[*]} " == *" docker-registry "* ]] && command -v systemctl >/dev/null 2>&1 \
        && systemctl is-enabled docker-registry >/dev/null 2>&1; then
        quietly $SUDO systemctl disable --now docker-registry || true
    fi
fi

# ---- virtualenv --------------------------------------------------------------------------
"$PY" -c 'import sys; sys.exit(0 if sys.version_info[:2] >= (3, 11) else 1)' \
    || fail "python 3.11+ required, found $("$PY" --version 2>&1)"
if [ ! -x "$VENV/bin/python" ]; then
    say "creating $VENV"
    quietly "$PY" -m venv "$VENV" || fail "python3 -m venv $VENV"
fi

# Hash requirements-dev.txt plus every file it pulls in with -r (one level, as in this repo).
req_files=("$ROOT/requirements-dev.txt")
while read -r inc; do
    [ -n "$inc" ] && req_files+=("$ROOT/$inc")
done < <(sed -n 's/^[[:space:]]*-r[[:space:]]*//p' "$ROOT/requirements-dev.txt")
want="$(cat "${req_files[@]}" | sha256sum | cut -d' ' -f1)"
have="$(cat "$STAMP" 2>/dev/null || true)"
if [ "$want" != "$have" ]; then
    announce "installing the Python requirements into .venv (a minute or two the first time)"
    quietly "$VENV/bin/python" -m pip install -q --disable-pip-version-check \
        -r "$ROOT/requirements-dev.txt" || fail "pip install -r requirements-dev.txt"
    echo "$want" >"$STAMP"
fi
# ---- the pages' charting library (npm ci from web/package-lock.json into analytics/static/web/vendor/)
quietly "$ROOT/scripts/web_assets.sh" || fail "scripts/web_assets.sh"
say "ok"
